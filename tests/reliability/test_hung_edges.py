"""A sensor read that hangs at an epoch edge or in ``start()`` (issue #12, defect 3).

The edge's reads run on an edge thread with a deadline (10 ms, the default ``edge_deadline_s``, which
the other tests lengthen); past it the edge uses the background readings and the row says so. The
bound asserted, 2 s against a 10 s hang, only proves that the edge does not wait for the hang:
the latency itself is measured in ``bench/`` (scenario ``faults``).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.reliability.support import advance, epochs, joules, quiet_tracker, train_rows
from tracker.measure.edge import EDGE_DEADLINE_S
from tracker.testing import FakeSensor, steady

GPU_W, CPU_W = 300.0, 30.0
HANG_S = 10.0
NOT_WAITING_S = 2.0


class HangingSensor(FakeSensor):
    """A fake sensor whose reads with a number in ``hang_on`` block for 10 s, or until ``release`` is set."""

    def __init__(self, *args, hang_on, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hang_on = set(hang_on)
        self.release = threading.Event()

    def read(self):
        if self.calls + 1 in self.hang_on:
            self.release.wait(HANG_S)
        return super().read()


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def test_an_epoch_edge_does_not_wait_for_a_10_s_hang(tmp_path, clock):
    gpu = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock)
    cpu = HangingSensor("cpu", "cpu", steady(CPU_W), clock, method="rapl", hang_on={2})  # 2nd read: epoch 0 opens
    energy = quiet_tracker(tmp_path, clock, sensors=[gpu, cpu], edge_deadline_s=EDGE_DEADLINE_S).start()
    try:
        context = energy.epoch(0)
        _, opening_s = timed(context.__enter__)
        cpu.release.set()  # the hung read returns: a background tick would otherwise wait for it
        advance(energy, clock, 2)
        context.__exit__(None, None, None)
    finally:
        cpu.release.set()
        energy.stop()
    assert opening_s < NOT_WAITING_S
    (row,) = train_rows(epochs(energy))
    assert "cpu read late at 1 edges" in row["notes"]
    assert joules(row["gpu_kwh"]) == pytest.approx(GPU_W * 2)  # the other sensor's edge is exact


def test_start_does_not_wait_for_a_hung_first_read_and_the_rows_say_so(tmp_path, clock):
    gpu = HangingSensor("gpu:0", "gpu", steady(GPU_W), clock, hang_on={1})
    energy = quiet_tracker(tmp_path, clock, sensors=[gpu], edge_deadline_s=EDGE_DEADLINE_S)
    try:
        _, start_s = timed(energy.start)
        with energy.epoch(0):  # the edge thread is still stuck: another one finds the sensor busy
            gpu.release.set()
            advance(energy, clock, 3)
    finally:
        gpu.release.set()
        energy.stop()
    assert start_s < NOT_WAITING_S
    (row,) = train_rows(epochs(energy))
    # Not "0.0 kWh, ok": the row says which edges were not read, and that it was not fully covered.
    assert "gpu:0 read late" in row["notes"] and row["covered_fraction"] < 1.0
