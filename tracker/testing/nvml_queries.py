"""The simple per-device queries of the fake ``pynvml`` in :mod:`tracker.testing.fake_nvml`, as a table.

:data:`QUERIES` maps each NVML function name to its docstring and its answer, a function of the
:class:`~tracker.testing.fake_nvml.FakeNvml` and the call's arguments; ``FakeNvml`` turns every entry into a
method that is counted, locked and can be made to fail like its other NVML calls. Units are NVML's:
power and limits in integer mW, memory in bytes, clocks in MHz.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracker.testing.nvml_types import MESSAGES, c_nvmlMemory_t, c_nvmlProcessInfo_t, c_nvmlUtilization_t, nvmlPciInfo_t

if TYPE_CHECKING:
    from tracker.testing.fake_nvml import FakeNvml, _Handle

__all__ = ["QUERIES"]

_CLOCKS_MHZ = (1410, 1410, 1215, 1275)  # graphics, SM, memory, video: an A100's boost clocks


def _bus_id(index: int) -> str:
    return f"00000000:{index + 1:02X}:00.0"


def _limit_mw(nvml: FakeNvml, handle: _Handle) -> int:
    return round(nvml._spec(handle, mig_ok=False).power_limit_w * 1000)


def _busy_percent(nvml: FakeNvml, handle: _Handle) -> int:
    return min(100, round(100 * nvml._power_w(handle) / nvml._spec(handle).power_limit_w))


def _physical_index(nvml: FakeNvml, handle: _Handle) -> int:
    nvml._spec(handle, mig_ok=False)
    return handle.gpu


# name: (docstring, answer(fake, handle, *args)); each becomes a FakeNvml method wrapped by _api.
QUERIES: dict[str, tuple[str, Callable[..., Any]]] = {
    "nvmlDeviceGetUUID": (
        "The ``GPU-`` or ``MIG-`` UUID.",
        lambda nv, h: nv._spec(h).uuid if h.mig is None else nv._spec(h).mig_uuids[h.mig],
    ),
    "nvmlDeviceGetName": (
        "The product name.",
        lambda nv, h: nv._spec(h).name + ("" if h.mig is None else " MIG 1g.5gb"),
    ),
    "nvmlDeviceIsMigDeviceHandle": ("Whether the handle is a MIG instance's.", lambda nv, h: h.mig is not None),
    "nvmlDeviceGetMigMode": (
        "``[current, pending]``: ``NVML_DEVICE_MIG_ENABLE`` (1) when the GPU has MIG instances.",
        lambda nv, h: [int(bool(nv._spec(h, mig_ok=False).mig_uuids))] * 2,
    ),
    "nvmlDeviceGetMaxMigDeviceCount": (
        "How many MIG instances.",
        lambda nv, h: len(nv._spec(h, mig_ok=False).mig_uuids),
    ),
    "nvmlDeviceGetIndex": ("The NVML index of a physical GPU.", _physical_index),
    "nvmlDeviceGetMinorNumber": ("The N of ``/dev/nvidiaN``.", _physical_index),
    "nvmlDeviceGetArchitecture": ("An ``NVML_DEVICE_ARCH_*`` value.", lambda nv, h: nv._spec(h).architecture),
    "nvmlDeviceGetPciInfo": (
        "The PCI address.",
        lambda nv, h: nvmlPciInfo_t(busId=_bus_id(_physical_index(nv, h)), bus=h.gpu + 1),
    ),
    "nvmlDeviceGetEnforcedPowerLimit": ("The power limit the driver enforces, in mW.", _limit_mw),
    "nvmlDeviceGetPowerManagementLimit": ("The power management limit, in mW.", _limit_mw),
    "nvmlDeviceGetPowerManagementDefaultLimit": ("The default power limit, in mW.", _limit_mw),
    "nvmlDeviceGetPowerManagementLimitConstraints": (
        "``[min, max]`` settable power limit, in mW.",
        lambda nv, h: [_limit_mw(nv, h) // 4, _limit_mw(nv, h)],
    ),
    "nvmlDeviceGetMemoryInfo": (
        "Memory in bytes, 1 GiB used.",
        lambda nv, h: c_nvmlMemory_t(nv._spec(h).memory_total_b, nv._spec(h).memory_total_b - 2**30, 2**30),
    ),
    "nvmlDeviceGetTemperature": (
        "Temperature in degrees Celsius, rising with power.",
        lambda nv, h, sensor: 30 + round(nv._power_w(h) / 10),
    ),
    "nvmlDeviceGetUtilizationRates": (
        "Utilisation in percent: power over power limit.",
        lambda nv, h: c_nvmlUtilization_t(_busy_percent(nv, h), _busy_percent(nv, h) // 2),
    ),
    "nvmlDeviceGetComputeRunningProcesses": (
        "The GPU's ``pids``, each using 1 GiB.",
        lambda nv, h: [c_nvmlProcessInfo_t(pid, 2**30) for pid in nv._spec(h).pids],
    ),
    "nvmlDeviceGetGraphicsRunningProcesses": ("No graphics processes.", lambda nv, h: []),
    "nvmlDeviceGetClockInfo": ("Current clock in MHz (``NVML_CLOCK_*``).", lambda nv, h, kind: _CLOCKS_MHZ[kind]),
    "nvmlDeviceGetMaxClockInfo": ("Maximum clock in MHz (``NVML_CLOCK_*``).", lambda nv, h, kind: _CLOCKS_MHZ[kind]),
    "nvmlDeviceGetComputeMode": ("``NVML_COMPUTEMODE_DEFAULT``.", lambda nv, h: 0),
    "nvmlDeviceGetPowerManagementMode": ("``NVML_FEATURE_ENABLED``.", lambda nv, h: 1),
    "nvmlDeviceGetPersistenceMode": ("``NVML_FEATURE_ENABLED``.", lambda nv, h: 1),
    "nvmlDeviceGetPerformanceState": ("P-state 0.", lambda nv, h: 0),
    "nvmlSystemGetDriverVersion": ("The driver version string.", lambda nv: nv.driver_version),
    "nvmlSystemGetNVMLVersion": ("The NVML version string.", lambda nv: "12." + nv.driver_version),
    "nvmlSystemGetCudaDriverVersion": ("The CUDA driver version (12040 is 12.4).", lambda nv: 12040),
    "nvmlErrorString": (
        "The message of an ``NVML_ERROR_*`` code.",
        lambda nv, code: MESSAGES.get(code, "Unknown Error"),
    ),
}
