"""The data types of the fake ``pynvml`` in :mod:`tracker.testing.fake_nvml`: constants, errors, structs, GPUs.

Names, codes and messages are those of NVIDIA's ``pynvml`` (package ``nvidia-ml-py``): ``NVMLError(code)``
builds the subclass for that code, and each subclass (``NVMLError_GpuIsLost``, ...) is an attribute of
this module, so the errors pickle. The structs are plain dataclasses with the fields the callers read.
:class:`FakeGpu` describes one GPU of a :class:`~tracker.testing.fake_nvml.FakeNvml`.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracker.testing import PowerTrace

ERROR_CODES = {
    "NVML_ERROR_UNINITIALIZED": (1, "Uninitialized"),
    "NVML_ERROR_INVALID_ARGUMENT": (2, "Invalid Argument"),
    "NVML_ERROR_NOT_SUPPORTED": (3, "Not Supported"),
    "NVML_ERROR_NO_PERMISSION": (4, "Insufficient Permissions"),
    "NVML_ERROR_ALREADY_INITIALIZED": (5, "Already Initialized"),
    "NVML_ERROR_NOT_FOUND": (6, "Not Found"),
    "NVML_ERROR_INSUFFICIENT_SIZE": (7, "Insufficient Size"),
    "NVML_ERROR_INSUFFICIENT_POWER": (8, "Insufficient External Power"),
    "NVML_ERROR_DRIVER_NOT_LOADED": (9, "Driver Not Loaded"),
    "NVML_ERROR_TIMEOUT": (10, "Timeout"),
    "NVML_ERROR_IRQ_ISSUE": (11, "Interrupt Request Issue"),
    "NVML_ERROR_LIBRARY_NOT_FOUND": (12, "NVML Shared Library Not Found"),
    "NVML_ERROR_FUNCTION_NOT_FOUND": (13, "Function Not Found"),
    "NVML_ERROR_CORRUPTED_INFOROM": (14, "Corrupted infoROM"),
    "NVML_ERROR_GPU_IS_LOST": (15, "GPU is lost"),
    "NVML_ERROR_RESET_REQUIRED": (16, "GPU requires restart"),
    "NVML_ERROR_OPERATING_SYSTEM": (17, "The operating system has blocked the request."),
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (18, "RM has detected an NVML/RM version mismatch."),
    "NVML_ERROR_IN_USE": (19, "In Use"),
    "NVML_ERROR_MEMORY": (20, "Insufficient Memory"),
    "NVML_ERROR_NO_DATA": (21, "No Data"),
    "NVML_ERROR_UNKNOWN": (999, "Unknown Error"),
}
CONSTANTS: dict[str, int] = {
    "NVML_SUCCESS": 0,
    **{name: code for name, (code, _) in ERROR_CODES.items()},
    "NVML_TEMPERATURE_GPU": 0,
    **{f"NVML_CLOCK_{name}": i for i, name in enumerate(("GRAPHICS", "SM", "MEM", "VIDEO"))},
    "NVML_DEVICE_MIG_DISABLE": 0,
    "NVML_DEVICE_MIG_ENABLE": 1,
    "NVML_FEATURE_DISABLED": 0,
    "NVML_FEATURE_ENABLED": 1,
    "NVML_COMPUTEMODE_DEFAULT": 0,
    "NVML_INIT_FLAG_NO_GPUS": 1,
    "NVML_TOTAL_POWER_SAMPLES": 0,
    **{
        f"NVML_VALUE_TYPE_{name}": i
        for i, name in enumerate(
            ("DOUBLE", "UNSIGNED_INT", "UNSIGNED_LONG", "UNSIGNED_LONG_LONG", "SIGNED_LONG_LONG", "SIGNED_INT")
        )
    },
    "NVML_FI_DEV_POWER_AVERAGE": 185,
    "NVML_FI_DEV_POWER_INSTANT": 186,
    "NVML_POWER_SCOPE_GPU": 0,
    "NVML_POWER_SCOPE_MODULE": 1,
    "NVML_POWER_SCOPE_MEMORY": 2,
    **{
        f"NVML_DEVICE_ARCH_{name}": i
        for i, name in enumerate(("KEPLER", "MAXWELL", "PASCAL", "VOLTA", "TURING", "AMPERE", "ADA", "HOPPER"), 2)
    },
}


class NVMLError(Exception):
    """Base of the fake's NVML errors; ``NVMLError(code)`` builds the subclass for that code, as pynvml does.

    Attributes:
        value: the ``NVML_ERROR_*`` code.
    """

    _valClassMapping: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int, *args: Any) -> NVMLError:
        """The subclass of this error code, as pynvml picks it."""
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __str__(self) -> str:
        return MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


MESSAGES = {code: message for code, message in ERROR_CODES.values()}


def _error_class(constant: str, code: int) -> type[NVMLError]:
    # The naming rule of pynvml's _extractNVMLErrorsAsClasses: NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost.
    name = "NVMLError_" + string.capwords(constant.removeprefix("NVML_ERROR_"), "_").replace("_", "")

    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    error_class = type(name, (NVMLError,), {"__new__": new, "__module__": __name__, "__doc__": MESSAGES[code]})
    NVMLError._valClassMapping[code] = error_class
    return error_class


ERROR_CLASSES = {cls.__name__: cls for cls in (_error_class(name, code) for name, (code, _) in ERROR_CODES.items())}
globals().update(ERROR_CLASSES)  # module attributes, as in pynvml, so that the errors pickle


@dataclass
class c_nvmlMemory_t:
    """Device memory in bytes, as ``nvmlDeviceGetMemoryInfo`` returns it."""

    total: int = 0
    free: int = 0
    used: int = 0


@dataclass
class c_nvmlUtilization_t:
    """Utilisation in percent over the last sample period."""

    gpu: int = 0
    memory: int = 0


@dataclass
class c_nvmlProcessInfo_t:
    """A process with a context on the GPU; memory in bytes."""

    pid: int = 0
    usedGpuMemory: int | None = 0
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class nvmlPciInfo_t:
    """The GPU's PCI address."""

    busId: str = ""
    domain: int = 0
    bus: int = 0
    device: int = 0
    pciDeviceId: int = 0x20B010DE
    pciSubSystemId: int = 0x134F10DE


@dataclass
class c_nvmlValue_t:
    """The union of NVML values; the fake fills the member its value type names (power: ``uiVal``, mW)."""

    dVal: float = 0.0
    uiVal: int = 0
    ulVal: int = 0
    ullVal: int = 0
    sllVal: int = 0
    siVal: int = 0


@dataclass
class c_nvmlSample_t:
    """One sample of the driver's buffer: ``timeStamp`` is the CPU time in µs since the Unix epoch."""

    timeStamp: int = 0
    sampleValue: c_nvmlValue_t = field(default_factory=c_nvmlValue_t)


@dataclass
class c_nvmlFieldValue_t:
    """One answer of ``nvmlDeviceGetFieldValues``: each carries its own ``nvmlReturn``.

    ``timestamp`` is the CPU time in µs since the Unix epoch; ``latencyUsec`` how stale the value is.
    """

    fieldId: int = 0
    scopeId: int = 0
    timestamp: int = 0
    latencyUsec: int = 0
    valueType: int = 0
    nvmlReturn: int = 0
    value: c_nvmlValue_t = field(default_factory=c_nvmlValue_t)


def _steady(watts: float) -> PowerTrace:
    from tracker.testing import steady  # not at the top: tracker.testing imports this module

    return steady(watts)


@dataclass(frozen=True)
class FakeGpu:
    """One fake GPU.

    Args:
        uuid: its ``GPU-`` UUID; empty gives ``GPU-0000000<i>-…`` by position.
        name: what ``nvmlDeviceGetName`` returns.
        trace: the power it draws; trace time 0 is the :class:`FakeNvml`'s construction.
        has_counter: whether ``nvmlDeviceGetTotalEnergyConsumption`` works (Volta and newer).
        mig_uuids: ``MIG-`` UUIDs of its MIG instances; non-empty means MIG mode is on.
        power_limit_w: the enforced power limit in W.
        memory_total_b: device memory in bytes.
        architecture: an ``NVML_DEVICE_ARCH_*`` value.
        pids: processes reported by ``nvmlDeviceGetComputeRunningProcesses``.
        power_average_s: ``nvmlDeviceGetPowerUsage`` returns the mean power over this trailing window, s
            (1.0 on Ampere except GA100 and newer); 0 returns instantaneous power (GA100 and older).
        power_fields: whether ``nvmlDeviceGetFieldValues`` answers ``NVML_FI_DEV_POWER_INSTANT`` and
            ``NVML_FI_DEV_POWER_AVERAGE`` (the average over 1 s); else each field's ``nvmlReturn`` is NOT_SUPPORTED.
        sample_period_s: the driver's power sample buffer (``nvmlDeviceGetSamples`` with
            ``NVML_TOTAL_POWER_SAMPLES``) holds a sample every this many seconds; ``None``: NOT_SUPPORTED.
        sample_window_s: each buffered sample is the mean power over this trailing window, s (0: instantaneous).
        sample_buffer: how many samples the driver keeps; older ones are dropped.
        sample_phase_s: when, within a period, the driver takes its samples (trace time), s.
        sample_jitter_s: each sample is taken late by a fixed pseudo-random delay below this, s: 0 is a
            driver exactly periodic (a periodic load can then phase-lock with it), the period spreads
            each sample anywhere in its slot.
        counter_start_j: the energy counter's value at trace time 0, J (energy since the driver loaded).
    """

    uuid: str = ""
    name: str = "NVIDIA Fake A100"
    trace: PowerTrace = field(default_factory=lambda: _steady(100.0))
    has_counter: bool = True
    mig_uuids: Sequence[str] = ()
    power_limit_w: float = 400.0
    memory_total_b: int = 40 * 2**30
    architecture: int = 7
    pids: Sequence[int] = ()
    power_average_s: float = 0.0
    power_fields: bool = False
    sample_period_s: float | None = None
    sample_window_s: float = 0.0
    sample_buffer: int = 120
    sample_phase_s: float = 0.0
    sample_jitter_s: float = 0.0
    counter_start_j: float = 0.0
