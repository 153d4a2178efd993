"""Waiting that never ends (issue 20, item 12): ``watch`` on a killed run, a driver hung in discovery or in ``stop()``.

``watch`` ends when the run's writer is gone (the reader's liveness check: its pid gone on this
machine, its heartbeat standing still elsewhere), with the status ``killed``. The bounds asserted
below (2 s against a 10 s hang) only prove that nothing waits for the hang; the latencies
themselves belong in ``bench/``.
"""

from __future__ import annotations

import io
import signal
import threading
import time

import pytest

from tests.helpers import PATIENT
from tests.reliability.test_killed_runs import wait_for_heartbeat_inside
from tests.reliability.test_kills import launch, run_dir_of, wait_for_line
from tracker import EnergyTracker
from tracker.report.watch import watch
from tracker.testing import FakeGpu, FakeNvml, steady

POLLS = 20
GPU_W = 250.0
NOT_WAITING_S = 2.0  # against hangs of 30 s (the fake's longest)


@pytest.mark.slow
def test_watch_ends_on_a_sigkilled_run_with_its_status(tmp_path):
    process = launch(tmp_path, "--epoch-s", "60")
    wait_for_line(process, "begin 0")
    run_dir = run_dir_of(tmp_path, process)
    wait_for_heartbeat_inside(run_dir, 0)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    polls, out = [], io.StringIO()

    def sleep(_: float) -> None:
        polls.append(1)
        if len(polls) > POLLS:
            raise AssertionError(f"watch still waiting after {POLLS} polls of a killed run: {out.getvalue()}")

    assert watch(run_dir, out, interval_s=0.0, sleep=sleep) == "killed"
    assert "killed" in out.getvalue().splitlines()[-1]


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def tracker_on(tmp_path, nvml, **options):
    return EnergyTracker(tmp_path, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=400.0, **options, **PATIENT)


def test_the_constructor_does_not_wait_for_a_driver_hung_in_discovery_and_says_so(tmp_path, caplog):
    nvml, release = FakeNvml([FakeGpu(trace=steady(GPU_W))]), threading.Event()
    nvml.hang("nvmlInit", release)
    try:
        energy, constructing_s = timed(lambda: tracker_on(tmp_path, nvml))
    finally:
        release.set()
    assert constructing_s < NOT_WAITING_S
    assert energy.discovery.sensors == []
    assert [(a.source, a.reason) for a in energy.discovery.absent] == [("nvml", "driver hung")]
    assert "did not answer" in caplog.text


def test_stop_returns_promptly_once_it_leaves_a_hung_read_behind(tmp_path, caplog):
    nvml, release = FakeNvml([FakeGpu(trace=steady(GPU_W))]), threading.Event()
    energy = tracker_on(tmp_path, nvml, interval_s=0.05).start()
    try:
        with energy.epoch(0):
            nvml.hang("nvmlDeviceGetTotalEnergyConsumption", release)  # the background thread's next read hangs
            time.sleep(0.2)
        _, stopping_s = timed(energy.stop)
    finally:
        release.set()
    assert "leaving it behind" in caplog.text
    assert stopping_s < NOT_WAITING_S
