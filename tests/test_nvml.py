"""The NVML sensor against the fake pynvml (and, behind the ``gpu`` marker, the real one)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import real_nvml
from tracker.errors import ConfigurationError, SensorPermissionError, SensorReadError, SensorUnavailable
from tracker.sensors import Sensor
from tracker.sensors.nvml import ENERGY_COUNTER, POWER_POLLING, find_gpus, nvidia_expected
from tracker.testing import FakeGpu, FakeNvml, square_wave, steady

UUIDS = ("GPU-aaaa1111-0000-4000-8000-000000000000", "GPU-bbbb2222-0000-4000-8000-000000000001")
MIGS = ("MIG-11111111-2222-4333-8444-555555555555", "MIG-66666666-7777-4888-8999-aaaaaaaaaaaa")


@pytest.fixture
def opened():
    """find_gpus that closes every sensor it opened when the test ends."""
    sensors = []

    def open_(nvml, visible_devices=None, **kwargs):
        found, absent = find_gpus(nvml=nvml, visible_devices=visible_devices, clock=nvml.clock, **kwargs)
        sensors.extend(found)
        return found, absent

    yield open_
    for sensor in sensors:
        sensor.close()


@pytest.fixture
def two_gpus(clock):
    """GPU 0 draws 100 W, GPU 1 draws 300 W; both have counters."""
    return FakeNvml([FakeGpu(uuid=UUIDS[0], trace=steady(100.0)), FakeGpu(uuid=UUIDS[1], trace=steady(300.0))], clock)


def uuids_of(sensors):
    return [s.info["uuid"] for s in sensors]


# -- accuracy against the trace ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("trace", "step_s"),
    [(steady(250.0), 1.0), (square_wave(50.0, 350.0, 0.3), 0.1), (square_wave(50.0, 350.0, 0.3), 0.37)],
)
def test_counter_deltas_equal_the_trace_integral_to_one_mj(opened, clock, trace, step_s):
    nvml = FakeNvml([FakeGpu(trace=trace)], clock)
    (sensor,), _ = opened(nvml)
    first = previous = sensor.read()
    while clock() - first.time_s < 60.0:
        clock.advance(step_s)
        reading = sensor.read()
        truth = nvml.true_energy_j(0, previous.time_s, reading.time_s)
        assert reading.energy_j - previous.energy_j == pytest.approx(truth, abs=1e-3 + 1e-9)
        previous = reading
    total = nvml.true_energy_j(0, first.time_s, previous.time_s)
    assert previous.energy_j - first.energy_j == pytest.approx(total, rel=1e-3, abs=1e-3)
    assert sensor.method == ENERGY_COUNTER


def test_counter_reading_carries_power_beside_it(opened, clock):
    nvml = FakeNvml([FakeGpu(trace=square_wave(50.0, 350.0, 0.3))], clock)
    (sensor,), _ = opened(nvml)
    assert sensor.read().power_w == 350.0
    clock.advance(0.2)
    reading = sensor.read()
    assert (reading.power_w, reading.counter_range_j, reading.time_s) == (50.0, None, clock())


def test_polling_path_reads_the_trace_power(opened, clock):
    trace = square_wave(50.0, 350.0, 0.3)
    nvml = FakeNvml([FakeGpu(trace=trace, has_counter=False)], clock)
    (sensor,), _ = opened(nvml)
    assert sensor.method == POWER_POLLING
    for _ in range(10):
        clock.advance(0.07)
        reading = sensor.read()
        assert reading.energy_j is None
        assert reading.power_w == trace.power_w(clock() - nvml.origin_s)
        assert reading.time_s == clock()


# -- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, list(UUIDS)),
        ("0", [UUIDS[0]]),
        ("1", [UUIDS[1]]),
        ("1,0", [UUIDS[1], UUIDS[0]]),
        (" 1 , 0 ", [UUIDS[1], UUIDS[0]]),
        (UUIDS[1], [UUIDS[1]]),
        ("GPU-bbbb", [UUIDS[1]]),
        ("gpu-BBBB2222", [UUIDS[1]]),
        (f"GPU-bbbb,{UUIDS[0]}", [UUIDS[1], UUIDS[0]]),
        ("0,-1,1", [UUIDS[0]]),
    ],
)
def test_visible_devices_map_to_nvml_gpus(opened, two_gpus, visible, expected):
    sensors, absent = opened(two_gpus, visible)
    assert uuids_of(sensors) == expected
    assert [s.name for s in sensors] == [f"gpu:{i}" for i in range(len(expected))]
    assert absent == []


def test_logical_index_is_the_position_in_the_list(opened, two_gpus):
    sensors, _ = opened(two_gpus, "1,0")
    assert [(s.info["index"], s.info["nvml_index"]) for s in sensors] == [(0, 1), (1, 0)]
    assert [s.read().power_w for s in sensors] == [300.0, 100.0]


@pytest.mark.parametrize("visible", ["", "  ", "-1"])
def test_hidden_gpus_are_absent_not_an_error(opened, two_gpus, visible):
    sensors, (absent,) = opened(two_gpus, visible)
    assert sensors == []
    assert (absent.source, absent.kind, absent.reason) == ("nvml", "gpu", "no device")
    assert "CUDA_VISIBLE_DEVICES" in absent.detail
    assert two_gpus.calls["nvmlInit"] == two_gpus.calls["nvmlShutdown"]


@pytest.mark.parametrize(
    ("visible", "why"),
    [("2", "not an NVML index"), ("GPU-cccc", "matches no GPU"), ("cuda:0", "neither"), ("MIG-ffff", "no MIG")],
)
def test_an_entry_that_matches_no_gpu_names_the_value_and_the_choices(opened, two_gpus, visible, why):
    with pytest.raises(ConfigurationError) as raised:
        opened(two_gpus, visible)
    message = str(raised.value)
    assert repr(visible) in message and why in message
    assert f"0: {UUIDS[0]} (NVIDIA Fake A100)" in message and f"1: {UUIDS[1]} (NVIDIA Fake A100)" in message
    assert two_gpus.calls["nvmlShutdown"] == 1


def test_an_ambiguous_uuid_prefix_is_an_error(opened, clock):
    nvml = FakeNvml([FakeGpu(uuid="GPU-abc1-x"), FakeGpu(uuid="GPU-abc2-y")], clock)
    with pytest.raises(ConfigurationError, match="'GPU-abc' is ambiguous.*GPU-abc1-x.*GPU-abc2-y"):
        opened(nvml, "GPU-abc")
    assert uuids_of(opened(nvml, "GPU-abc2")[0]) == ["GPU-abc2-y"]


@pytest.fixture
def mig_gpus(clock):
    """GPU 0 plain at 100 W; GPU 1 at 300 W split into two MIG instances."""
    return FakeNvml([FakeGpu(uuid=UUIDS[0], trace=steady(100.0)), FakeGpu(uuid=UUIDS[1], mig_uuids=MIGS)], clock)


@pytest.mark.parametrize("visible", [MIGS[0], f"{MIGS[0]},{MIGS[1]}", f"MIG-{UUIDS[1]}/1/0,MIG-{UUIDS[1]}/2/0"])
def test_mig_instances_measure_their_parent_gpu_once(opened, mig_gpus, visible):
    (sensor,), absent = opened(mig_gpus, visible)
    assert absent == []
    assert (sensor.name, sensor.info["uuid"], sensor.info["nvml_index"]) == ("gpu:0", UUIDS[1], 1)
    assert sensor.info["mig"] is True and sensor.info["scope"] == "whole GPU, shared by MIG instances"
    assert sensor.info["mig_uuids"] == visible.split(",")
    assert sensor.read().power_w == 100.0  # the whole GPU's trace


def test_mig_and_plain_gpu_together(opened, mig_gpus):
    sensors, _ = opened(mig_gpus, f"{MIGS[1]},0")
    assert [(s.name, s.info["uuid"], s.info["mig"]) for s in sensors] == [
        ("gpu:0", UUIDS[1], True),
        ("gpu:1", UUIDS[0], False),
    ]


def test_a_gpu_in_mig_mode_is_flagged_shared_even_when_named_by_index(opened, mig_gpus):
    sensors, _ = opened(mig_gpus, None)
    assert [s.info["mig"] for s in sensors] == [False, True]


# -- devices= (one GPU per DDP rank) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([1], [("gpu:1", UUIDS[0])]),
        ([0], [("gpu:0", UUIDS[1])]),
        ([UUIDS[0]], [("gpu:1", UUIDS[0])]),
        (["bbbb2222-0000-4000-8000-000000000001"], [("gpu:0", UUIDS[1])]),
        (["1", 0, 1], [("gpu:1", UUIDS[0]), ("gpu:0", UUIDS[1])]),
    ],
)
def test_devices_restrict_to_logical_indices_or_uuids(opened, two_gpus, devices, expected):
    sensors, _ = opened(two_gpus, "1,0", devices=devices)
    assert [(s.name, s.info["uuid"]) for s in sensors] == expected


def test_devices_by_mig_uuid(opened, mig_gpus):
    (sensor,), _ = opened(mig_gpus, f"0,{MIGS[0]}", devices=[MIGS[0]])
    assert (sensor.name, sensor.info["uuid"]) == ("gpu:1", UUIDS[1])


@pytest.mark.parametrize("devices", [[2], ["GPU-cccc"]])
def test_devices_that_match_nothing_is_an_error_with_choices(opened, two_gpus, devices):
    with pytest.raises(ConfigurationError, match=rf"devices entry '{devices[0]}'.*0: {UUIDS[1]}.*1: {UUIDS[0]}"):
        opened(two_gpus, "1,0", devices=devices)
    assert two_gpus.calls["nvmlShutdown"] == 1


# -- absent sources ---------------------------------------------------------------------------


def test_library_missing_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    sensors, (absent,) = find_gpus(visible_devices=None)
    assert sensors == [] and (absent.reason, absent.hint) == ("library missing", "pip install nvidia-ml-py")


@pytest.mark.parametrize("code", ["NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED"])
def test_no_driver_where_a_gpu_is_expected_is_absent_with_a_hint(opened, two_gpus, code):
    two_gpus.fail("nvmlInit", getattr(two_gpus, code))
    sensors, (absent,) = opened(two_gpus, "0")  # the user names a GPU: its driver is missing
    assert sensors == [] and absent.reason == "no driver" and absent.hint


def test_library_missing_switch_of_the_fake(opened, clock):
    sensors, (absent,) = opened(FakeNvml(2, clock, library_missing=True), "0")
    assert sensors == [] and absent.reason == "no driver" and "libnvidia-ml" in absent.hint


def test_no_driver_and_no_sign_of_a_gpu_is_a_cpu_only_machine(opened, clock):
    assert not nvidia_expected(None, roots=()) and nvidia_expected("0", roots=())
    if nvidia_expected(None):
        pytest.skip("this machine has an NVIDIA device node or driver")
    sensors, (absent,) = opened(FakeNvml(2, clock, library_missing=True))
    assert sensors == [] and absent.reason == "no device" and "no NVIDIA GPU or driver" in absent.detail


def test_zero_gpus_is_absent_and_shuts_nvml_down(opened, clock):
    nvml = FakeNvml([], clock)
    sensors, (absent,) = opened(nvml)
    assert sensors == [] and absent.reason == "no device" and absent.detail == "NVML found no GPU"
    assert nvml.calls["nvmlShutdown"] == 1


def test_a_gpu_with_neither_counter_nor_power_is_absent(opened, clock):
    nvml = FakeNvml([FakeGpu(has_counter=False), FakeGpu()], clock)
    nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_NOT_SUPPORTED, times=1)
    sensors, (absent,) = opened(nvml)
    assert [s.name for s in sensors] == ["gpu:1"] and absent.reason == "not supported"
    sensors[0].close()
    assert nvml.calls["nvmlShutdown"] == 1


# -- method per device, and changes mid-run ---------------------------------------------------


@pytest.mark.parametrize("code", ["NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND"])
def test_no_counter_means_power_polling(opened, clock, code):
    nvml = FakeNvml([FakeGpu(trace=steady(250.0))], clock)
    nvml.fail("nvmlDeviceGetTotalEnergyConsumption", getattr(nvml, code))
    (sensor,), _ = opened(nvml)
    assert sensor.method == POWER_POLLING
    assert (sensor.read().energy_j, sensor.read().power_w) == (None, 250.0)


def test_counter_not_supported_mid_run_switches_to_polling(opened, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(250.0))], clock)
    (sensor,), _ = opened(nvml)
    assert sensor.read().energy_j == 0.0
    nvml.fail("nvmlDeviceGetTotalEnergyConsumption", nvml.NVML_ERROR_NOT_SUPPORTED)
    clock.advance(1.0)
    reading = sensor.read()
    assert (reading.energy_j, reading.power_w, sensor.method) == (None, 250.0, POWER_POLLING)
    counter_calls = nvml.calls["nvmlDeviceGetTotalEnergyConsumption"]
    sensor.read()
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == counter_calls


def test_power_failing_beside_the_counter_gives_none_not_an_error(opened, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(250.0))], clock)
    (sensor,), _ = opened(nvml)
    nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_UNKNOWN, times=1)
    clock.advance(1.0)
    failed, retried = sensor.read(), sensor.read()
    assert (failed.energy_j, failed.power_w, retried.power_w) == (250.0, None, 250.0)
    nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_NOT_SUPPORTED)
    assert sensor.read().power_w is None
    calls = nvml.calls["nvmlDeviceGetPowerUsage"]
    assert sensor.read().energy_j == 250.0
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == calls  # not supported: no longer asked


def test_counter_reset_shows_as_a_decrease(opened, clock):
    nvml = FakeNvml([FakeGpu(trace=steady(250.0))], clock)
    (sensor,), _ = opened(nvml)
    clock.advance(10.0)
    before = sensor.read()
    nvml.reset_counter(0)
    clock.advance(1.0)
    after = sensor.read()
    assert (before.energy_j, after.energy_j, after.counter_range_j) == (2500.0, 250.0, None)


# -- errors -----------------------------------------------------------------------------------


def test_lost_gpu_raises_sensor_read_error_chained(opened, two_gpus):
    sensors, _ = opened(two_gpus)
    two_gpus.lose(1)
    with pytest.raises(SensorReadError) as raised:
        sensors[1].read()
    error = raised.value
    assert (error.sensor, error.path) == ("gpu:1", UUIDS[1])
    assert "nvmlDeviceGetTotalEnergyConsumption" in str(error) and "fell off the bus" in error.hint
    assert isinstance(error.__cause__, two_gpus.NVMLError_GpuIsLost)
    assert error.__cause__.value == two_gpus.NVML_ERROR_GPU_IS_LOST
    assert sensors[0].read().power_w == 100.0


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("NVML_ERROR_NO_PERMISSION", SensorPermissionError),
        ("NVML_ERROR_UNKNOWN", SensorReadError),
        ("NVML_ERROR_UNINITIALIZED", SensorReadError),
        ("NVML_ERROR_LIB_RM_VERSION_MISMATCH", SensorReadError),
    ],
)
def test_nvml_errors_are_translated_with_their_cause(opened, clock, code, kind):
    nvml = FakeNvml([FakeGpu(has_counter=False)], clock)
    (sensor,), _ = opened(nvml)
    nvml.fail("nvmlDeviceGetPowerUsage", getattr(nvml, code), times=1)
    with pytest.raises(kind) as raised:
        sensor.read()
    assert type(raised.value) is kind and raised.value.sensor == "gpu:0"
    assert raised.value.__cause__ == nvml.NVMLError(getattr(nvml, code))


def test_power_not_supported_on_the_polling_path_is_unavailable(opened, clock):
    nvml = FakeNvml([FakeGpu(has_counter=False)], clock)
    (sensor,), _ = opened(nvml)
    nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_NOT_SUPPORTED)
    # Moments after an answer, NOT_SUPPORTED is a driver refusing polls this fast: nothing new, polled slower.
    assert sensor.read().time_s == clock() and sensor.max_interval_s == 0.02
    clock.advance(1.0)
    with pytest.raises(SensorUnavailable, match="nvmlDeviceGetPowerUsage failed on gpu:0"):
        sensor.read()


# -- the shared nvmlInit ----------------------------------------------------------------------


def test_nvml_shuts_down_once_after_the_last_sensor_closes(two_gpus):
    sensors, _ = find_gpus(nvml=two_gpus, visible_devices=None, clock=two_gpus.clock)
    assert two_gpus.calls["nvmlInit"] == 1
    for sensor in sensors:
        assert two_gpus.calls["nvmlShutdown"] == 0
        sensor.close()
        sensor.close()
    assert two_gpus.calls["nvmlShutdown"] == 1
    with pytest.raises(two_gpus.NVMLError_Uninitialized):
        two_gpus.nvmlDeviceGetCount()


def test_sensor_info_and_protocol(opened, clock):
    nvml = FakeNvml([FakeGpu(uuid=UUIDS[0], name="NVIDIA H100 80GB HBM3", power_limit_w=700.0)], clock, "560.35.03")
    (sensor,), _ = opened(nvml)
    assert isinstance(sensor, Sensor) and sensor.kind == "gpu"
    assert sensor.info == {
        "index": 0,
        "nvml_index": 0,
        "uuid": UUIDS[0],
        "name": "NVIDIA H100 80GB HBM3",
        "mig": False,
        "mig_uuids": [],
        "scope": "whole GPU",
        "power_limit_w": 700.0,
        "driver_version": "560.35.03",
        "power_source": "nvmlDeviceGetTotalEnergyConsumption",
    }


def test_unsupported_power_limit_is_none(opened, clock):
    nvml = FakeNvml(1, clock)
    nvml.fail("nvmlDeviceGetEnforcedPowerLimit", nvml.NVML_ERROR_NOT_SUPPORTED)
    (sensor,), _ = opened(nvml)
    assert sensor.info["power_limit_w"] is None and sensor.method == ENERGY_COUNTER


def test_importing_the_module_does_not_import_pynvml():
    code = "import sys, tracker.sensors.nvml; assert 'pynvml' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


# -- the real NVML ----------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_nvml_counter_increases():
    real_nvml().nvmlShutdown()
    sensors, absent = find_gpus(visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    try:
        assert sensors, absent
        first = [s.read() for s in sensors]
        time.sleep(1.0)  # the counter updates about every 100 ms (docs/measurement.md §1.3)
        second = [s.read() for s in sensors]
        for sensor, a, b in zip(sensors, first, second, strict=True):
            assert b.time_s > a.time_s
            assert a.power_w is None or (math.isfinite(a.power_w) and a.power_w > 0)
            if sensor.method == ENERGY_COUNTER:
                assert math.isfinite(b.energy_j) and b.energy_j > a.energy_j
    finally:
        for sensor in sensors:
            sensor.close()
