"""A fake ``pynvml`` whose GPUs follow power traces, so the true energy is known.

Public through :mod:`tracker.testing`. :class:`FakeNvml` has the function names, constants and
``NVMLError`` classes of NVIDIA's ``pynvml`` (package ``nvidia-ml-py``) that the tracker,
codecarbon and carbontracker call; :func:`fake_pynvml` wraps one in a module object to install as
``sys.modules["pynvml"]``. Units are NVML's: energy in integer mJ, power and limits in integer mW.
Its constants, errors and structs are pynvml's module-level names; :class:`FakeNvml` carries them as
class attributes (through :data:`PynvmlNames`), as the module does.

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
from typing import Any, NamedTuple

from tracker.testing.traces import PowerTrace, steady

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


class c_nvmlMemory_t:
    """Device memory in bytes, as ``nvmlDeviceGetMemoryInfo`` returns it."""

    __slots__ = ("total", "free", "used")

    def __init__(self, total: int = 0, free: int = 0, used: int = 0) -> None:
        self.total, self.free, self.used = total, free, used


class c_nvmlUtilization_t:
    """Utilisation in percent over the last sample period."""

    __slots__ = ("gpu", "memory")

    def __init__(self, gpu: int = 0, memory: int = 0) -> None:
        self.gpu, self.memory = gpu, memory


class c_nvmlProcessInfo_t:
    """A process with a context on the GPU; memory in bytes."""

    __slots__ = ("pid", "usedGpuMemory", "gpuInstanceId", "computeInstanceId")

    def __init__(
        self, pid: int = 0, usedGpuMemory: int | None = 0, gpuInstanceId: int = 0xFFFFFFFF,
        computeInstanceId: int = 0xFFFFFFFF,
    ) -> None:  # fmt: skip
        self.pid, self.usedGpuMemory = pid, usedGpuMemory
        self.gpuInstanceId, self.computeInstanceId = gpuInstanceId, computeInstanceId


class nvmlPciInfo_t:
    """The GPU's PCI address."""

    __slots__ = ("busId", "domain", "bus", "device", "pciDeviceId", "pciSubSystemId")

    def __init__(
        self, busId: str = "", domain: int = 0, bus: int = 0, device: int = 0,
        pciDeviceId: int = 0x20B010DE, pciSubSystemId: int = 0x134F10DE,
    ) -> None:  # fmt: skip
        self.busId, self.domain, self.bus, self.device = busId, domain, bus, device
        self.pciDeviceId, self.pciSubSystemId = pciDeviceId, pciSubSystemId


class c_nvmlValue_t:
    """The union of NVML values; the fake fills the member its value type names (power: ``uiVal``, mW)."""

    __slots__ = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal")

    def __init__(
        self, dVal: float = 0.0, uiVal: int = 0, ulVal: int = 0, ullVal: int = 0, sllVal: int = 0, siVal: int = 0
    ) -> None:
        self.dVal, self.uiVal, self.ulVal = dVal, uiVal, ulVal
        self.ullVal, self.sllVal, self.siVal = ullVal, sllVal, siVal


class c_nvmlSample_t:
    """One sample of the driver's buffer: ``timeStamp`` is the CPU time in µs since the Unix epoch."""

    __slots__ = ("timeStamp", "sampleValue")

    def __init__(self, timeStamp: int = 0, sampleValue: c_nvmlValue_t | None = None) -> None:
        self.timeStamp = timeStamp
        self.sampleValue = c_nvmlValue_t() if sampleValue is None else sampleValue


class c_nvmlFieldValue_t:
    """One answer of ``nvmlDeviceGetFieldValues``: each carries its own ``nvmlReturn``.

    ``timestamp`` is the CPU time in µs since the Unix epoch; ``latencyUsec`` how stale the value is.
    """

    __slots__ = ("fieldId", "scopeId", "timestamp", "latencyUsec", "valueType", "nvmlReturn", "value")

    def __init__(
        self, fieldId: int = 0, scopeId: int = 0, timestamp: int = 0, latencyUsec: int = 0, valueType: int = 0,
        nvmlReturn: int = 0, value: c_nvmlValue_t | None = None,
    ) -> None:  # fmt: skip
        self.fieldId, self.scopeId, self.timestamp, self.latencyUsec = fieldId, scopeId, timestamp, latencyUsec
        self.valueType, self.nvmlReturn = valueType, nvmlReturn
        self.value = c_nvmlValue_t() if value is None else value


class FakeGpu(NamedTuple):
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
        power_update_s: the driver refreshes its power readings (``nvmlDeviceGetPowerUsage`` and the
            ``NVML_FI_DEV_POWER_*`` fields) every this many seconds, and a read returns the newest refresh:
            0.02 with ``power_window_s`` 0.01 is a Kepler/Maxwell/Pascal/Volta card, the GPUs without an
            energy counter (Yang et al. SC'24, docs/measurement.md §1.2; A100 and H100: 0.1 and 0.025). The
            refreshes follow ``sample_phase_s`` and ``sample_jitter_s``. 0: every read returns the trace at
            the moment of the call (a continuous reading, as no driver has).
        power_window_s: each refresh of the instantaneous reading is the mean power over this trailing
            window, s (a reading averaged over ``power_average_s`` keeps that window).
        sample_period_s: the driver's power sample buffer (``nvmlDeviceGetSamples`` with
            ``NVML_TOTAL_POWER_SAMPLES``) holds a sample every this many seconds; ``None``: NOT_SUPPORTED.
        sample_window_s: each buffered sample is the mean power over this trailing window, s (0: instantaneous).
        sample_buffer: how many samples the driver keeps; older ones are dropped.
        sample_phase_s: when, within a period, the driver takes its samples (trace time), s.
        sample_jitter_s: each sample is taken late by a fixed pseudo-random delay below this, s: 0 is a
            driver exactly periodic (a periodic load can then phase-lock with it), the period spreads
            each sample anywhere in its slot.
        counter_start_j: the energy counter's value at trace time 0, J (energy since the driver loaded).
        samples_newest_first: ``nvmlDeviceGetSamples`` returns the buffer newest sample first (NVML's
            documentation promises no order).
        min_poll_s: the driver refuses a power reading (``nvmlDeviceGetPowerUsage``, a power field) asked
            for within this many seconds of the last one it answered, with ``NVML_ERROR_NOT_SUPPORTED``.
    """

    uuid: str = ""
    name: str = "NVIDIA Fake A100"
    trace: PowerTrace = steady(100.0)  # immutable, so one is shared
    has_counter: bool = True
    mig_uuids: Sequence[str] = ()
    power_limit_w: float = 400.0
    memory_total_b: int = 40 * 2**30
    architecture: int = 7
    pids: Sequence[int] = ()
    power_average_s: float = 0.0
    power_fields: bool = False
    power_update_s: float = 0.02
    power_window_s: float = 0.01
    sample_period_s: float | None = None
    sample_window_s: float = 0.0
    sample_buffer: int = 120
    sample_phase_s: float = 0.0
    sample_jitter_s: float = 0.0
    counter_start_j: float = 0.0
    samples_newest_first: bool = False
    min_poll_s: float = 0.0


# pynvml's module-level names (constants, error classes, structs), the class attributes of the fake.
PynvmlNames = type(
    "PynvmlNames",
    (),
    {
        **CONSTANTS,
        **ERROR_CLASSES,
        "NVMLError": NVMLError,
        "c_nvmlMemory_t": c_nvmlMemory_t,
        "c_nvmlUtilization_t": c_nvmlUtilization_t,
        "c_nvmlProcessInfo_t": c_nvmlProcessInfo_t,
        "c_nvmlSample_t": c_nvmlSample_t,
        "c_nvmlValue_t": c_nvmlValue_t,
        "c_nvmlFieldValue_t": c_nvmlFieldValue_t,
        "nvmlPciInfo_t": nvmlPciInfo_t,
    },
)

_CLOCKS_MHZ = (1410, 1410, 1215, 1275)  # graphics, SM, memory, video: an A100's boost clocks
# Where the fake's CPU wall clock (Unix seconds, the time base of NVML's µs timestamps) stands
# relative to its monotonic clock: a fixed offset, so that timestamps look like the real ones.
WALL_OFFSET_S = 1_780_000_000.0
_AVERAGE_FIELD_S = 1.0  # NVML_FI_DEV_POWER_AVERAGE: "GPU power averaged over 1 sec interval"


class _Handle(NamedTuple):
    gpu: int
    mig: int | None = None


# The longest a scripted hang lasts if the test never releases it, s.
HANG_MAX_S = 30.0


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


class FakeNvml(PynvmlNames):
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
            g if g.uuid else g._replace(uuid=f"GPU-{i:08x}-fa6e-4c1d-8e5a-{i:012x}") for i, g in enumerate(specs)
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
        self._glitches: dict[int, tuple[float, int]] = {}
        self._wall_steps: list[tuple[float, float]] = []  # (trace time, wall-clock offset from then on, s)
        self._misstamped: dict[tuple[int, int], float] = {}  # (GPU, sample number) -> seconds off
        self._frozen: dict[int, float] = {}  # GPU -> trace time its power readings stopped being refreshed
        self._answered: dict[int, float] = {}  # GPU -> clock time of its last power reading answered
        self._hangs: dict[str, threading.Event] = {}

    # -- switches for tests ------------------------------------------------------------------

    def fail(self, function: str, code: int, times: int | None = None) -> None:
        """Raise ``NVMLError(code)`` from ``function`` on its next ``times`` calls, or always when ``None``."""
        if not function.startswith("nvml") or not callable(getattr(self, function, None)):
            raise ValueError(f"fail({function!r}): not an NVML function of this fake")
        with self._lock:
            self._failures[function] = (code, times)

    def hang(self, function: str, release: threading.Event) -> None:
        """``function``'s calls block, holding the driver's lock, until ``release`` is set (at most ``HANG_MAX_S``).

        A driver hung in the kernel (Xid recovery, a stuck PCIe read) holds its lock: every other NVML
        call, ``nvmlShutdown`` included, waits behind it. Set ``release`` to end the hang.
        """
        if not function.startswith("nvml") or not callable(getattr(self, function, None)):
            raise ValueError(f"hang({function!r}): not an NVML function of this fake")
        self._hangs[function] = release

    def clear_failures(self) -> None:
        """Forget every scripted failure."""
        with self._lock:
            self._failures.clear()

    def lose(self, index: int) -> None:
        """GPU ``index`` raises ``NVMLError_GpuIsLost`` from every call from now on (fell off the bus)."""
        with self._lock:
            self._lost.add(index)

    def glitch_counter(self, index: int, offset_j: float, reads: int = 1) -> None:
        """GPU ``index``'s next ``reads`` energy-counter reads are off by ``offset_j`` J (a firmware glitch)."""
        with self._lock:
            self._glitches[index] = (offset_j, reads)

    def step_wall_clock(self, seconds: float) -> None:
        """Step the CPU wall clock by ``seconds`` now (negative: back), as NTP or an operator does.

        Samples taken from now on are stamped with the stepped clock; those already in the buffer keep
        their stamps, as NVML's do (``timeStamp`` is the CPU time when the driver took the sample).
        """
        with self._lock:
            self._wall_steps.append((self.clock() - self.origin_s, self._wall_offset_s() + seconds))

    def misstamp_sample(self, index: int, at_s: float, off_s: float) -> None:
        """GPU ``index``'s first buffered sample at or after clock time ``at_s`` is stamped ``off_s`` seconds off."""
        with self._lock:
            gpu = self.gpus[index]
            if gpu.sample_period_s is None:
                raise ValueError(f"misstamp_sample: GPU {index} keeps no power samples")
            k = math.ceil((at_s - self.origin_s - gpu.sample_phase_s) / gpu.sample_period_s)
            self._misstamped[(index, k)] = off_s

    def freeze_power(self, index: int) -> None:
        """GPU ``index``'s driver stops refreshing its power readings now: every read returns the last refresh.

        ``nvmlDeviceGetPowerUsage`` and the ``NVML_FI_DEV_POWER_*`` fields keep their value, and each
        field's ``timestamp`` the time of that refresh (the energy counter and the sample buffer go on).
        """
        with self._lock:
            self._frozen[index] = self.clock() - self.origin_s

    def thaw_power(self, index: int) -> None:
        """GPU ``index``'s driver refreshes its power readings again (undoes :meth:`freeze_power`)."""
        with self._lock:
            self._frozen.pop(index, None)

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
        release = self._hangs.get(function)
        if release is not None:
            release.wait(HANG_MAX_S)  # under self._lock, as a hung driver holds its own
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
            # NVML reports power and energy for the whole GPU, not per MIG instance (docs/measurement.md §1.4);
            # what a MIG handle answers is unverified, so the fake takes the stricter NOT_SUPPORTED.
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        return self.gpus[handle.gpu]

    def _handle(self, gpu: int, mig: int | None = None) -> _Handle:
        if gpu in self._lost:
            raise NVMLError(CONSTANTS["NVML_ERROR_GPU_IS_LOST"])
        return _Handle(gpu, mig)

    def _counter_j(self, index: int) -> float:
        gpu = self.gpus[index]
        return gpu.counter_start_j + gpu.trace.energy_j(self.clock() - self.origin_s) - self._zero_j[index]

    def _power_w(self, handle: Any) -> float:
        return self._spec(handle, mig_ok=False).trace.power_w(self.clock() - self.origin_s)

    def _mean_power_w(self, handle: Any, t: float, window_s: float) -> float:
        """Mean power over the trailing ``window_s`` before trace time ``t`` (the power at ``t`` for 0), W."""
        trace = self._spec(handle, mig_ok=False).trace
        start = max(0.0, t - window_s)
        return trace.power_w(t) if t <= start else trace.between_j(start, t) / (t - start)

    def _stamp_us(self, t: float) -> int:
        """The NVML timestamp (µs of the wall clock) of trace time ``t``, as the wall clock stood then."""
        return round((self.origin_s + t + WALL_OFFSET_S + self._wall_offset_s(t)) * 1e6)

    def _wall_offset_s(self, t: float | None = None) -> float:
        """How far :meth:`step_wall_clock` has moved the wall clock by trace time ``t`` (now if ``None``), s."""
        return next((offset for when, offset in reversed(self._wall_steps) if t is None or when <= t), 0.0)

    def wall_clock(self) -> float:
        """The CPU wall clock that NVML's timestamps count, in Unix seconds: the fake clock plus a fixed offset.

        The real ``pynvml`` has no such function (its timestamps follow ``time.time()``); the NVML sensor
        uses this one when the module offers it, so that a fake clock and the timestamps agree.
        """
        return self.clock() + WALL_OFFSET_S + self._wall_offset_s()

    @staticmethod
    def _driver_time(gpu: FakeGpu, period_s: float, k: int) -> float:
        """When the driver takes its ``k``-th sample (trace time, s): on a grid, each late by a fixed amount."""
        # Knuth's multiplicative hash: a fixed, evenly spread delay per sample, the same on every call.
        late = gpu.sample_jitter_s * ((k * 2654435761) % 2**32) / 2**32
        return gpu.sample_phase_s + k * period_s + late

    def _samples(self, gpu: FakeGpu, handle: _Handle, last_seen_us: int) -> list[c_nvmlSample_t]:
        period, now = gpu.sample_period_s, self.clock() - self.origin_s
        newest = math.floor((now - gpu.sample_phase_s) / period)
        oldest = max(newest - gpu.sample_buffer + 1, math.ceil(-gpu.sample_phase_s / period))
        samples = []
        for k in range(oldest, newest + 1):
            t = self._driver_time(gpu, period, k)
            stamp = self._stamp_us(t) + round(self._misstamped.get((handle.gpu, k), 0.0) * 1e6)
            if stamp > last_seen_us and t <= now:
                milliwatts = round(self._mean_power_w(handle, t, gpu.sample_window_s) * 1000)
                samples.append(c_nvmlSample_t(stamp, c_nvmlValue_t(uiVal=milliwatts)))
        return samples[::-1] if gpu.samples_newest_first else samples

    def _held_power_w(self, handle: _Handle, average_s: float) -> float:
        """What a power reading returns now: the driver's newest refresh (see ``FakeGpu.power_update_s``), W."""
        return self._refresh(handle, average_s)[1]

    def _refuse_fast_polls(self, handle: _Handle) -> None:
        gpu, now = self._spec(handle, mig_ok=False), self.clock()
        if gpu.min_poll_s and now - self._answered.get(handle.gpu, -math.inf) < gpu.min_poll_s:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        self._answered[handle.gpu] = now

    def _refresh(self, handle: _Handle, average_s: float) -> tuple[float, float]:
        """The driver's newest refresh of a power reading: its trace time, s, and its value, W.

        ``average_s`` 0 is the instantaneous reading (the mean over ``power_window_s``), else a trailing
        mean. A GPU frozen by :meth:`freeze_power` keeps its last refresh before the freeze.
        """
        gpu = self._spec(handle, mig_ok=False)
        now = min(self.clock() - self.origin_s, self._frozen.get(handle.gpu, math.inf))
        window = average_s or gpu.power_window_s
        if not gpu.power_update_s:
            return now, self._mean_power_w(handle, now, average_s)
        k = math.floor((now - gpu.sample_phase_s) / gpu.power_update_s)
        while k > 0 and self._driver_time(gpu, gpu.power_update_s, k) > now:
            k -= 1  # a jittered refresh of this slot has not happened yet
        when = max(0.0, self._driver_time(gpu, gpu.power_update_s, k))
        return when, self._mean_power_w(handle, when, window)

    def _field(self, handle: _Handle, field_id: int, scope: int) -> c_nvmlFieldValue_t:
        gpu = self._spec(handle, mig_ok=False)
        windows = {
            CONSTANTS["NVML_FI_DEV_POWER_INSTANT"]: 0.0,
            CONSTANTS["NVML_FI_DEV_POWER_AVERAGE"]: _AVERAGE_FIELD_S,
        }
        answer = c_nvmlFieldValue_t(
            fieldId=field_id, scopeId=scope, timestamp=self._stamp_us(self.clock() - self.origin_s)
        )
        if not gpu.power_fields or field_id not in windows or scope != CONSTANTS["NVML_POWER_SCOPE_GPU"]:
            answer.nvmlReturn = CONSTANTS["NVML_ERROR_NOT_SUPPORTED"]
            return answer
        self._refuse_fast_polls(handle)
        when, watts = self._refresh(handle, windows[field_id])
        answer.timestamp = self._stamp_us(when)  # when the driver refreshed the value
        answer.valueType = CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_INT"]
        answer.value = c_nvmlValue_t(uiVal=round(watts * 1000))
        return answer

    # -- the NVML functions with logic -----------------------------------------------------------

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
        offset_j, reads = self._glitches.pop(handle.gpu, (0.0, 0))
        if reads > 1:
            self._glitches[handle.gpu] = (offset_j, reads - 1)
        return math.floor((self._counter_j(handle.gpu) + offset_j) * 1000)

    @_api()
    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        """Board power in integer mW, as of the driver's newest refresh.

        Instantaneous, or the mean over the GPU's ``power_average_s`` (Ampere and newer).
        """
        self._refuse_fast_polls(handle)
        return round(self._held_power_w(handle, self._spec(handle, mig_ok=False).power_average_s) * 1000)

    @_api()
    def nvmlDeviceGetSamples(self, handle: _Handle, sampling_type: int, last_seen_us: int) -> tuple[int, list]:
        """The driver's buffered samples newer than ``last_seen_us`` (0: all it keeps), as pynvml returns them.

        Returns:
            ``(NVML_VALUE_TYPE_UNSIGNED_INT, [c_nvmlSample_t, ...])``, oldest first, power in mW
            (``sampleValue.uiVal``), ``timeStamp`` in µs of the CPU wall clock.

        Raises:
            NVMLError_NotSupported: not ``NVML_TOTAL_POWER_SAMPLES``, or the GPU keeps no power samples.
            NVMLError_NotFound: no sample newer than ``last_seen_us`` (as NVML answers then).
        """
        gpu = self._spec(handle, mig_ok=False)
        if sampling_type != CONSTANTS["NVML_TOTAL_POWER_SAMPLES"] or gpu.sample_period_s is None:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        samples = self._samples(gpu, handle, last_seen_us)
        if not samples:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])
        return CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_INT"], samples

    @_api()
    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: Sequence[Any]) -> list[c_nvmlFieldValue_t]:
        """One ``c_nvmlFieldValue_t`` per id (an int, or a ``(fieldId, scopeId)`` pair), each with its ``nvmlReturn``.

        Only the power fields are modelled: ``NVML_FI_DEV_POWER_INSTANT`` (power now) and
        ``NVML_FI_DEV_POWER_AVERAGE`` (mean over the last 1 s), in mW, scope ``NVML_POWER_SCOPE_GPU``,
        on a GPU with ``power_fields``; any other answers NOT_SUPPORTED in its ``nvmlReturn``.
        """
        pairs = [tuple(f) if isinstance(f, (tuple, list)) else (f, 0) for f in field_ids]
        return [self._field(handle, field_id, scope) for field_id, scope in pairs]

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

    # -- the simple queries: units are NVML's (power in integer mW, memory in bytes, clocks in MHz) --

    def _limit_mw(self, handle: _Handle) -> int:
        return round(self._spec(handle, mig_ok=False).power_limit_w * 1000)

    def _busy_percent(self, handle: _Handle) -> int:
        return min(100, round(100 * self._power_w(handle) / self._spec(handle).power_limit_w))

    @_api()
    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        """The ``GPU-`` or ``MIG-`` UUID."""
        spec = self._spec(handle)
        return spec.uuid if handle.mig is None else spec.mig_uuids[handle.mig]

    @_api()
    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        """The product name."""
        return self._spec(handle).name + ("" if handle.mig is None else " MIG 1g.5gb")

    @_api()
    def nvmlDeviceIsMigDeviceHandle(self, handle: _Handle) -> bool:
        """Whether the handle is a MIG instance's."""
        self._spec(handle)
        return handle.mig is not None

    @_api()
    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        """``[current, pending]``: ``NVML_DEVICE_MIG_ENABLE`` (1) when the GPU has MIG instances."""
        return [int(bool(self._spec(handle, mig_ok=False).mig_uuids))] * 2

    @_api()
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        """How many MIG instances."""
        return len(self._spec(handle, mig_ok=False).mig_uuids)

    @_api()
    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        """The NVML index of a physical GPU."""
        self._spec(handle, mig_ok=False)
        return handle.gpu

    @_api()
    def nvmlDeviceGetMinorNumber(self, handle: _Handle) -> int:
        """The N of ``/dev/nvidiaN``."""
        self._spec(handle, mig_ok=False)
        return handle.gpu

    @_api()
    def nvmlDeviceGetArchitecture(self, handle: _Handle) -> int:
        """An ``NVML_DEVICE_ARCH_*`` value."""
        return self._spec(handle).architecture

    @_api()
    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> nvmlPciInfo_t:
        """The PCI address."""
        self._spec(handle, mig_ok=False)
        return nvmlPciInfo_t(busId=f"00000000:{handle.gpu + 1:02X}:00.0", bus=handle.gpu + 1)

    @_api()
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        """The power limit the driver enforces, in mW."""
        return self._limit_mw(handle)

    @_api()
    def nvmlDeviceGetPowerManagementLimit(self, handle: _Handle) -> int:
        """The power management limit, in mW."""
        return self._limit_mw(handle)

    @_api()
    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: _Handle) -> int:
        """The default power limit, in mW."""
        return self._limit_mw(handle)

    @_api()
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: _Handle) -> list[int]:
        """``[min, max]`` settable power limit, in mW."""
        return [self._limit_mw(handle) // 4, self._limit_mw(handle)]

    @_api()
    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> c_nvmlMemory_t:
        """Memory in bytes, 1 GiB used."""
        total = self._spec(handle).memory_total_b
        return c_nvmlMemory_t(total, total - 2**30, 2**30)

    @_api()
    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        """Temperature in degrees Celsius, rising with power."""
        self._spec(handle)
        return 30 + round(self._power_w(handle) / 10)

    @_api()
    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> c_nvmlUtilization_t:
        """Utilisation in percent: power over power limit."""
        self._spec(handle)
        busy = self._busy_percent(handle)
        return c_nvmlUtilization_t(busy, busy // 2)

    @_api()
    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[c_nvmlProcessInfo_t]:
        """The GPU's ``pids``, each using 1 GiB."""
        return [c_nvmlProcessInfo_t(pid, 2**30) for pid in self._spec(handle).pids]

    @_api()
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[c_nvmlProcessInfo_t]:
        """No graphics processes."""
        self._spec(handle)
        return []

    @_api()
    def nvmlDeviceGetClockInfo(self, handle: _Handle, kind: int) -> int:
        """Current clock in MHz (``NVML_CLOCK_*``)."""
        self._spec(handle)
        return _CLOCKS_MHZ[kind]

    @_api()
    def nvmlDeviceGetMaxClockInfo(self, handle: _Handle, kind: int) -> int:
        """Maximum clock in MHz (``NVML_CLOCK_*``)."""
        self._spec(handle)
        return _CLOCKS_MHZ[kind]

    @_api()
    def nvmlDeviceGetComputeMode(self, handle: _Handle) -> int:
        """``NVML_COMPUTEMODE_DEFAULT``."""
        self._spec(handle)
        return 0

    @_api()
    def nvmlDeviceGetPowerManagementMode(self, handle: _Handle) -> int:
        """``NVML_FEATURE_ENABLED``."""
        self._spec(handle)
        return 1

    @_api()
    def nvmlDeviceGetPersistenceMode(self, handle: _Handle) -> int:
        """``NVML_FEATURE_ENABLED``."""
        self._spec(handle)
        return 1

    @_api()
    def nvmlDeviceGetPerformanceState(self, handle: _Handle) -> int:
        """P-state 0."""
        self._spec(handle)
        return 0

    @_api()
    def nvmlSystemGetDriverVersion(self) -> str:
        """The driver version string."""
        return self.driver_version

    @_api()
    def nvmlSystemGetNVMLVersion(self) -> str:
        """The NVML version string."""
        return "12." + self.driver_version

    @_api()
    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """The CUDA driver version (12040 is 12.4)."""
        return 12040

    @_api(needs_init=False)
    def nvmlErrorString(self, code: int) -> str:
        """The message of an ``NVML_ERROR_*`` code."""
        return MESSAGES.get(code, "Unknown Error")


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
        if name.startswith(("nvml", "NVML", "c_nvml", "_nvmlGetFunctionPointer", "wall_clock")):
            setattr(module, name, getattr(nvml, name))
    module.fake = nvml  # type: ignore[attr-defined]
    return module
