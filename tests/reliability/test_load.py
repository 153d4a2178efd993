"""Load: a 0.01 s interval with 8 fake GPUs (a fake NVML with 8 devices).

10⁵ ticks driven by hand on a fake clock keep memory bounded; the real loop never builds a backlog
of ticks after a stall; and the real thread ends at ``stop()`` (how soon: ``bench/scenarios/micro.py``).
"""

from __future__ import annotations

import sys
import threading
import time
import tracemalloc

import pytest

from tests.helpers import PATIENT
from tests.reliability.support import epochs, joules, train_rows
from tracker import EnergyTracker
from tracker.measure.sampler import Sampler
from tracker.testing import FakeClock, FakeGpu, FakeNvml, FakeSensor, steady

INTERVAL_S = 0.01
TICKS = 100_000
EPOCH_TICKS = 10_000


def eight_gpus(clock):
    return FakeNvml([FakeGpu(trace=steady(100.0 + 10 * i)) for i in range(8)], clock=clock)


def tick(energy, clock, count):
    for _ in range(count):
        clock.advance(INTERVAL_S)
        energy.sample()


@pytest.mark.slow
def test_100k_ticks_of_8_gpus_keep_memory_bounded(tmp_path):
    clock = FakeClock()
    energy = EnergyTracker(
        tmp_path,
        nvml=eight_gpus(clock),
        measure=("gpu",),
        clock=clock,
        interval_s=INTERVAL_S,
        sampling="manual",
        carbon_intensity_g_per_kwh=300.0,
        **PATIENT,
    )
    energy.start()
    blocks_before = sys.getallocatedblocks()
    traced_growth = None
    for epoch in range(TICKS // EPOCH_TICKS):
        with energy.epoch(epoch):
            if epoch != 5:
                tick(energy, clock, EPOCH_TICKS)
                continue
            tick(energy, clock, EPOCH_TICKS // 2)
            tracemalloc.start()  # half an epoch traced: every allocation a tick keeps would show here
            try:
                start = tracemalloc.take_snapshot()
                tick(energy, clock, EPOCH_TICKS // 2)
                end = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            traced_growth = sum(s.size_diff for s in end.compare_to(start, "filename"))
    blocks_grown = sys.getallocatedblocks() - blocks_before
    energy.stop()
    assert energy.sampling.ticks == TICKS
    # 5,000 ticks of 8 readings: even one pointer kept per tick would be 40 kB.
    assert traced_growth < 16 * 1024, traced_growth
    # 800,000 readings in all: what stays is the rows of 10 epochs (a few thousand blocks), not the readings.
    assert blocks_grown < 20_000, blocks_grown
    rows = train_rows(epochs(energy))
    assert len(rows) == 10
    per_epoch_j = sum(100.0 + 10 * i for i in range(8)) * EPOCH_TICKS * INTERVAL_S
    assert [round(joules(r["gpu_kwh"])) for r in rows] == [round(per_epoch_j)] * 10  # mJ counters, floored


class SteppingSensor(FakeSensor):
    """Advances the fake clock by one interval per read, and by ``stall_s`` on read ``stall_on``."""

    def __init__(self, clock, stall_on, stall_s):
        super().__init__("gpu:7", "gpu", steady(100.0), clock)
        self.stall_on, self.stall_s = stall_on, stall_s

    def read(self):
        self.clock.advance(self.stall_s if self.calls + 1 == self.stall_on else INTERVAL_S)
        return super().read()


def test_the_loop_skips_missed_deadlines_instead_of_catching_up(clock):
    stall_slots = 50
    sensors = [FakeSensor(f"gpu:{i}", "gpu", steady(100.0), clock) for i in range(7)]
    sensors.append(SteppingSensor(clock, stall_on=10, stall_s=stall_slots * INTERVAL_S))
    done = threading.Event()
    batches = []

    def sink(batch):
        batches.append(batch)
        if len(batches) >= 40:
            done.set()

    sampler = Sampler(sensors, sink, interval_s=INTERVAL_S, clock=clock, jitter=1.0, seed=3)
    requests = []
    deadline = sampler.deadline

    def recording(origin_s, slot):
        requests.append((slot, clock(), deadline(origin_s, slot)))
        return requests[-1][2]

    sampler.deadline = recording
    sampler.start()
    assert done.wait(30.0)
    assert sampler.stop()
    slots = [slot for slot, _, _ in requests]
    # Every tick is scheduled for a moment still to come: none is owed for the time lost in the stall.
    assert all(due > now for _, now, due in requests[1:])
    assert max(b - a for a, b in zip(slots, slots[1:], strict=False)) >= stall_slots  # the stall was skipped
    assert sampler.ticks < slots[-1]  # fewer ticks than slots passed: no backlog was worked off


def test_stop_ends_the_real_thread(tmp_path):
    # How soon it ends (within one interval) is a timing: bench/scenarios/micro.py measures it.
    energy = EnergyTracker(
        tmp_path,
        nvml=eight_gpus(time.monotonic),
        measure=("gpu",),
        interval_s=INTERVAL_S,
        carbon_intensity_g_per_kwh=300.0,
        **PATIENT,
    )
    energy.start()
    with energy.epoch(0):
        while energy.sampling.ticks < 30:  # the real thread is ticking 8 GPUs every 10 ms
            threading.Event().wait(INTERVAL_S)
    summary = energy.stop()
    assert summary.epochs == 1 and not energy.sampling.running  # joined, not left behind
