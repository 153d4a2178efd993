"""NVIDIA GPUs without an energy counter: the driver's sample buffer, power fields, trailing means, the fast lane.

The accuracy matrix is the issue's table (3 s epochs): every trace at every ``interval_s`` within 3 %
per epoch, the band holding the truth. The fake GPUs sample like a Pascal card (a sample every 20 ms,
each the mean of the last 10 ms; Yang et al., docs/measurement.md §1.2), at a phase drawn per test, each
sample anywhere in its 20 ms slot (a driver's timer is not locked to the training loop's rhythm).

A driver exactly periodic beside a load exactly periodic can phase-lock with it: then every period
of the load is sampled alike and the error no longer averages out. The 0.3 s square wave holds 7.5
samples per half period, so the trapezoid counts 7 or 8 of them high every time: ±ΔP·T/2 per period
of the load, 3.3 % for 100/300 W. No reader of the buffer can do better (the driver did not look);
:func:`test_a_phase_locked_driver_errs_by_its_bound_and_the_band_still_holds` pins that limit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time

import pytest

from tests.helpers import PATIENT, gpu_tracker, real_nvml, run_lanes
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.sensors._power_integrals import AverageCounter, SampleCounter, UpdatePeriod
from tracker.sensors.nvml import (
    ENERGY_COUNTER,
    POLL_FLOOR_S,
    POWER_AVERAGE,
    POWER_INSTANT,
    POWER_POLLING,
    POWER_SAMPLES,
    NvmlSensor,
    find_gpus,
)
from tracker.testing import FakeGpu, FakeNvml, FakeSensor, piecewise, sine, square_wave, steady
from tracker.testing.fake_nvml import WALL_OFFSET_S

TABLE = {
    "square 100/300 W, 0.3 s": [square_wave(100.0, 300.0, 0.3)],
    "square 80/350 W, 7 s": [square_wave(80.0, 350.0, 7.0)],
    "sine 200 ± 100 W, 1.3 s": [sine(200.0, 100.0, 1.3)],
    "two GPUs (steady + fast square)": [steady(200.0), square_wave(100.0, 300.0, 0.3)],
}
INTERVALS = (0.05, 0.1, 1.0)


def pascal(trace, rng, **kwargs):
    """A GPU without a counter that keeps power samples as a Pascal card does."""
    return no_buffer(trace, rng, sample_period_s=0.02, sample_window_s=0.01, **kwargs)


def no_buffer(trace, rng, **kwargs):
    """A GPU with neither a counter nor a sample buffer.

    Its power reading is refreshed every 20 ms, each refresh the mean of the 10 ms before it (the
    fake's default: a Pascal card), anywhere in its slot.
    """
    options = {"sample_phase_s": rng.uniform(0.0, 0.02), "sample_jitter_s": 0.02, **kwargs}
    return FakeGpu(trace=trace, has_counter=False, **options)


def measure(tmp_path, clock, nvml, interval_s, seed, epochs=5, epoch_s=3.0):
    """Epochs of ``epoch_s`` with random gaps (so edges fall anywhere in the load's cycle); per-epoch truth."""
    rng = random.Random(seed)
    energy = gpu_tracker(tmp_path, nvml, clock=clock, interval_s=interval_s)
    truths = []
    with energy:
        for epoch in range(epochs):
            run_lanes(energy, clock, rng.uniform(0.2, 2.0), rng)
            start = clock()
            with energy.epoch(epoch):
                run_lanes(energy, clock, epoch_s, rng)
            truths.append(sum(nvml.true_energy_j(i, start, clock()) for i in range(len(nvml.gpus))))
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    return energy, rows, truths


# -- the accuracy matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("interval_s", INTERVALS, ids=[f"interval {i:g} s" for i in INTERVALS])
@pytest.mark.parametrize("trace", list(TABLE), ids=list(TABLE))
def test_sample_buffer_is_within_3_percent_per_epoch_at_any_interval(tmp_path, clock, trace, interval_s):
    rng = random.Random(f"{trace}/{interval_s}")
    nvml = FakeNvml([pascal(t, rng) for t in TABLE[trace]], clock=clock)
    energy, rows, truths = measure(tmp_path, clock, nvml, interval_s, seed=f"{trace}/{interval_s}")
    assert [s.method for s in energy.discovery.sensors] == [POWER_SAMPLES] * len(TABLE[trace])
    for row, truth_j in zip(rows, truths, strict=True):
        truth = truth_j / J_PER_KWH
        assert row["gpu_method"] == POWER_SAMPLES
        assert row["gpu_kwh"] == pytest.approx(truth, rel=0.03)
        assert row["energy_kwh_low"] <= truth <= row["energy_kwh_high"]


# Per-epoch |error| (median, worst) of the test below on its seeds: the table without a buffer. Before
# the reading's lag was held at the edges (Reading.lag_s), the 7 s square wave gave (0.0045-0.0071, 0.0150-0.0175)
# and the sine (0.0035-0.0044, 0.0049-0.0051).
HELD = {
    ("square 100/300 W, 0.3 s", 0.05): (0.0115, 0.0163),
    ("square 100/300 W, 0.3 s", 0.1): (0.0049, 0.0178),
    ("square 100/300 W, 0.3 s", 1.0): (0.0020, 0.0059),
    ("square 80/350 W, 7 s", 0.05): (0.0043, 0.0062),
    ("square 80/350 W, 7 s", 0.1): (0.0030, 0.0085),
    ("square 80/350 W, 7 s", 1.0): (0.0027, 0.0107),
    ("sine 200 ± 100 W, 1.3 s", 0.05): (0.0005, 0.0010),
    ("sine 200 ± 100 W, 1.3 s", 0.1): (0.0007, 0.0012),
    ("sine 200 ± 100 W, 1.3 s", 1.0): (0.0005, 0.0012),
    ("two GPUs (steady + fast square)", 0.05): (0.0041, 0.0082),
    ("two GPUs (steady + fast square)", 0.1): (0.0050, 0.0060),
    ("two GPUs (steady + fast square)", 1.0): (0.0026, 0.0063),
}


@pytest.mark.parametrize("interval_s", INTERVALS, ids=[f"interval {i:g} s" for i in INTERVALS])
@pytest.mark.parametrize("trace", list(TABLE), ids=list(TABLE))
def test_held_power_polled_at_the_drivers_rate_is_within_3_percent_per_epoch_at_any_interval(
    tmp_path, clock, trace, interval_s
):
    # No counter, no buffer: only nvmlDeviceGetPowerUsage, refreshed by the driver every 20 ms.
    rng = random.Random(f"{trace}/{interval_s}/{0}")
    nvml = FakeNvml([no_buffer(t, rng) for t in TABLE[trace]], clock=clock)
    energy, rows, truths = measure(tmp_path, clock, nvml, interval_s, seed=f"{trace}/{interval_s}/{0}")
    assert [s.method for s in energy.discovery.sensors] == [POWER_POLLING] * len(TABLE[trace])
    assert set(energy.sampling.intervals_s.values()) == {POLL_FLOOR_S}  # half of a 20 ms refresh is below the floor
    errors = []
    for row, truth_j in zip(rows, truths, strict=True):
        truth = truth_j / J_PER_KWH
        assert row["gpu_method"] == POWER_POLLING
        assert row["gpu_kwh"] == pytest.approx(truth, rel=0.03)
        assert row["energy_kwh_low"] <= truth <= row["energy_kwh_high"]
        errors.append(abs(row["gpu_kwh"] / truth - 1))
    # Seeded, so the figures repeat; the slack is for an edge read that a loaded machine makes late (its
    # background reading then stands in at that edge: tracker.measure.edge).
    assert (sorted(errors)[len(errors) // 2], max(errors)) == pytest.approx(HELD[trace, interval_s], abs=0.002)


@pytest.mark.parametrize("phase_s", [0.0, 0.005, 0.012])
def test_a_phase_locked_driver_errs_by_its_bound_and_the_band_still_holds(tmp_path, clock, phase_s):
    trace = TABLE["square 100/300 W, 0.3 s"][0]
    gpu = FakeGpu(trace=trace, has_counter=False, sample_period_s=0.02, sample_phase_s=phase_s)
    nvml = FakeNvml([gpu], clock=clock)
    energy, rows, truths = measure(tmp_path, clock, nvml, 0.1, seed=phase_s)
    bound = 200.0 * 0.02 / 2 * (3.0 / 0.3) + 2 * 200.0 * 0.02  # ±ΔP·T/2 per load period, and both edges
    errors = [row["gpu_kwh"] * J_PER_KWH - truth for row, truth in zip(rows, truths, strict=True)]
    assert max(abs(e) for e in errors) <= bound
    assert max(abs(e) / t for e, t in zip(errors, truths, strict=True)) > 0.02  # locked: it does not average out
    for row, truth_j in zip(rows, truths, strict=True):
        assert row["energy_kwh_low"] <= truth_j / J_PER_KWH <= row["energy_kwh_high"]


def test_polled_power_read_as_instantaneous_at_1_s_is_what_the_buffer_avoids(tmp_path, clock):
    # The same trace and schedule, polled once a second without the buffer's help (the fast lane
    # switched off by forcing the main interval onto it): the error the table shows.
    trace = TABLE["square 100/300 W, 0.3 s"][0]
    nvml = FakeNvml([FakeGpu(trace=trace, has_counter=False)], clock=clock)
    sensors, _ = find_gpus(nvml=nvml, visible_devices=None, clock=clock)
    sensors[0].max_interval_s = None  # as before the fast lane
    energy = EnergyTracker(
        tmp_path, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=100.0, interval_s=1.0, **PATIENT
    )
    rng = random.Random(7)
    errors = []
    with energy:
        for epoch in range(5):
            run_lanes(energy, clock, rng.uniform(0.2, 2.0), rng)
            start = clock()
            with energy.epoch(epoch):
                run_lanes(energy, clock, 3.0, rng)
            errors.append((start, clock()))
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    truths = [nvml.true_energy_j(0, *e) for e in errors]
    worst = max(abs(r["gpu_kwh"] * J_PER_KWH / t - 1) for r, t in zip(rows, truths, strict=True))
    assert worst > 0.05  # what the sample buffer and the fast lane are for


# -- the fast lane ----------------------------------------------------------------------------


def test_polled_gpu_gets_a_fast_lane_that_interval_s_does_not_slow(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(trace=square_wave(100.0, 300.0, 0.3), has_counter=False)], clock=clock)
    cpu = FakeSensor("cpu:fake", kind="cpu", trace=steady(50.0), clock=clock)
    gpus, _ = find_gpus(nvml=nvml, visible_devices=None, clock=clock)
    energy = EnergyTracker(
        tmp_path, sensors=[*gpus, cpu], clock=clock, carbon_intensity_g_per_kwh=100.0, interval_s=1, **PATIENT
    )
    assert energy.interval_s == 1.0
    # the GPU in a lane of its own, until the driver's rate is known
    assert energy.sampling.intervals_s == {"gpu:0": POLL_FLOOR_S, "cpu:fake": 1.0}
    rng = random.Random(3)
    with energy:
        start = clock()
        with energy.epoch(0):
            run_lanes(energy, clock, 30.0, rng)
        end = clock()
    row = next(r for r in load_run(energy.run_dir).epochs if r["phase"] == "train")
    truth = (nvml.true_energy_j(0, start, end) + 50.0 * (end - start)) / J_PER_KWH
    assert row["gpu_method"] == POWER_POLLING
    assert row["energy_kwh"] == pytest.approx(truth, rel=0.03)
    assert row["energy_kwh_low"] <= truth <= row["energy_kwh_high"]
    assert set(energy.sensor_health) == {"gpu:0", "cpu:fake"}


def _polls(period, changes_every, seconds, step_s=0.001):
    """Polls ``(time, watts)`` every ``step_s`` of a reading refreshed every ``period`` s, new every n-th."""
    times = [k * step_s for k in range(round(seconds / step_s))]
    return [(t, float((int(t / period) // changes_every) % 2)) for t in times]


def test_update_period_is_the_shortest_gap_between_changes_and_polled_at_half_of_it():
    refresh = UpdatePeriod(0.01, 0.05)
    for time_s, watts in _polls(0.06, 1, 3.0):  # a driver refreshing every 60 ms, each refresh a new value
        interval = refresh.observe(time_s, watts)
    assert refresh.period_s == pytest.approx(0.06, abs=0.0011) and interval == pytest.approx(0.03, abs=0.001)
    assert refresh.changes >= 32


@pytest.mark.parametrize(
    ("period", "expected"), [(0.004, 0.01), (0.2, 0.05)], ids=["below the floor", "above the ceiling"]
)
def test_update_period_polls_within_its_floor_and_ceiling(period, expected):
    refresh = UpdatePeriod(0.01, 0.05)
    for time_s, watts in _polls(period, 1, 8.0):
        refresh.observe(time_s, watts)
    assert refresh.interval_s == expected


def test_a_reading_that_rarely_changes_is_polled_at_the_floor_until_the_period_is_trusted():
    refresh = UpdatePeriod(0.01, 0.05)
    for time_s, watts in _polls(0.02, 50, 10.0):  # changes every second: 10 changes, too few to trust
        refresh.observe(time_s, watts)
    assert refresh.changes == 9 and refresh.period_s is None and refresh.interval_s == 0.01


def test_a_steady_reading_is_polled_at_the_ceiling_after_calibration_and_sped_up_when_it_moves():
    refresh = UpdatePeriod(0.01, 0.05, calibration_s=1.0)
    assert refresh.observe(0.0, 100.0) == 0.01
    assert refresh.observe(0.5, 100.0) == 0.01  # calibrating
    assert refresh.observe(1.0, 100.0) == 0.05  # nothing moves: nothing lost by polling slower
    assert refresh.observe(1.05, 120.0) == 0.01  # it moves: fast again until its refreshes are known


def test_the_rate_is_inferred_on_the_background_threads_and_start_does_not_wait_for_it(tmp_path):
    # Real time: the fast lane's own thread (and the edge thread) read the GPU; the caller's thread never does.
    nvml = FakeNvml([FakeGpu(trace=sine(200.0, 100.0, 1.3), has_counter=False, sample_jitter_s=0.02)])
    nvml.nvmlInit()
    threads = []
    read = nvml.nvmlDeviceGetPowerUsage

    def logged(handle):
        threads.append(threading.current_thread().name)
        return read(handle)

    nvml.nvmlDeviceGetPowerUsage = logged
    energy = gpu_tracker(tmp_path, nvml, sampling="background")  # the real clock, the real thread
    (sensor,) = energy.discovery.sensors
    threads.clear()  # discovery probed the GPU once, on this thread: that is construction, not a reading
    with energy:
        assert sensor.info["power_update_s"] is None  # start() returned before anything was inferred
        deadline = time.monotonic() + 30.0
        while sensor.info["power_update_s"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sensor.info["power_update_s"] is not None and sensor.info["power_update_s"] < 0.05
    assert energy.sampling.intervals_s[sensor.name] == sensor.max_interval_s == POLL_FLOOR_S
    assert threads and set(threads) <= {"energy-tracker.sampler", "energy-tracker.edge"}
    nvml.nvmlShutdown()


def test_a_sensor_failing_while_its_rate_is_inferred_is_one_warning(tmp_path, clock, caplog):
    rng = random.Random(5)
    nvml = FakeNvml([no_buffer(TABLE["sine 200 ± 100 W, 1.3 s"][0], rng)], clock=clock)
    energy = gpu_tracker(tmp_path, nvml, clock=clock)
    (sensor,) = energy.discovery.sensors
    with caplog.at_level(logging.WARNING, logger="tracker"), energy:
        nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_UNKNOWN, times=5)
        for _ in range(8):
            run_lanes(energy, clock, 0.25, rng)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "gpu:0" in r.getMessage()]
    assert len(warnings) == 1 and "nvmlDeviceGetPowerUsage" in warnings[0].getMessage()
    assert sensor.info["power_update_s"] is not None  # inferred from the reads that worked
    assert energy.sensor_health["gpu:0"].status == "ok"


def test_the_start_line_and_run_json_say_how_often_the_gpu_is_polled(tmp_path, clock, caplog):
    nvml = FakeNvml([no_buffer(TABLE["sine 200 ± 100 W, 1.3 s"][0], random.Random(2))], clock=clock)
    energy = gpu_tracker(tmp_path, nvml, clock=clock, interval_s=1.0)
    with caplog.at_level(logging.DEBUG, logger="tracker"), energy:
        run_lanes(energy, clock, 2.0, random.Random(2))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert "GPU (NVML power, sampled); GPU power polled every 0.01 s, then at half the driver's refresh" in lines[0]
    assert len(lines) <= 2  # the start line and the summary: the inferred period is in run.json, not a log line
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("gpu:0 refreshes its power every" in line and "polled every 0.01 s" in line for line in debug)
    (gpu,) = json.loads((energy.run_dir / "run.json").read_text())["sensors"]
    assert gpu["info"]["poll_interval_s"] == POLL_FLOOR_S and 0 < gpu["info"]["power_update_s"] <= 0.02


def test_devices_polls_a_gpu_at_its_drivers_rate_and_says_so(clock):
    from tracker.report.devices import describe, survey

    refreshed = FakeGpu(trace=sine(200.0, 100.0, 1.3), has_counter=False, power_update_s=0.06, power_window_s=0.0)
    found = survey(sleep=clock.advance, wait_s=3.0, nvml=FakeNvml([refreshed], clock=clock), clock=clock,
                   cpu=False, ram=False)  # fmt: skip
    (gpu,) = found["sensors"]
    assert gpu["info"]["power_update_s"] == pytest.approx(0.06, abs=0.011)  # within a poll of the true 60 ms
    assert gpu["info"]["poll_interval_s"] == pytest.approx(gpu["info"]["power_update_s"] / 2)
    assert "poll_interval_s: 0.0" in describe(found)


def test_counters_need_no_fast_lane(tmp_path, clock):
    nvml = FakeNvml([FakeGpu()], clock=clock)
    energy = gpu_tracker(tmp_path, nvml, clock=clock)
    assert energy.sampling.intervals_s == {"gpu:0": 1.0} and energy.interval_s == 1.0


# -- which method each GPU gets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "method", "max_interval_s", "source"),
    [
        (FakeGpu(), ENERGY_COUNTER, None, "nvmlDeviceGetTotalEnergyConsumption"),
        (FakeGpu(has_counter=False, sample_period_s=0.1, power_fields=True), POWER_SAMPLES, 1.0, "GetSamples"),
        (FakeGpu(has_counter=False, power_fields=True), POWER_INSTANT, POLL_FLOOR_S, "POWER_INSTANT"),
        (FakeGpu(has_counter=False, name="NVIDIA A10", power_average_s=1.0), POWER_AVERAGE, 0.1, "trailing mean"),
        (FakeGpu(has_counter=False, name="Tesla P100", architecture=4), POWER_POLLING, POLL_FLOOR_S, "instantaneous"),
        (FakeGpu(has_counter=False), POWER_POLLING, POLL_FLOOR_S, "instantaneous (GA100 and older)"),
    ],
    ids=["counter", "sample buffer", "instant field", "ampere usage is a mean", "pascal", "a100 usage"],
)
def test_each_gpu_gets_its_best_method(clock, gpu, method, max_interval_s, source):
    (sensor,), absent = find_gpus(nvml=FakeNvml([gpu], clock=clock), visible_devices=None, clock=clock)
    assert not absent
    assert (sensor.method, sensor.max_interval_s) == (method, max_interval_s)
    assert source in sensor.info["power_source"]


def test_a_method_can_be_asked_for_and_is_refused_when_missing(clock):
    nvml = FakeNvml([FakeGpu(sample_period_s=0.02)], clock=clock)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert NvmlSensor(handle, nvml=nvml, index=0, clock=clock, method=POWER_SAMPLES).method == POWER_SAMPLES
    with pytest.raises(Exception, match="power_instant is not supported"):
        NvmlSensor(handle, nvml=nvml, index=0, clock=clock, method=POWER_INSTANT)


# -- the sample buffer ------------------------------------------------------------------------


def test_every_sample_since_the_last_seen_is_integrated_once(clock):
    trace = piecewise([(0.0, 100.0), (0.5, 300.0)])
    nvml = FakeNvml([FakeGpu(trace=trace, has_counter=False, sample_period_s=0.1)], clock=clock)
    (sensor,), _ = find_gpus(nvml=nvml, visible_devices=None, clock=clock)
    first = sensor.read()
    clock.advance(1.0)  # samples at 0.1 ... 1.0 s: 100 W until 0.5, then 300 W
    second = sensor.read()
    again = sensor.read()  # no new sample: NVML answers NOT_FOUND, and nothing is counted twice
    assert second.energy_j - first.energy_j == pytest.approx(100 * 0.4 + 200 * 0.1 + 300 * 0.5)
    assert again.energy_j == second.energy_j and again.energy_error_j == second.energy_error_j == 0.0
    assert nvml.calls["nvmlDeviceGetSamples"] == 4  # probe, then one per read
    assert second.power_w == 300.0


def test_the_stretch_after_the_newest_sample_is_held_and_bounded(clock):
    nvml = FakeNvml([FakeGpu(trace=square_wave(100.0, 300.0, 0.3), has_counter=False, sample_period_s=0.1)], clock)
    (sensor,), _ = find_gpus(nvml=nvml, visible_devices=None, clock=clock)
    sensor.read()
    clock.advance(0.95)  # the newest sample is at 0.9 s (300 W, a high half begins); 0.05 s are not sampled yet
    reading = sensor.read()
    assert reading.power_w == 300.0
    assert reading.energy_error_j == pytest.approx(0.05 * (300.0 - 100.0), abs=1e-3)  # µs stamps


def test_a_buffer_that_overflowed_between_reads_is_bridged_and_counted(clock):
    nvml = FakeNvml([FakeGpu(trace=steady(150.0), has_counter=False, sample_period_s=0.02, sample_buffer=10)], clock)
    (sensor,), _ = find_gpus(nvml=nvml, visible_devices=None, clock=clock)
    first = sensor.read()
    for _ in range(3):
        clock.advance(0.1)
        sensor.read()
    clock.advance(2.0)  # 100 samples' worth: the oldest 90 are gone
    last = sensor.read()
    assert last.energy_j - first.energy_j == pytest.approx(150.0 * 2.3)  # steady: the bridge is exact
    assert sensor._samples.gaps == 1


def test_sample_counter_never_goes_down():
    counter = SampleCounter()
    counter.add([(0.0, 400.0)])
    high, _ = counter.energy(0.1)  # 40 J, holding 400 W
    counter.add([(0.02, 0.0)])  # the power had dropped: the trapezoid gives 4 J to 0.02 s
    assert counter.energy(0.03) == (high, pytest.approx(0.01 * 400.0))
    counter.add([(1.0, 0.0)])
    assert counter.energy(1.0)[0] == high  # held until the integral overtakes it, never below


# -- trailing means ---------------------------------------------------------------------------


def test_a_trailing_mean_is_integrated_without_its_lag():
    # 100 W, a step to 300 W at 2 s; the 1 s trailing mean read every 10 ms.
    window, step = 1.0, 2.0
    trace = piecewise([(0.0, 100.0), (step, 300.0)])
    counter = AverageCounter(window)

    def mean(t):
        return trace.between_j(t - window, t) / window

    energies = {}
    for k in range(1, 801):
        t = 1.0 + k * 0.01
        energies[round(t, 2)] = counter.energy(t, mean(t))
    # Edges at least a window after the step: exact (the trapezoid of a piecewise-linear mean, at kinks on the grid).
    assert energies[9.0][0] - energies[1.5][0] == pytest.approx(trace.between_j(1.5, 9.0), abs=1e-6)
    # An edge u = 0.5 s after the step: off by ΔP·u(w-u)/(2w) = 25 J, within the reported bound.
    low_by = trace.between_j(1.5, 2.5) - (energies[2.5][0] - energies[1.5][0])
    assert low_by == pytest.approx(200.0 * 0.5 * 0.5 / 2, abs=1e-6)
    assert energies[2.5][1] >= low_by
    # Read as if it were instantaneous, the mean puts half a window of the step on the wrong side of 2.5 s.
    naive = sum(0.01 * 0.5 * (mean(1.5 + i * 0.01) + mean(1.5 + (i + 1) * 0.01)) for i in range(100))
    assert trace.between_j(1.5, 2.5) - naive == pytest.approx(75.0)  # ΔP·u²/(2w) + ΔP·u/2: three times ours


@pytest.mark.parametrize(("trace", "step_w"), [("square 80/350 W, 7 s", 270.0), ("square 100/300 W, 0.3 s", 200.0)])
def test_averaged_power_keeps_the_truth_in_its_band(tmp_path, clock, trace, step_w):
    gpu = FakeGpu(trace=TABLE[trace][0], has_counter=False, name="NVIDIA A10", power_average_s=1.0)
    nvml = FakeNvml([gpu], clock=clock)
    energy, rows, truths = measure(tmp_path, clock, nvml, 1.0, seed=trace)
    for row, truth_j in zip(rows, truths, strict=True):
        truth = truth_j / J_PER_KWH
        assert row["gpu_method"] == POWER_AVERAGE
        assert row["energy_kwh_low"] <= truth <= row["energy_kwh_high"]
        assert abs(row["gpu_kwh"] - truth) * J_PER_KWH <= 2 * step_w * 1.0 / 8 + 1.0  # ΔP·w/8 at each edge


# -- the fake's sample buffer and fields, as NVML answers ---------------------------------------


def test_fake_samples_have_nvmls_shape(clock):
    nvml = FakeNvml([FakeGpu(has_counter=False, sample_period_s=0.02, sample_buffer=5)], clock)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(1.0)
    kind, samples = nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, 0)
    assert kind == nvml.NVML_VALUE_TYPE_UNSIGNED_INT and len(samples) == 5
    assert [s.sampleValue.uiVal for s in samples] == [100_000] * 5
    assert samples[-1].timeStamp == round((clock() + WALL_OFFSET_S) * 1e6)
    assert nvml.wall_clock() == clock() + WALL_OFFSET_S
    with pytest.raises(nvml.NVMLError_NotFound):
        nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, samples[-1].timeStamp)
    with pytest.raises(nvml.NVMLError_NotSupported):
        nvml.nvmlDeviceGetSamples(handle, 1, 0)  # NVML_GPU_UTILIZATION_SAMPLES is not modelled


def test_fake_field_values_answer_each_field_on_its_own(clock):
    trace = piecewise([(0.0, 100.0), (0.5, 300.0)])
    nvml = FakeNvml([FakeGpu(trace=trace, power_fields=True), FakeGpu()], clock)
    nvml.nvmlInit()
    clock.advance(1.0)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    instant, average, other = nvml.nvmlDeviceGetFieldValues(
        handle, [(nvml.NVML_FI_DEV_POWER_INSTANT, 0), nvml.NVML_FI_DEV_POWER_AVERAGE, (1, 0)]
    )
    assert (instant.nvmlReturn, instant.value.uiVal) == (nvml.NVML_SUCCESS, 300_000)
    assert (average.nvmlReturn, average.value.uiVal) == (nvml.NVML_SUCCESS, 200_000)
    assert other.nvmlReturn == nvml.NVML_ERROR_NOT_SUPPORTED
    (missing,) = nvml.nvmlDeviceGetFieldValues(nvml.nvmlDeviceGetHandleByIndex(1), [nvml.NVML_FI_DEV_POWER_INSTANT])
    assert missing.nvmlReturn == nvml.NVML_ERROR_NOT_SUPPORTED


def test_fake_power_usage_is_a_trailing_mean_where_the_gpu_averages(clock):
    nvml = FakeNvml([FakeGpu(trace=piecewise([(0.0, 100.0), (1.5, 300.0)]), power_average_s=1.0)], clock)
    nvml.nvmlInit()
    clock.advance(2.0)
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(0)) == 200_000


# -- the real NVML sample buffer ----------------------------------------------------------------


@pytest.mark.gpu
def test_real_sample_buffer_has_the_shape_the_sensor_reads():
    pynvml = real_nvml()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        try:
            kind, samples = pynvml.nvmlDeviceGetSamples(handle, pynvml.NVML_TOTAL_POWER_SAMPLES, 0)
        except pynvml.NVMLError_NotSupported:
            pytest.skip("this GPU keeps no power samples")
        assert samples, "the buffer is empty"
        stamps = [s.timeStamp for s in samples]
        assert stamps == sorted(stamps)
        assert abs(stamps[-1] / 1e6 - time.time()) < 60  # µs of the CPU's wall clock
        member = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")[kind]
        watts = [getattr(s.sampleValue, member) / 1000 for s in samples]
        assert all(math.isfinite(w) and 0 < w < 2000 for w in watts)
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.gpu
def test_real_sample_buffer_agrees_with_the_energy_counter():
    real_nvml()
    sensors, absent = find_gpus(visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    try:
        assert sensors, absent
        if sensors[0].method != ENERGY_COUNTER:
            pytest.skip("no energy counter to compare with")
        handle = sensors[0]._handle
        try:
            buffered = NvmlSensor(handle, nvml=sensors[0]._nvml, index=0, method=POWER_SAMPLES)
        except Exception as e:  # noqa: BLE001 - a GPU without the buffer is a skip, whatever NVML says
            pytest.skip(f"no power sample buffer: {e}")
        first = (sensors[0].read(), buffered.read())
        for _ in range(50):
            time.sleep(0.1)
            buffered.read()
        second = (sensors[0].read(), buffered.read())
        counter_j = second[0].energy_j - first[0].energy_j
        samples_j = second[1].energy_j - first[1].energy_j
        assert samples_j == pytest.approx(counter_j, rel=0.15)  # two estimates of the same 5 s (measurement.md §1.3)
    finally:
        for sensor in sensors:
            sensor.close()


@pytest.mark.gpu
def test_real_power_reading_refresh_period_is_inferred():
    # Yang et al. (docs/measurement.md §1.2): 20 ms before Volta, 100 ms on Turing, A100 and H100. Polled every 1 ms
    # for up to 5 s; an idle GPU's reading may not move at all, which is a skip, not a failure.
    pynvml = real_nvml()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        refresh = UpdatePeriod(POLL_FLOOR_S, 0.05)
        deadline = time.monotonic() + 5.0
        while refresh.period_s is None and time.monotonic() < deadline:
            refresh.observe(time.monotonic(), pynvml.nvmlDeviceGetPowerUsage(handle))
            time.sleep(0.001)
        if refresh.period_s is None:
            pytest.skip(f"the power reading changed {refresh.changes} times in 5 s: too few to infer its period")
        assert 0.001 < refresh.period_s <= 0.15
        assert POLL_FLOOR_S <= refresh.interval_s <= 0.05
    finally:
        pynvml.nvmlShutdown()
