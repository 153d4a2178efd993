"""A fake ``pynvml`` whose GPUs follow power traces, so the true energy is known.

Public through :mod:`tracker.testing`. :class:`FakeNvml` has the function names, constants and
``NVMLError`` classes of NVIDIA's ``pynvml`` (package ``nvidia-ml-py``) that the tracker,
codecarbon and carbontracker call; :func:`fake_pynvml` wraps one in a module object to install as
``sys.modules["pynvml"]``. Units are NVML's: energy in integer mJ, power and limits in integer mW.

Example:
    >>> from tracker.testing import FakeClock, steady
    >>> clock = FakeClock()
    >>> nvml = FakeNvml([FakeGpu(trace=steady(250.0))], clock=clock)
    >>> nvml.nvmlInit()
    >>> handle = nvml.nvmlDeviceGetHandleByIndex(0)
    >>> _ = clock.advance(2.0)
    >>> nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    500000
"""

from __future__ import annotations

import functools
import math
import string
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
    **{
        f"NVML_DEVICE_ARCH_{name}": i
        for i, name in enumerate(("KEPLER", "MAXWELL", "PASCAL", "VOLTA", "TURING", "AMPERE", "ADA", "HOPPER"), 2)
    },
}
_CLOCKS_MHZ = (1410, 1410, 1215, 1275)  # graphics, SM, memory, video: an A100's boost clocks


class NVMLError(Exception):
    """Base of the fake's NVML errors; ``NVMLError(code)`` builds the subclass for that code, as pynvml does.

    Attributes:
        value: the ``NVML_ERROR_*`` code.
    """

    _valClassMapping: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int, *args: Any) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


_MESSAGES = {code: message for code, message in ERROR_CODES.values()}


def _error_class(constant: str, code: int) -> type[NVMLError]:
    # The naming rule of pynvml's _extractNVMLErrorsAsClasses: NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost.
    name = "NVMLError_" + string.capwords(constant.removeprefix("NVML_ERROR_"), "_").replace("_", "")

    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    error_class = type(name, (NVMLError,), {"__new__": new, "__module__": __name__, "__doc__": _MESSAGES[code]})
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


@dataclass(frozen=True)
class _Handle:
    gpu: int
    mig: int | None = None


def _api(*, needs_init: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a method an NVML call: counted, thread-safe, scripted failures, init and lost-GPU checks."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: FakeNvml, *args: Any) -> Any:
            with self._lock:
                self._enter(method.__name__, args, needs_init)
                return method(self, *args)

        return call

    return wrap


class FakeNvml:
    """A stand-in for the ``pynvml`` module: same function names, constants and ``NVMLError`` classes.

    Args:
        gpus: the GPUs, or how many default ones (steady 100 W, with a counter).
        clock: monotonic clock in seconds; trace time 0 is its reading at construction.
        driver_version: what ``nvmlSystemGetDriverVersion`` returns.
        library_missing: ``nvmlInit`` raises ``NVMLError_LibraryNotFound`` (no driver installed).

    Attributes:
        calls: how many times each NVML function was called, by name.
    """

    def __init__(
        self,
        gpus: Sequence[FakeGpu] | int = 1,
        clock: Callable[[], float] = time.monotonic,
        driver_version: str = "550.54.15",
        library_missing: bool = False,
    ) -> None:
        specs = [FakeGpu() for _ in range(gpus)] if isinstance(gpus, int) else list(gpus)
        self.gpus = [
            g if g.uuid else replace(g, uuid=f"GPU-{i:08x}-fa6e-4c1d-8e5a-{i:012x}") for i, g in enumerate(specs)
        ]
        uuids = [uuid for gpu in self.gpus for uuid in (gpu.uuid, *gpu.mig_uuids)]
        if len(set(uuids)) != len(uuids):
            raise ValueError(f"FakeNvml: every GPU and MIG UUID must be unique, got {uuids}")
        self.clock, self.origin_s = clock, clock()
        self.driver_version, self.library_missing = driver_version, library_missing
        self.calls: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._init_count = 0
        self._failures: dict[str, tuple[int, int | None]] = {}
        self._lost: set[int] = set()
        self._zero_j = [0.0] * len(self.gpus)

    # -- switches for tests ------------------------------------------------------------------

    def fail(self, function: str, code: int, times: int | None = None) -> None:
        """Raise ``NVMLError(code)`` from ``function`` on its next ``times`` calls, or always when ``None``."""
        if not function.startswith("nvml") or not callable(getattr(self, function, None)):
            raise ValueError(f"fail({function!r}): not an NVML function of this fake")
        with self._lock:
            self._failures[function] = (code, times)

    def clear_failures(self) -> None:
        """Forget every scripted failure."""
        with self._lock:
            self._failures.clear()

    def lose(self, index: int) -> None:
        """GPU ``index`` raises ``NVMLError_GpuIsLost`` from every call from now on (fell off the bus)."""
        with self._lock:
            self._lost.add(index)

    def reset_counter(self, index: int) -> None:
        """GPU ``index``'s energy counter restarts at 0 now, as after a driver reload."""
        with self._lock:
            self._zero_j[index] += self._counter_j(index)

    def true_energy_j(self, index: int, t0: float, t1: float) -> float:
        """The exact energy GPU ``index`` drew between two clock readings, in J."""
        return self.gpus[index].trace.between_j(t0 - self.origin_s, t1 - self.origin_s)

    # -- internals ---------------------------------------------------------------------------

    def _enter(self, function: str, args: tuple[Any, ...], needs_init: bool) -> None:
        self.calls[function] += 1
        rule = self._failures.get(function)
        if rule is not None:
            code, left = rule
            if left is not None and left <= 1:
                del self._failures[function]
            elif left is not None:
                self._failures[function] = (code, left - 1)
            raise NVMLError(code)
        if needs_init and not self._init_count:
            raise NVMLError(CONSTANTS["NVML_ERROR_UNINITIALIZED"])
        if args and isinstance(args[0], _Handle) and args[0].gpu in self._lost:
            raise NVMLError(CONSTANTS["NVML_ERROR_GPU_IS_LOST"])

    def _start(self) -> None:
        if self.library_missing:
            raise NVMLError(CONSTANTS["NVML_ERROR_LIBRARY_NOT_FOUND"])
        self._init_count += 1

    def _spec(self, handle: Any, *, mig_ok: bool = True) -> FakeGpu:
        if not isinstance(handle, _Handle) or not 0 <= handle.gpu < len(self.gpus):
            raise NVMLError(CONSTANTS["NVML_ERROR_INVALID_ARGUMENT"])
        if handle.mig is not None and not mig_ok:
            # NVML reports power and energy for the whole GPU, not per MIG instance (MEASUREMENT.md 1.7);
            # what a MIG handle answers is unverified, so the fake takes the stricter NOT_SUPPORTED.
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        return self.gpus[handle.gpu]

    def _handle(self, gpu: int, mig: int | None = None) -> _Handle:
        if gpu in self._lost:
            raise NVMLError(CONSTANTS["NVML_ERROR_GPU_IS_LOST"])
        return _Handle(gpu, mig)

    def _counter_j(self, index: int) -> float:
        return self.gpus[index].trace.energy_j(self.clock() - self.origin_s) - self._zero_j[index]

    def _power_w(self, handle: Any) -> float:
        return self._spec(handle, mig_ok=False).trace.power_w(self.clock() - self.origin_s)

    # -- the NVML functions with logic; the simple per-device queries are in _QUERIES below --

    @_api(needs_init=False)
    def nvmlInit(self) -> None:
        """Initialise NVML; reference-counted like the real library."""
        self._start()

    @_api(needs_init=False)
    def nvmlInitWithFlags(self, flags: int) -> None:
        """Initialise NVML with flags (ignored)."""
        self._start()

    @_api()
    def nvmlShutdown(self) -> None:
        """Undo one ``nvmlInit``; NVML stays usable until every init is undone."""
        self._init_count -= 1

    @_api()
    def nvmlDeviceGetCount(self) -> int:
        """The number of physical GPUs (MIG instances are not counted)."""
        return len(self.gpus)

    @_api()
    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        """The handle of the GPU at NVML index ``index``."""
        if not isinstance(index, int) or not 0 <= index < len(self.gpus):
            raise NVMLError(CONSTANTS["NVML_ERROR_INVALID_ARGUMENT"])
        return self._handle(index)

    @_api()
    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> _Handle:
        """The handle of the GPU or MIG instance with exactly this UUID (no prefixes, like NVML)."""
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for i, gpu in enumerate(self.gpus):
            if gpu.uuid == text:
                return self._handle(i)
            if text in gpu.mig_uuids:
                return self._handle(i, list(gpu.mig_uuids).index(text))
        raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])

    @_api()
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: _Handle) -> _Handle:
        """The physical GPU that holds this MIG instance."""
        self._spec(handle)
        if handle.mig is None:
            raise NVMLError(CONSTANTS["NVML_ERROR_INVALID_ARGUMENT"])
        return self._handle(handle.gpu)

    @_api()
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _Handle:
        """The handle of the GPU's ``index``-th MIG instance."""
        if not 0 <= index < len(self._spec(handle, mig_ok=False).mig_uuids):
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])
        return self._handle(handle.gpu, index)

    @_api()
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        """Energy since the last driver reload, in integer mJ: the exact integral of the trace, rounded down."""
        if not self._spec(handle, mig_ok=False).has_counter:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        return math.floor(self._counter_j(handle.gpu) * 1000)

    @_api()
    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        """Board power now, in integer mW."""
        return round(self._power_w(handle) * 1000)

    @staticmethod
    def nvmlExceptionClass(code: int) -> type[NVMLError]:
        """The ``NVMLError`` subclass for ``code``."""
        if code not in NVMLError._valClassMapping:
            raise ValueError(f"nvmlErrorCode {code} is not valid")
        return NVMLError._valClassMapping[code]

    def _nvmlGetFunctionPointer(self, name: str) -> Callable[..., Any]:
        # Zeus tells NVIDIA's binding from the deprecated unofficial pynvml by this function's presence.
        function = getattr(self, name, None)
        if not name.startswith("nvml") or not callable(function):
            raise NVMLError(CONSTANTS["NVML_ERROR_FUNCTION_NOT_FOUND"])
        return function


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
_QUERIES: dict[str, tuple[str, Callable[..., Any]]] = {
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
        lambda nv, code: _MESSAGES.get(code, "Unknown Error"),
    ),
}


def _query(name: str, doc: str, answer: Callable[..., Any]) -> Callable[..., Any]:
    def query(self: FakeNvml, *args: Any) -> Any:
        if name.startswith("nvmlDevice"):
            self._spec(args[0])  # an invalid or foreign handle is INVALID_ARGUMENT, as in NVML
        return answer(self, *args)

    query.__name__ = query.__qualname__ = name
    query.__doc__ = doc
    return _api(needs_init=name != "nvmlErrorString")(query)


for _name, (_doc, _answer) in _QUERIES.items():
    setattr(FakeNvml, _name, _query(_name, _doc, _answer))

for _name, _value in {
    **CONSTANTS,
    **ERROR_CLASSES,
    "NVMLError": NVMLError,
    "c_nvmlMemory_t": c_nvmlMemory_t,
    "c_nvmlUtilization_t": c_nvmlUtilization_t,
    "c_nvmlProcessInfo_t": c_nvmlProcessInfo_t,
    "nvmlPciInfo_t": nvmlPciInfo_t,
}.items():
    setattr(FakeNvml, _name, _value)


def fake_pynvml(*args: Any, **kwargs: Any) -> types.ModuleType:
    """A module object to install as ``sys.modules["pynvml"]``, over a new :class:`FakeNvml`.

    Takes :class:`FakeNvml`'s arguments. The fake itself (for ``fail``, ``lose``, ``calls``) is the
    module's ``fake`` attribute.

    Example:
        >>> import sys
        >>> sys.modules["pynvml"] = fake_pynvml([FakeGpu(), FakeGpu()])  # doctest: +SKIP
    """
    nvml = FakeNvml(*args, **kwargs)
    module = types.ModuleType("pynvml", "A fake pynvml from training-energy-tracker (tracker.testing).")
    for name in dir(nvml):
        if name.startswith(("nvml", "NVML", "c_nvml", "_nvmlGetFunctionPointer")):
            setattr(module, name, getattr(nvml, name))
    module.fake = nvml  # type: ignore[attr-defined]
    return module
