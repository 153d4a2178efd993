"""Real hardware hiccups (issue #12, defects 1, 2, 6 and 8): the figures stay right, or say why not.

Transient NVML errors, counters that step back or jump, absurd readings and a binding that raises
something other than ``NVMLError`` during discovery. Ticks are driven by hand on a fake clock
(see ``support.QUIET``), so every expected figure is exact.
"""

from __future__ import annotations

import math

import pytest

from tests.reliability.support import advance, devices, epochs, joules, quiet_tracker, tracker_warnings, train_rows
from tracker.testing import FakeGpu, FakeNvml, FakeSensor, PowerTrace, steady

GPU_W = 300.0


def nvml_tracker(tmp_path, clock, nvml, **options):
    return quiet_tracker(tmp_path, clock, nvml=nvml, measure=("gpu",), **options)


def manual_tracker(tmp_path, clock, nvml, interval_s):
    """A tracker sampling every ``interval_s`` (gaps are judged by it) whose ticks only the test makes."""
    return nvml_tracker(tmp_path, clock, nvml, interval_s=interval_s)


def tick_every(energy, clock, seconds, step_s, between=None):
    """Advance the clock ``step_s`` at a time for ``seconds``, ticking after each; ``between(t)`` first."""
    for i in range(1, round(seconds / step_s) + 1):
        clock.advance(step_s)
        if between is not None:
            between(i * step_s)
        energy.sample()


# ---- 1: a short NVML outage ------------------------------------------------------------------------------------


def test_counter_gpu_comes_back_after_a_3_s_outage_and_loses_no_energy(tmp_path, clock, caplog):
    nvml = FakeNvml([FakeGpu(trace=steady(GPU_W))], clock=clock)
    with manual_tracker(tmp_path, clock, nvml, 1.0) as energy:
        with energy.epoch(0):
            advance(energy, clock, 2)
            nvml.fail("nvmlDeviceGetTotalEnergyConsumption", nvml.NVML_ERROR_UNKNOWN, times=3)  # 3 reads, 3 s
            advance(energy, clock, 8)
        for epoch in (1, 2):
            with energy.epoch(epoch):
                advance(energy, clock, 5)
    rows = train_rows(epochs(energy))
    assert [joules(r["gpu_kwh"]) for r in rows] == pytest.approx([GPU_W * 10, GPU_W * 5, GPU_W * 5])
    assert "gpu:0 gap" in rows[0]["notes"] and rows[0]["covered_fraction"] < 1.0
    assert [r["covered_fraction"] for r in rows[1:]] == [1.0, 1.0]
    assert energy.sensor_health["gpu:0"].status == "ok" and energy.sensor_health["gpu:0"].recoveries == 1
    assert len(tracker_warnings(caplog)) == 1


def test_polled_gpu_comes_back_after_an_outage_with_the_truth_inside_its_band(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(GPU_W), has_counter=False)], clock=clock)
    with manual_tracker(tmp_path, clock, nvml, 0.05) as energy:
        with energy.epoch(0):
            tick_every(energy, clock, 1.0, 0.05)
            nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_UNKNOWN, times=3)  # 0.15 s of ticks
            tick_every(energy, clock, 1.0, 0.05)
        with energy.epoch(1):
            tick_every(energy, clock, 1.0, 0.05)
    rows = train_rows(epochs(energy))
    assert [joules(r["gpu_kwh"]) for r in rows] == pytest.approx([GPU_W * 2, GPU_W * 1])
    assert rows[0]["gap_s"] > 0 and rows[0]["energy_kwh_low"] < rows[0]["energy_kwh"] < rows[0]["energy_kwh_high"]
    assert rows[1]["gpu_method"] == "power_polling" and rows[1]["covered_fraction"] == 1.0


# ---- 2: counter glitches ---------------------------------------------------------------------------------------


def test_a_1_j_step_back_of_a_large_counter_is_jitter_not_a_reset(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(GPU_W), counter_start_j=1e8)], clock=clock)
    with nvml_tracker(tmp_path, clock, nvml) as energy:
        with energy.epoch(0):
            advance(energy, clock, 3)
            clock.advance(0.007)
            nvml.glitch_counter(0, -GPU_W * 0.007 - 1.0)  # read 1 J below the previous reading, 7 ms later
            energy.sample()
            advance(energy, clock, 3)
    (row,) = train_rows(epochs(energy))
    assert joules(row["gpu_kwh"]) == pytest.approx(GPU_W * 6.007)  # not 27.78 kWh
    assert "gpu:0 counter jitter" in row["notes"] and "counter reset" not in row["notes"]
    assert [d["resets"] for d in devices(energy) if d["phase"] == "train"] == [0]


def test_a_counter_that_wobbles_back_on_alternate_reads_books_only_what_was_drawn(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(GPU_W), counter_start_j=5e6)], clock=clock)
    with nvml_tracker(tmp_path, clock, nvml) as energy:
        for epoch in range(3):
            with energy.epoch(epoch):
                advance(energy, clock, 6, between=lambda s: s % 2 and nvml.glitch_counter(0, -(GPU_W + 20.0)))
    rows = train_rows(epochs(energy))
    # Each wobbled read is 20 J below the previous one; the next read is true again.
    assert [joules(r["gpu_kwh"]) for r in rows] == pytest.approx([GPU_W * 6] * 3, rel=0.01)


def test_a_counter_jump_the_gpu_could_not_draw_is_a_glitch_estimated_from_power(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(GPU_W), counter_start_j=1e8)], clock=clock)
    with nvml_tracker(tmp_path, clock, nvml) as energy:
        with energy.epoch(0):
            advance(energy, clock, 2)
            nvml.glitch_counter(0, -5e7)  # one read half-way down, then back
            advance(energy, clock, 4)
    (row,) = train_rows(epochs(energy))
    assert joules(row["gpu_kwh"]) == pytest.approx(GPU_W * 6)  # the two glitched intervals from power: exact here
    assert "glitch" in row["notes"]
    assert [d["glitches"] for d in devices(energy) if d["phase"] == "train"] == [2]


# ---- 6: absurd readings ----------------------------------------------------------------------------------------


def scripted_power(values):
    """A power trace that gives ``values[i]`` for ``i ≤ t < i + 1`` (its integral is not used by a poller)."""
    return PowerTrace(lambda t: values[min(int(t + 1e-9), len(values) - 1)], lambda t: 0.0)


@pytest.mark.parametrize("bad", [1e9, -300.0, math.nan, math.inf])
def test_absurd_power_is_rejected_counted_and_flagged(tmp_path, clock, bad):
    values = [GPU_W, GPU_W, bad, GPU_W, GPU_W]
    gpu = FakeSensor("gpu:0", "gpu", scripted_power(values), clock, method="power_polling",
                     info={"name": "fake", "power_limit_w": 400.0})  # fmt: skip
    with quiet_tracker(tmp_path, clock, sensors=[gpu]) as energy:
        with energy.epoch(0):
            advance(energy, clock, 4)
    (row,) = train_rows(epochs(energy))
    assert joules(row["gpu_kwh"]) == pytest.approx(GPU_W * 4)  # the trapezoid bridges the rejected reading
    assert math.isfinite(row["co2_kg"]) and row["co2_kg"] > 0
    assert "gpu:0 rejected 1 implausible readings" in row["notes"]
    assert [d["rejected"] for d in devices(energy) if d["phase"] == "train"] == [1]


def test_nan_from_a_counter_never_reaches_a_total(tmp_path, clock):
    gpu = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock)
    real = gpu.read

    def read():
        reading = real()
        return reading if gpu.calls != 3 else type(reading)(reading.sensor, reading.kind, reading.time_s, math.nan)

    gpu.read = read
    with quiet_tracker(tmp_path, clock, sensors=[gpu]) as energy:
        with energy.epoch(0):
            advance(energy, clock, 4)
    (row,) = train_rows(epochs(energy))
    assert joules(row["gpu_kwh"]) == pytest.approx(GPU_W * 4) and "rejected 1" in row["notes"]
    assert math.isfinite(energy.summary().co2_kg)


# ---- 8: whatever a binding raises in discovery ----------------------------------------------------------------


def test_a_unicode_error_from_the_binding_makes_that_gpu_absent_and_training_starts(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(GPU_W)), FakeGpu(trace=steady(100.0))], clock=clock)
    real_name = nvml.nvmlDeviceGetName

    def name(handle):
        if handle == nvml.nvmlDeviceGetHandleByIndex(1):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return real_name(handle)

    nvml.nvmlDeviceGetName = name
    with nvml_tracker(tmp_path, clock, nvml) as energy:
        with energy.epoch(0):
            advance(energy, clock, 2)
    assert [s.name for s in energy.discovery.sensors] == ["gpu:0"]
    (absent,) = energy.discovery.absent
    assert absent.reason == "driver error" and "UnicodeDecodeError" in absent.detail
    assert joules(train_rows(epochs(energy))[0]["gpu_kwh"]) == pytest.approx(GPU_W * 2)


def test_any_exception_from_init_is_an_absent_source(tmp_path, clock):
    nvml = FakeNvml([FakeGpu()], clock=clock)

    def init():
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    nvml.nvmlInit = init
    energy = nvml_tracker(tmp_path, clock, nvml)
    assert energy.discovery.sensors == [] and "OSError" in energy.discovery.absent[0].detail
