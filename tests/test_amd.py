"""AMD GPUs through amdsmi, driven by the fake binding of tracker.testing (amdsmi is not installable here)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from tests.helpers import PATIENT, run_lanes
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError
from tracker.report import devices as report_devices
from tracker.sensors import Sensor
from tracker.sensors.amd import ENERGY_COUNTER, POWER_AVERAGE, POWER_POLLING, find_amd_gpus
from tracker.testing import FakeAmdGpu, FakeAmdSmi, fake_amdsmi, square_wave, steady
from tracker.testing.fake_amdsmi import AmdSmiLibraryException


def open_gpus(smi, clock, **kwargs):
    sensors, absent = find_amd_gpus(smi=smi, clock=clock, **kwargs)
    return sensors, absent


def measure(tmp_path, clock, smi, sensors, seconds=10.0, epochs=2, seed=0):
    rng = random.Random(seed)
    energy = EnergyTracker(tmp_path, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=100.0, **PATIENT)
    bounds = []
    with energy:
        for epoch in range(epochs):
            run_lanes(energy, clock, rng.uniform(0.2, 1.0), rng)
            start = clock()
            with energy.epoch(epoch):
                run_lanes(energy, clock, seconds, rng)
            bounds.append((start, clock()))
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    return energy, rows, bounds


# -- one GPU, counter or not --------------------------------------------------------------------------------------


def test_one_gpu_with_the_accumulator_is_exact_to_its_resolution(tmp_path, clock):
    smi = FakeAmdSmi([FakeAmdGpu(trace=square_wave(150.0, 550.0, 0.4))], clock=clock)
    (sensor,), absent = open_gpus(smi, clock)
    assert not absent and isinstance(sensor, Sensor)
    assert (sensor.method, sensor.max_interval_s, sensor.name) == (ENERGY_COUNTER, None, "gpu:0")
    assert sensor.info["name"] == "AMD Instinct MI250X" and sensor.info["counter_resolution_uj"] == 15.3
    energy, rows, bounds = measure(tmp_path, clock, smi, [sensor])
    for row, (t0, t1) in zip(rows, bounds, strict=True):
        truth = smi.true_energy_j(0, t0, t1)
        assert row["gpu_method"] == ENERGY_COUNTER
        assert row["gpu_kwh"] * J_PER_KWH == pytest.approx(truth, abs=2 * 15.3e-6)
        assert row["energy_kwh_low"] * J_PER_KWH <= truth <= row["energy_kwh_high"] * J_PER_KWH


def test_the_old_key_power_is_read_where_energy_accumulator_is_missing(clock):
    smi = FakeAmdSmi([FakeAmdGpu(trace=steady(400.0))], clock=clock)
    original = smi.amdsmi_get_energy_count
    # A binding before 6.4 named the accumulator ``power``.
    smi.amdsmi_get_energy_count = lambda h: {
        ("power" if k == "energy_accumulator" else k): v for k, v in original(h).items()
    }
    (sensor,), _ = open_gpus(smi, clock)
    first = sensor.read()
    clock.advance(2.0)
    assert sensor.read().energy_j - first.energy_j == pytest.approx(800.0, abs=1e-4)


def test_without_the_counter_average_socket_power_is_integrated_with_its_lag_undone(tmp_path, clock):
    smi = FakeAmdSmi([FakeAmdGpu(trace=square_wave(100.0, 500.0, 6.0), has_counter=False)], clock=clock)
    (sensor,), _ = open_gpus(smi, clock)
    assert (sensor.method, sensor.max_interval_s) == (POWER_AVERAGE, 0.1)
    assert "average_socket_power" in sensor.info["power_source"]
    energy, rows, bounds = measure(tmp_path, clock, smi, [sensor], seconds=5.0, epochs=4, seed=3)
    assert energy.sampling.intervals_s[sensor.name] == 0.1
    for row, (t0, t1) in zip(rows, bounds, strict=True):
        truth = smi.true_energy_j(0, t0, t1)
        assert row["gpu_method"] == POWER_AVERAGE
        assert row["energy_kwh_low"] * J_PER_KWH <= truth <= row["energy_kwh_high"] * J_PER_KWH
        assert abs(row["gpu_kwh"] * J_PER_KWH - truth) <= 2 * 400.0 / 8 + 2.0  # ΔP·w/8 at each edge, w = 1 s


def test_current_socket_power_is_polled_in_the_fast_lane(clock):
    gpu = FakeAmdGpu(trace=steady(700.0), has_counter=False, has_current_power=True, market_name="AMD Instinct MI300X")
    (sensor,), _ = open_gpus(FakeAmdSmi([gpu], clock=clock), clock)
    assert (sensor.method, sensor.max_interval_s) == (POWER_POLLING, 0.05)
    assert sensor.read().power_w == 700.0


# -- four GPUs: which ones this process uses ---------------------------------------------------------------------


@pytest.fixture
def four(clock):
    return FakeAmdSmi([FakeAmdGpu(trace=steady(100.0 * (i + 1))) for i in range(4)], clock=clock)


@pytest.mark.parametrize(
    ("rocr", "hip", "devices", "expected"),
    [
        (None, None, None, [0, 1, 2, 3]),
        ("1,2,3", None, None, [1, 2, 3]),
        ("1,2,3", "2,0", None, [3, 1]),  # HIP indices count within what ROCr left
        (None, "00000002", None, [2]),  # a UUID prefix
        ("3,1", None, [1], [1]),  # a DDP rank's own device: logical index 1 is amdsmi's GPU 1
        (None, None, ["00000003-74a1"], [3]),
    ],
)
def test_visible_devices_map_like_cuda_visible_devices(four, clock, rocr, hip, devices, expected):
    sensors, absent = open_gpus(four, clock, rocr_visible=rocr, hip_visible=hip, devices=devices)
    assert [s.info["amdsmi_index"] for s in sensors] == expected
    assert [s.name for s in sensors] == [f"gpu:{i}" for i in range(len(expected))] or devices
    assert all(s.info["uuid"] == four.gpus[s.info["amdsmi_index"]].uuid for s in sensors)
    for sensor in sensors:
        sensor.close()
    assert four.calls["amdsmi_shut_down"] == 1  # the shared init ends with the last sensor


@pytest.mark.parametrize(
    ("rocr", "message"), [("7", "does not exist"), ("GPU-0000000", "matches several"), ("zz", "no GPU")]
)
def test_a_bad_visible_device_is_a_configuration_error(four, clock, rocr, message):
    with pytest.raises(ConfigurationError, match=message):
        open_gpus(four, clock, rocr_visible=rocr)


def test_four_gpus_are_summed(tmp_path, four, clock):
    sensors, _ = open_gpus(four, clock)
    energy, rows, bounds = measure(tmp_path, clock, four, sensors, seconds=4.0, epochs=1)
    t0, t1 = bounds[0]
    assert rows[0]["gpu_kwh"] * J_PER_KWH == pytest.approx(1000.0 * (t1 - t0), abs=1e-3)
    assert len([d for d in load_run(energy.run_dir).devices if d["phase"] == "train"]) == 4


# -- wraparound, reset, a device that disappears ------------------------------------------------------------------


def test_a_32_bit_accumulator_that_wraps_is_unwrapped(tmp_path, clock):
    # 2**32 counts of 15.3 µJ is 65.7 kJ: at 600 W it wraps every 109 s.
    smi = FakeAmdSmi([FakeAmdGpu(trace=steady(600.0), counter_bits=32)], clock=clock)
    (sensor,), _ = open_gpus(smi, clock)
    energy, rows, bounds = measure(tmp_path, clock, smi, [sensor], seconds=150.0, epochs=2)
    assert sensor.wraps >= 2
    for row, (t0, t1) in zip(rows, bounds, strict=True):
        assert row["gpu_kwh"] * J_PER_KWH == pytest.approx(600.0 * (t1 - t0), abs=1e-3)
        assert "reset" not in (row["notes"] or "")


def test_a_counter_that_restarts_is_a_reset_not_a_wrap(clock):
    smi = FakeAmdSmi([FakeAmdGpu(trace=steady(300.0))], clock=clock)
    (sensor,), _ = open_gpus(smi, clock)
    clock.advance(100.0)
    before = sensor.read()
    smi.origin_s = clock()  # the driver reloaded: the accumulator starts again from 0
    clock.advance(1.0)
    after = sensor.read()
    assert after.energy_j < before.energy_j and sensor.wraps == 0  # the meter counts it as a reset


def test_a_gpu_that_disappears_is_reported_and_training_goes_on(tmp_path, clock):
    smi = FakeAmdSmi([FakeAmdGpu(trace=steady(200.0)), FakeAmdGpu(trace=steady(300.0))], clock=clock)
    sensors, _ = open_gpus(smi, clock)
    energy = EnergyTracker(tmp_path, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=100.0, **PATIENT)
    rng = random.Random(1)
    with energy:
        with energy.epoch(0):
            run_lanes(energy, clock, 5.0, rng)
        smi.lose(1)
        with energy.epoch(1):
            run_lanes(energy, clock, 5.0, rng)
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    lost = energy.sensor_health["gpu:1"].status
    assert lost in ("failing", "disabled") and energy.sensor_health["gpu:0"].status == "ok"
    assert f"gpu:1 {lost}" in rows[1]["notes"]
    assert rows[1]["gpu_kwh"] * J_PER_KWH >= 200.0 * 5.0 - 1e-3  # gpu:0 still counted in full
    assert isinstance(AmdSmiLibraryException(31), Exception)


# -- discovery, the CLI, absent sources ---------------------------------------------------------------------------


def test_no_driver_is_an_absent_source_with_its_reason(clock):
    sensors, (absent,) = open_gpus(FakeAmdSmi(1, clock=clock, library_missing=True), clock)
    assert not sensors and (absent.source, absent.reason) == ("amdsmi", "no driver")


def test_a_machine_without_amd_signs_does_not_import_amdsmi():
    code = (
        "import sys; from tracker.sensors import amd; "
        "found = amd.find_amd_gpus() if not amd.amd_expected() else 'amd here'; "
        "assert 'amdsmi' not in sys.modules; print(found)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("([], [])", "amd here")  # nothing found, nothing to report, nothing imported


def test_energy_tracker_devices_shows_amd_gpus(monkeypatch, clock):
    module = fake_amdsmi([FakeAmdGpu(trace=steady(250.0)), FakeAmdGpu(trace=steady(350.0), has_counter=False)],
                         clock=clock)  # fmt: skip
    monkeypatch.setitem(sys.modules, "amdsmi", module)
    from tracker.testing import FakeNvml

    found = report_devices.survey(sleep=clock.advance, nvml=FakeNvml(0, clock=clock), clock=clock, cpu=False,
                                  ram=False)  # fmt: skip
    gpus = [s for s in found["sensors"] if s["kind"] == "gpu"]
    assert [(s["name"], s["method"]) for s in gpus] == [("gpu:0", ENERGY_COUNTER), ("gpu:1", POWER_AVERAGE)]
    assert gpus[0]["power_w"] == pytest.approx(250.0, rel=1e-3)
    text = report_devices.describe(found)
    assert "AMD Instinct MI250X" in text and "Measured by hardware counters: gpu." in text
