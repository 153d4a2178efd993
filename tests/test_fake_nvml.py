"""The fake pynvml: same names and error classes as NVIDIA's, GPUs that follow power traces."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import threading

import pynvml as real_pynvml
import pytest

from tracker.testing import FakeGpu, FakeNvml, fake_pynvml, piecewise, square_wave, steady
from tracker.testing.fake_nvml import NVMLError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def nvml(clock):
    """Two initialised fake GPUs: 250 W steady with a counter, and a square wave without one."""
    fake = FakeNvml(
        [FakeGpu(trace=steady(250.0)), FakeGpu(trace=square_wave(50.0, 350.0, 0.3), has_counter=False)], clock
    )
    fake.nvmlInit()
    return fake


# -- errors and constants, as in nvidia-ml-py -------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "NVMLError_Uninitialized",
        "NVMLError_InvalidArgument",
        "NVMLError_NotSupported",
        "NVMLError_NoPermission",
        "NVMLError_NotFound",
        "NVMLError_DriverNotLoaded",
        "NVMLError_LibraryNotFound",
        "NVMLError_FunctionNotFound",
        "NVMLError_GpuIsLost",
        "NVMLError_LibRmVersionMismatch",
        "NVMLError_Unknown",
    ],
)
def test_error_classes_match_the_real_binding(name):
    real, fake = getattr(real_pynvml, name), getattr(FakeNvml, name)
    code = real().value
    assert fake().value == code
    assert type(FakeNvml.NVMLError(code)) is fake and type(real_pynvml.NVMLError(code)) is real
    assert isinstance(fake(), NVMLError) and issubclass(fake, Exception)
    assert str(fake()) == str(real())


def test_every_constant_has_the_real_value():
    module = fake_pynvml(0)
    constants = [name for name in dir(module) if name.startswith("NVML_")]
    assert len(constants) > 30
    assert all(getattr(module, name) == getattr(real_pynvml, name) for name in constants)


def test_errors_compare_by_code_and_survive_pickling():
    error = NVMLError(3)
    assert error == FakeNvml.NVMLError_NotSupported() and error != NVMLError(15)
    assert pickle.loads(pickle.dumps(error)) == error
    assert str(NVMLError(12345)) == "NVML Error with code 12345"
    assert FakeNvml.nvmlExceptionClass(15) is FakeNvml.NVMLError_GpuIsLost


# -- initialisation ---------------------------------------------------------------------------


def test_calls_before_init_raise_uninitialized(clock):
    fake = FakeNvml(1, clock)
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    fake.nvmlInitWithFlags(0)
    fake.nvmlShutdown()
    assert fake.nvmlDeviceGetCount() == 1  # still one init outstanding, as NVML counts them
    fake.nvmlShutdown()
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlShutdown()


def test_library_missing(clock):
    fake = FakeNvml(1, clock, library_missing=True)
    with pytest.raises(fake.NVMLError_LibraryNotFound):
        fake.nvmlInit()


# -- power and energy follow the trace --------------------------------------------------------


def test_counter_is_the_exact_integral_in_millijoules(nvml, clock):
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 0
    clock.advance(1.2345)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 308625  # floor(250 W x 1.2345 s in mJ)
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 250_000
    assert nvml.true_energy_j(0, nvml.origin_s, clock()) == pytest.approx(308.625)


def test_polled_power_follows_the_trace(nvml, clock):
    handle = nvml.nvmlDeviceGetHandleByIndex(1)
    seen = []
    clock.advance(0.075)  # then mid-way through each half period of 0.15 s
    for _ in range(6):
        seen.append(nvml.nvmlDeviceGetPowerUsage(handle))
        clock.advance(0.15)
    assert seen == [350_000, 50_000] * 3
    with pytest.raises(nvml.NVMLError_NotSupported):
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)


def test_power_readings_hold_the_drivers_newest_refresh(clock):
    # A Pascal-like driver: a refresh every 20 ms, each the mean of the 10 ms before it; a step at 0.105 s.
    trace = piecewise([(0.0, 100.0), (0.105, 300.0)])
    nvml = FakeNvml([FakeGpu(trace=trace, has_counter=False, power_fields=True)], clock)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    instant = nvml.NVML_FI_DEV_POWER_INSTANT

    def both():
        (field,) = nvml.nvmlDeviceGetFieldValues(handle, [instant])
        return nvml.nvmlDeviceGetPowerUsage(handle), field.value.uiVal

    clock.advance(0.109)  # refreshes at 0.1 (100 W) and then 0.12: the step is not seen yet
    assert both() == (100_000, 100_000)
    clock.advance(0.01)  # 0.119 s: still the 0.1 s refresh
    assert both() == (100_000, 100_000)
    clock.advance(0.002)  # 0.121 s: the 0.12 s refresh, the mean of 0.11-0.12 s
    assert both() == (300_000, 300_000)


def test_a_refresh_whose_window_straddles_a_step_reads_the_mean(clock):
    trace = piecewise([(0.0, 100.0), (0.115, 300.0)])
    nvml = FakeNvml([FakeGpu(trace=trace, has_counter=False)], clock)
    nvml.nvmlInit()
    clock.advance(0.125)  # the 0.12 s refresh averages 0.11-0.12 s: half at 100 W, half at 300 W
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(0)) == 200_000


def test_power_update_zero_is_the_continuous_trace(clock):
    trace = piecewise([(0.0, 100.0), (0.105, 300.0)])
    nvml = FakeNvml([FakeGpu(trace=trace, has_counter=False, power_update_s=0.0)], clock)
    nvml.nvmlInit()
    clock.advance(0.106)
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(0)) == 300_000


def test_jittered_refreshes_stay_in_their_slots_and_in_order(clock):
    trace = piecewise([(0.0, 0.0), *[(0.001 * k, float(k)) for k in range(1, 2001)]])  # power = ms since 0
    gpu = FakeGpu(trace=trace, has_counter=False, power_window_s=0.0, sample_phase_s=0.003, sample_jitter_s=0.02)
    nvml = FakeNvml([gpu], clock)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    seen = []
    for _ in range(1000):
        clock.advance(0.001)
        seen.append(nvml.nvmlDeviceGetPowerUsage(handle) / 1000)
    refreshes = sorted(set(seen))
    assert seen == sorted(seen)  # the reading never goes back to an older refresh
    assert 40 <= len(refreshes) <= 51  # about one per 20 ms slot over 1 s
    assert all(w <= 1000 * 0.001 * (i + 1) for i, w in enumerate(seen))  # never a refresh from the future


def test_averaged_readings_are_refreshed_too(clock):
    trace = piecewise([(0.0, 100.0), (1.5, 300.0)])
    nvml = FakeNvml([FakeGpu(trace=trace, power_average_s=1.0, sample_phase_s=0.005)], clock)
    nvml.nvmlInit()
    clock.advance(2.0)  # the newest refresh is at 1.985 s: the mean of 0.985-1.985 s
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(0)) == 197_000


def test_reset_counter_restarts_at_zero(nvml, clock):
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(4.0)
    nvml.reset_counter(0)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 0
    clock.advance(2.0)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 500_000


# -- switches ---------------------------------------------------------------------------------


def test_fail_for_a_number_of_calls_then_recover(nvml):
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.fail("nvmlDeviceGetPowerUsage", nvml.NVML_ERROR_UNKNOWN, times=2)
    for _ in range(2):
        with pytest.raises(nvml.NVMLError_Unknown):
            nvml.nvmlDeviceGetPowerUsage(handle)
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 250_000


def test_fail_always_until_cleared(nvml):
    nvml.fail("nvmlDeviceGetCount", nvml.NVML_ERROR_NO_PERMISSION)
    for _ in range(3):
        with pytest.raises(nvml.NVMLError_NoPermission):
            nvml.nvmlDeviceGetCount()
    nvml.clear_failures()
    assert nvml.nvmlDeviceGetCount() == 2


def test_fail_rejects_unknown_functions(nvml):
    with pytest.raises(ValueError, match="nvmlDeviceGetPowerUsag"):
        nvml.fail("nvmlDeviceGetPowerUsag", 3)


def test_a_lost_gpu_raises_gpu_is_lost_on_every_call(nvml):
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.lose(0)
    for call in (nvml.nvmlDeviceGetPowerUsage, nvml.nvmlDeviceGetUUID, nvml.nvmlDeviceGetTotalEnergyConsumption):
        with pytest.raises(nvml.NVMLError_GpuIsLost):
            call(handle)
    with pytest.raises(nvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(1)) == 350_000


def test_calls_are_counted_per_function_and_thread_safe(nvml):
    handle = nvml.nvmlDeviceGetHandleByIndex(0)

    def hammer():
        for _ in range(500):
            nvml.nvmlDeviceGetPowerUsage(handle)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 2000
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 1


# -- handles, UUIDs, MIG ----------------------------------------------------------------------


def test_handles_by_exact_uuid_only(clock):
    fake = FakeNvml([FakeGpu(uuid="GPU-abc-1"), FakeGpu(uuid="GPU-abc-2")], clock)
    fake.nvmlInit()
    assert fake.nvmlDeviceGetUUID(fake.nvmlDeviceGetHandleByUUID("GPU-abc-2")) == "GPU-abc-2"
    assert fake.nvmlDeviceGetIndex(fake.nvmlDeviceGetHandleByUUID(b"GPU-abc-1")) == 0
    with pytest.raises(fake.NVMLError_NotFound):
        fake.nvmlDeviceGetHandleByUUID("GPU-abc")


def test_default_uuids_are_distinct_and_look_real(clock):
    fake = FakeNvml(3, clock)
    assert len({gpu.uuid for gpu in fake.gpus}) == 3
    assert all(len(gpu.uuid) == len("GPU-") + 36 for gpu in fake.gpus)
    with pytest.raises(ValueError, match="unique"):
        FakeNvml([FakeGpu(uuid="GPU-x"), FakeGpu(uuid="GPU-x")], clock)


def test_mig_handles_lead_to_their_parent(clock):
    fake = FakeNvml([FakeGpu(), FakeGpu(mig_uuids=("MIG-a", "MIG-b"))], clock)
    fake.nvmlInit()
    mig = fake.nvmlDeviceGetHandleByUUID("MIG-b")
    assert fake.nvmlDeviceIsMigDeviceHandle(mig) and fake.nvmlDeviceGetUUID(mig) == "MIG-b"
    parent = fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
    assert not fake.nvmlDeviceIsMigDeviceHandle(parent) and fake.nvmlDeviceGetIndex(parent) == 1
    assert fake.nvmlDeviceGetMigMode(parent) == [1, 1]
    assert fake.nvmlDeviceGetMigMode(fake.nvmlDeviceGetHandleByIndex(0)) == [0, 0]
    assert fake.nvmlDeviceGetUUID(fake.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)) == "MIG-a"
    with pytest.raises(fake.NVMLError_NotSupported):  # no power per MIG instance
        fake.nvmlDeviceGetPowerUsage(mig)
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(parent)


def test_what_other_tools_read(nvml, clock):
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    assert memory.total == memory.free + memory.used == 40 * 2**30
    assert nvml.nvmlDeviceGetUtilizationRates(handle).gpu == 62  # 250 W of a 400 W limit
    assert nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU) == 55
    assert nvml.nvmlDeviceGetEnforcedPowerLimit(handle) == 400_000
    assert nvml.nvmlDeviceGetPciInfo(handle).busId == "00000000:01:00.0"
    assert nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM) == 1410
    assert nvml.nvmlDeviceGetComputeRunningProcesses(handle) == []
    assert nvml.nvmlSystemGetDriverVersion() == "550.54.15"
    with pytest.raises(nvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetPowerUsage("not a handle")


# -- as sys.modules["pynvml"] -----------------------------------------------------------------


def test_fake_pynvml_module_has_the_names_the_tools_use():
    module = fake_pynvml(2)
    used = [
        "nvmlInit",
        "nvmlShutdown",
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetComputeMode",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
        "NVMLError",
        "NVMLError_NotSupported",
        "NVML_TEMPERATURE_GPU",
        "c_nvmlMemory_t",
        "_nvmlGetFunctionPointer",
    ]
    assert [name for name in used if not hasattr(module, name)] == []
    assert all(hasattr(real_pynvml, name) for name in used)
    assert module.c_nvmlMemory_t(-1, -1, -1).total == -1
    module.nvmlInit()
    assert module.nvmlDeviceGetCount() == 2 and module.fake.calls["nvmlDeviceGetCount"] == 1


COMPAT_SCRIPT = """
import json, sys
from tracker.testing import FakeClock, FakeGpu, fake_pynvml, steady
clock = FakeClock()
gpus = [FakeGpu(trace=steady(250.0)), FakeGpu(trace=steady(100.0), has_counter=False, pids=(4242,))]
sys.modules["pynvml"] = module = fake_pynvml(gpus, clock=clock)

from codecarbon.external.hardware import GPU
gpu = GPU.from_utils()
gpu.start()
clock.advance(10.0)
power, energy = gpu.measure_power_and_energy(10.0)
names = [d["name"] for d in gpu.devices.get_gpu_details()]

from carbontracker.components.gpu.nvidia import NvidiaGPU
every = NvidiaGPU(pids=[4242], devices_by_pid=False)
available = every.available()
every.init(); every_w = every.power_usage(); every.shutdown()
mine = NvidiaGPU(pids=[4242], devices_by_pid=True)
mine.init(); mine_w = mine.power_usage(); mine.shutdown()
print(json.dumps({"codecarbon": [power.W, energy.kWh * 3.6e6, names], "carbontracker": [available, every_w, mine_w]}))
"""


def test_codecarbon_and_carbontracker_run_on_the_fake():
    pytest.importorskip("carbontracker")  # in the test extra; skipped, not failed, where it is not installed
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run(
        [sys.executable, "-c", COMPAT_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    watts, joules, names = result["codecarbon"]
    assert names == ["NVIDIA Fake A100", "NVIDIA Fake A100"]
    assert watts == pytest.approx(350.0, rel=1e-5)
    assert joules == pytest.approx(3500.0, rel=1e-5)  # 250 W counter + 100 W polled, for 10 s
    assert result["carbontracker"] == [True, [250.0, 100.0], [100.0]]
    assert math.isfinite(watts)
