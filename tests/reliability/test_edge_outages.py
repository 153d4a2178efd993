"""Edges where a lane has nothing readable, and counter outages across an edge (issue 20, items 8 and 9).

Item 8: an edge at which every sensor of a sampler's lane is failing (or slow) has nothing to
read; it must not hold on to an edge thread, or after ``MAX_THREADS`` such edges no edge is read
again and every later edge uses background readings. Item 9: a counter that is out across an
epoch edge cannot say how its energy splits between the two rows; the edge estimates the part
before it from the sensor's recent power and the rows' bands hold the truth whichever way it split.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import PATIENT
from tests.reliability.support import epochs, joules, quiet_tracker, train_rows
from tracker import EnergyTracker
from tracker.energy import joules_to_kwh
from tracker.errors import SensorReadError
from tracker.measure.sampler import Sampler
from tracker.testing import FakeClock, FakeSensor, piecewise, steady

GPU_W = 200.0


class Outage:
    """A ``fail`` script for :class:`FakeSensor`: every read fails while the outage is on."""

    def __init__(self) -> None:
        self.on = threading.Event()

    def __call__(self, call: int) -> BaseException | None:
        return SensorReadError("scripted outage", sensor="gpu:0") if self.on.is_set() else None


def wait_until_ok(energy: EnergyTracker, name: str, timeout_s: float = 10.0) -> None:
    """Wait (real time) for the background thread to read ``name`` again after an outage."""
    deadline = time.monotonic() + timeout_s
    while energy.sensor_health[name].status != "ok":
        assert time.monotonic() < deadline, f"{name} never came back"
        time.sleep(0.01)


def test_a_sampler_reads_every_edge_after_many_edges_with_nothing_readable():
    clock, outage = FakeClock(), Outage()
    sensor = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock, fail=outage)
    sampler = Sampler([sensor], lambda readings: None, interval_s=1.0, clock=clock, **PATIENT)
    try:
        outage.on.set()
        sampler.tick()  # fails: from now on no edge reads it (the lane has nothing readable)
        for _ in range(12):
            assert sampler.sample_now() == []
        outage.on.clear()
        sampler.tick()  # back
        for edge in range(12):
            clock.advance(1.0)
            assert [r.sensor for r in sampler.sample_now()] == ["gpu:0"], f"edge {edge} not read"
    finally:
        sampler.stop()


def test_epochs_after_many_edges_with_a_failing_lane_are_read_at_their_edges(tmp_path):
    """Real time (the background thread must see the sensor come back): 8 short epochs in an outage, 6 after."""
    outage = Outage()
    gpu = FakeSensor("gpu:0", "gpu", steady(GPU_W), time.monotonic, fail=outage)
    energy = EnergyTracker(
        tmp_path, sensors=[gpu], interval_s=0.05, carbon_intensity_g_per_kwh=400.0, **PATIENT
    ).start()
    try:
        outage.on.set()
        for index in range(8):
            with energy.epoch(index):
                time.sleep(0.01)
        outage.on.clear()
        wait_until_ok(energy, "gpu:0")
        for index in range(8, 14):
            with energy.epoch(index):
                time.sleep(0.3)
    finally:
        energy.stop()
    for row in train_rows(epochs(energy))[8:]:
        assert "read late" not in row["notes"], (row["epoch"], row["notes"])
        assert joules(row["gpu_kwh"]) == pytest.approx(GPU_W * row["duration_s"], rel=0.05), row["epoch"]


# -- item 9: a counter out across an epoch edge -------------------------------------------------------------------

LIMIT_W = 400.0  # the GPU's power limit: what it can draw during an outage that no reading sees
LOAD = piecewise([(0.0, 100.0), (30.0, 300.0)])  # trace time, W: the load triples while the counter is out


def holds(row, truth_j):
    """Whether the row's GPU band holds ``truth_j``; the row's figures as text for the message."""
    low, high = joules(row["energy_kwh_low"]), joules(row["energy_kwh_high"])
    return (
        low <= truth_j <= high,
        f"{row['phase']} {row['epoch']}: {joules(row['gpu_kwh']):.0f} J [{low:.0f}, {high:.0f}]",
    )


def outage_gpu(clock):
    outage = Outage()
    gpu = FakeSensor("gpu:0", "gpu", LOAD, clock, fail=outage, info={"model": "fake", "power_limit_w": LIMIT_W})
    return gpu, outage


def test_an_outage_across_an_epoch_edge_is_split_with_a_band_that_holds_the_truth(tmp_path, clock):
    """Epoch 0 is [10, 40] s of the trace, epoch 1 [40, 60]; the counter is out from 20 s to 50 s.

    The counter comes back with every joule of the outage, but epoch 0's row was written at 40 s:
    the edge estimates the part up to it from the recent power, and both rows say so.
    """
    gpu, outage = outage_gpu(clock)
    energy = quiet_tracker(tmp_path, clock, sensors=[gpu], interval_s=1.0)
    origin = gpu.origin_s
    energy.start()
    try:
        clock.advance(10.0)
        with energy.epoch(0):
            clock.advance(10.0)
            outage.on.set()  # from 20 s: every read fails, the edge at 40 s included
            clock.advance(20.0)
        with energy.epoch(1):
            clock.advance(10.0)
            outage.on.clear()
            energy.sample()  # read again at 50 s
            assert energy.sensor_health["gpu:0"].status == "ok"
            clock.advance(10.0)
    finally:
        energy.stop()
    rows = train_rows(epochs(energy))
    truths = [gpu.true_energy_j(origin + 10, origin + 40), gpu.true_energy_j(origin + 40, origin + 60)]
    for row, truth in zip(rows, truths, strict=True):
        held, figures = holds(row, truth)
        assert held, f"truth {truth:.0f} J outside {figures}"
        assert "split estimated" in row["notes"] and row["covered_fraction"] < 1.0, row["notes"]
    total = sum(joules(r["gpu_kwh"]) for r in epochs(energy))
    assert total == pytest.approx(gpu.true_energy_j(origin, clock()), rel=1e-9)  # the counter loses nothing


def test_an_outage_still_on_at_stop_is_estimated_and_its_band_holds_the_truth(tmp_path, clock):
    gpu, outage = outage_gpu(clock)
    energy = quiet_tracker(tmp_path, clock, sensors=[gpu])
    origin = gpu.origin_s
    energy.start()
    with energy.epoch(0):
        clock.advance(20.0)
    with energy.epoch(1):
        outage.on.set()  # from 20 s to the end: never read again
        clock.advance(40.0)
    summary = energy.stop()
    (row0, row1) = train_rows(epochs(energy))
    assert joules(row0["gpu_kwh"]) == pytest.approx(gpu.true_energy_j(origin, origin + 20))
    held, figures = holds(row1, gpu.true_energy_j(origin + 20, origin + 60))
    assert held, figures
    assert "split estimated" in row1["notes"]
    truth = joules_to_kwh(gpu.true_energy_j(origin, clock()))
    assert summary.energy_kwh_low <= truth <= summary.energy_kwh_high, (truth, summary)
