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

from tests.reliability.support import epochs, joules, train_rows
from tracker import EnergyTracker
from tracker.errors import SensorReadError
from tracker.measure.sampler import Sampler
from tracker.testing import FakeClock, FakeSensor, steady

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
    sampler = Sampler([sensor], lambda readings: None, interval_s=1.0, clock=clock)
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
    energy = EnergyTracker(tmp_path, sensors=[gpu], interval_s=0.05, carbon_intensity_g_per_kwh=400.0).start()
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
