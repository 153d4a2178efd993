"""A fake ``amdsmi`` (AMD's Python binding of the AMD SMI library) whose GPUs follow power traces.

Public through :mod:`tracker.testing`. :class:`FakeAmdSmi` has the function names, return shapes and
exception classes of ROCm's ``amdsmi`` package (``py-interface/amdsmi_interface.py`` and
``amdsmi_exception.py`` of ROCm/amdsmi) that the tracker calls; :func:`fake_amdsmi` wraps one in a
module object to install as ``sys.modules["amdsmi"]``. Units are the binding's: the energy
accumulator counts ``counter_resolution`` µJ each, power is in W, timestamps in ns.

Example:
    >>> from tracker.testing import FakeClock, steady
    >>> clock = FakeClock()
    >>> smi = FakeAmdSmi([FakeAmdGpu(trace=steady(500.0))], clock=clock)
    >>> smi.amdsmi_init()
    >>> (handle,) = smi.amdsmi_get_processor_handles()
    >>> _ = clock.advance(2.0)
    >>> count = smi.amdsmi_get_energy_count(handle)
    >>> round(count["energy_accumulator"] * count["counter_resolution"] / 1e6)
    1000
"""

from __future__ import annotations

import enum
import math
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tracker.testing.traces import PowerTrace, steady

# amdsmi_wrapper.AMDSMI_STATUS_* and the words amdsmi_exception.AmdSmiLibraryException gives each (amdsmi 7).
_STATUS = {
    "AMDSMI_STATUS_SUCCESS": (0, "Success"),
    "AMDSMI_STATUS_INVAL": (1, "Invalid parameters"),
    "AMDSMI_STATUS_NOT_SUPPORTED": (2, "Feature not supported"),
    "AMDSMI_STATUS_NOT_YET_IMPLEMENTED": (3, "Feature not yet implemented"),
    "AMDSMI_STATUS_FAIL_LOAD_MODULE": (4, "Fail to load lib"),
    "AMDSMI_STATUS_FAIL_LOAD_SYMBOL": (5, "Fail to load symbol"),
    "AMDSMI_STATUS_DRM_ERROR": (6, "Error when called libdrm"),
    "AMDSMI_STATUS_API_FAILED": (7, "API call failed"),
    "AMDSMI_STATUS_TIMEOUT": (8, "Timeout in API call"),
    "AMDSMI_STATUS_RETRY": (9, "Retry operation"),
    "AMDSMI_STATUS_NO_PERM": (10, "Permission Denied"),
    "AMDSMI_STATUS_INTERRUPT": (11, "Interrupt ocurred during execution"),
    "AMDSMI_STATUS_IO": (12, "I/O Error"),
    "AMDSMI_STATUS_INIT_ERROR": (18, "Initialization error"),
    "AMDSMI_STATUS_BUSY": (30, "Device busy"),
    "AMDSMI_STATUS_NOT_FOUND": (31, "Device Not found"),
    "AMDSMI_STATUS_NOT_INIT": (32, "Device not initialized"),
    "AMDSMI_STATUS_DRIVER_NOT_LOADED": (34, "Driver not loaded"),
    "AMDSMI_STATUS_NO_DATA": (40, "No data was found for given input"),
    "AMDSMI_STATUS_NO_DRV": (51, "No Energy and HSMP driver present"),
    "AMDSMI_STATUS_UNKNOWN_ERROR": (4294967295, "An unknown error occurred"),
}
STATUS = {name: code for name, (code, _) in _STATUS.items()}
_INFO = {code: f"{name} - {words}" for name, (code, words) in _STATUS.items()}


class AmdSmiException(Exception):
    """Base of the binding's exceptions."""


class AmdSmiLibraryException(AmdSmiException):
    """An error status of the library, as the binding raises it: ``err_code`` and ``err_info``."""

    def __init__(self, err_code: int) -> None:
        err_code = abs(err_code)
        super().__init__(err_code)
        self.err_code = err_code
        self.err_info = _INFO.get(err_code, _INFO[STATUS["AMDSMI_STATUS_UNKNOWN_ERROR"]])

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_code(self) -> int:
        """The ``AMDSMI_STATUS_*`` code."""
        return self.err_code


class AmdSmiRetryException(AmdSmiLibraryException):
    """The device was busy: try again."""

    def __init__(self) -> None:
        super().__init__(STATUS["AMDSMI_STATUS_RETRY"])


class AmdSmiTimeoutException(AmdSmiLibraryException):
    """The call timed out."""

    def __init__(self) -> None:
        super().__init__(STATUS["AMDSMI_STATUS_TIMEOUT"])


class AmdSmiParameterException(AmdSmiException):
    """An argument of the wrong type (a handle that is not one)."""


class AmdSmiInitFlags(enum.IntEnum):
    """``amdsmi_init`` flags, as the binding defines them."""

    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1
    INIT_AMD_GPUS = 2
    INIT_NON_AMD_CPUS = 4
    INIT_NON_AMD_GPUS = 8


class FakeAmdGpu(NamedTuple):
    """One fake AMD GPU.

    Args:
        uuid: what ``amdsmi_get_gpu_device_uuid`` returns; empty gives one by position.
        market_name: ``amdsmi_get_gpu_asic_info(...)["market_name"]``.
        trace: the power it draws (the whole socket); trace time 0 is the fake's construction.
        has_counter: whether ``amdsmi_get_energy_count`` works (else AMDSMI_STATUS_NOT_SUPPORTED).
        counter_resolution_uj: µJ per count of the energy accumulator.
        counter_bits: the accumulator wraps at ``2**counter_bits`` counts.
        average_window_s: ``average_socket_power`` is the mean over this trailing window, W.
        has_current_power: whether ``current_socket_power`` is given (else ``"N/A"``, as on MI200).
        power_limit_w: ``power_limit`` of ``amdsmi_get_power_info``, W.
        bdf: the PCI address.
    """

    uuid: str = ""
    market_name: str = "AMD Instinct MI250X"
    trace: PowerTrace = steady(300.0)  # immutable, so one is shared
    has_counter: bool = True
    counter_resolution_uj: float = 15.3
    counter_bits: int = 64
    average_window_s: float = 1.0
    has_current_power: bool = False
    power_limit_w: float = 560.0
    bdf: str = ""


class processor_handle(NamedTuple):  # noqa: N801 - the binding's amdsmi_wrapper.amdsmi_processor_handle, by role
    """An opaque handle of one GPU."""

    index: int


class FakeAmdSmi:
    """A stand-in for the ``amdsmi`` module: the same function names, return dicts and exceptions.

    Args:
        gpus: the GPUs, or how many default ones.
        clock: monotonic clock in seconds; trace time 0 is its reading at construction.
        library_missing: ``amdsmi_init`` raises AMDSMI_STATUS_DRIVER_NOT_LOADED (no amdgpu driver).

    Attributes:
        calls: how many times each function was called, by name.
    """

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiRetryException = AmdSmiRetryException
    AmdSmiTimeoutException = AmdSmiTimeoutException
    AmdSmiParameterException = AmdSmiParameterException
    AmdSmiInitFlags = AmdSmiInitFlags
    amdsmi_wrapper = types.SimpleNamespace(**STATUS)

    def __init__(
        self, gpus: Sequence[FakeAmdGpu] | int = 1, clock: Callable[[], float] = time.monotonic, library_missing=False
    ) -> None:
        specs = [FakeAmdGpu() for _ in range(gpus)] if isinstance(gpus, int) else list(gpus)
        self.gpus = [
            g._replace(uuid=g.uuid or f"{i:08x}-74a1-1000-80ff-ffffffffffff", bdf=g.bdf or f"0000:{0xC1 + i:02x}:00.0")
            for i, g in enumerate(specs)
        ]
        self.clock, self.origin_s, self.library_missing = clock, clock(), library_missing
        self.calls: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._initialised = 0
        self._lost: set[int] = set()

    # -- switches for tests -----------------------------------------------------------------------------------

    def lose(self, index: int) -> None:
        """GPU ``index`` disappears (reset, hot-unplug): every call on its handle raises AMDSMI_STATUS_NOT_FOUND."""
        with self._lock:
            self._lost.add(index)

    def true_energy_j(self, index: int, t0: float, t1: float) -> float:
        """The exact energy GPU ``index`` drew between two clock readings, in J."""
        return self.gpus[index].trace.between_j(t0 - self.origin_s, t1 - self.origin_s)

    # -- internals --------------------------------------------------------------------------------------------

    def _enter(self, name: str, handle: Any = None) -> FakeAmdGpu | None:
        self.calls[name] += 1
        if not self._initialised:
            raise AmdSmiLibraryException(STATUS["AMDSMI_STATUS_NOT_INIT"])
        if handle is None:
            return None
        if not isinstance(handle, processor_handle) or not 0 <= handle.index < len(self.gpus):
            raise AmdSmiParameterException(f"{handle!r} is not an amdsmi_processor_handle")
        if handle.index in self._lost:
            raise AmdSmiLibraryException(STATUS["AMDSMI_STATUS_NOT_FOUND"])
        return self.gpus[handle.index]

    def _now(self) -> float:
        return self.clock() - self.origin_s

    # -- the binding's functions ------------------------------------------------------------------------------

    def amdsmi_init(self, flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        """Initialise the library (reference-counted here, as the tracker may open it more than once)."""
        with self._lock:
            self.calls["amdsmi_init"] += 1
            if not isinstance(flag, AmdSmiInitFlags):
                raise AmdSmiParameterException(f"{flag!r} is not an AmdSmiInitFlags")
            if self.library_missing:
                raise AmdSmiLibraryException(STATUS["AMDSMI_STATUS_DRIVER_NOT_LOADED"])
            self._initialised += 1

    def amdsmi_shut_down(self) -> None:
        """Undo one ``amdsmi_init``."""
        with self._lock:
            self._enter("amdsmi_shut_down")
            self._initialised -= 1

    def amdsmi_get_processor_handles(self) -> list[processor_handle]:
        """One handle per GPU still present, in the library's order."""
        with self._lock:
            self._enter("amdsmi_get_processor_handles")
            return [processor_handle(i) for i in range(len(self.gpus)) if i not in self._lost]

    def amdsmi_get_gpu_device_uuid(self, handle: processor_handle) -> str:
        """The GPU's UUID, as a string."""
        with self._lock:
            return self._enter("amdsmi_get_gpu_device_uuid", handle).uuid

    def amdsmi_get_gpu_device_bdf(self, handle: processor_handle) -> str:
        """The PCI address, ``dddd:bb:dd.f``."""
        with self._lock:
            return self._enter("amdsmi_get_gpu_device_bdf", handle).bdf

    def amdsmi_get_gpu_asic_info(self, handle: processor_handle) -> dict[str, Any]:
        """The ASIC's description, the keys the binding returns."""
        with self._lock:
            gpu = self._enter("amdsmi_get_gpu_asic_info", handle)
            return {
                "market_name": gpu.market_name, "vendor_id": "0x1002", "vendor_name": "Advanced Micro Devices Inc.",
                "subvendor_id": "0x1002", "device_id": "0x740c", "rev_id": "0x01", "asic_serial": "N/A",
                "oam_id": handle.index, "num_compute_units": 220, "target_graphics_version": "gfx90a",
            }  # fmt: skip

    def amdsmi_get_energy_count(self, handle: processor_handle) -> dict[str, Any]:
        """The energy accumulator: ``energy_accumulator`` counts of ``counter_resolution`` µJ, ``timestamp`` ns.

        The keys of amdsmi 7 (``power``, the accumulator's old name before 6.4, is gone).

        Raises:
            AmdSmiLibraryException: AMDSMI_STATUS_NOT_SUPPORTED on a GPU without the counter.
        """
        with self._lock:
            gpu = self._enter("amdsmi_get_energy_count", handle)
            if not gpu.has_counter:
                raise AmdSmiLibraryException(STATUS["AMDSMI_STATUS_NOT_SUPPORTED"])
            counts = math.floor(gpu.trace.energy_j(self._now()) * 1e6 / gpu.counter_resolution_uj)
            counts %= 2**gpu.counter_bits
            stamp = round(self.clock() * 1e9)
            return {"energy_accumulator": counts, "counter_resolution": gpu.counter_resolution_uj, "timestamp": stamp}

    def amdsmi_get_power_info(self, handle: processor_handle) -> dict[str, Any]:
        """Socket power in W: ``average_socket_power`` (trailing mean), ``current_socket_power`` or ``"N/A"``."""
        with self._lock:
            gpu = self._enter("amdsmi_get_power_info", handle)
            now = self._now()
            start = max(0.0, now - gpu.average_window_s)
            mean = gpu.trace.power_w(now) if now <= start else gpu.trace.between_j(start, now) / (now - start)
            current = round(gpu.trace.power_w(now)) if gpu.has_current_power else "N/A"
            return {"current_socket_power": current, "average_socket_power": round(mean), "gfx_voltage": 800,
                    "soc_voltage": 900, "mem_voltage": 1200, "power_limit": round(gpu.power_limit_w)}  # fmt: skip


def fake_amdsmi(*args: Any, **kwargs: Any) -> types.ModuleType:
    """A module object to install as ``sys.modules["amdsmi"]``, over a new :class:`FakeAmdSmi` (its ``fake``)."""
    smi = FakeAmdSmi(*args, **kwargs)
    module = types.ModuleType("amdsmi", "A fake amdsmi from training-energy-tracker (tracker.testing).")
    for name in dir(smi):
        if name.startswith(("amdsmi_", "AmdSmi")):
            setattr(module, name, getattr(smi, name))
    module.fake = smi  # type: ignore[attr-defined]
    return module
