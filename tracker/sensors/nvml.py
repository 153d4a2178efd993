"""NVIDIA GPUs through NVML: the ``pynvml`` module of NVIDIA's ``nvidia-ml-py`` package.

:func:`find_gpus` returns one :class:`NvmlSensor` per GPU the process may use (which ones is
resolved in :mod:`tracker.sensors._cuda_visible`). Each reads the cumulative energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and newer) where the GPU has one, else polls
board power (``nvmlDeviceGetPowerUsage``, mW); readings are in J and W.
Every ``NVMLError`` is translated into the tracker's exceptions, chained, at one boundary
(:mod:`tracker.sensors.nvml_calls`)::

    NVMLError_NotSupported, _FunctionNotFound,
      _LibraryNotFound, _DriverNotLoaded        -> SensorUnavailable
    NVMLError_NoPermission                      -> SensorPermissionError
    NVMLError_GpuIsLost and every other code    -> SensorReadError
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tracker.errors import SensorError, SensorPermissionError, SensorUnavailable
from tracker.sensors import GPU, Absent, Reading, nvml_calls
from tracker.sensors._cuda_visible import Gpu, group_by_gpu, select_gpus, visible_gpus
from tracker.sensors.methods import ENERGY_COUNTER, POWER_POLLING
from tracker.sensors.nvml_calls import SOURCE, call, optional, text

log = logging.getLogger(__name__)

_INIT_REASONS = {SensorUnavailable: "no driver", SensorPermissionError: "permission denied"}
_DEVICE_REASONS = {SensorUnavailable: "not supported", SensorPermissionError: "permission denied"}


class NvmlSensor:
    """One NVIDIA GPU, read through NVML.

    ``method`` is ``"energy_counter"`` when ``nvmlDeviceGetTotalEnergyConsumption`` works at
    construction (Volta and newer), else ``"power_polling"``; a counter that stops being supported
    mid-run switches the sensor to polling. ``energy_j`` is the raw counter in J (mJ / 1000) since the
    last driver reload: 64-bit, it never wraps, so a decrease is a reset (``counter_range_j=None``).
    ``power_w`` is board power in W: a cross-check beside the counter (``None`` if that read fails),
    the measurement when polling, and a 1 s average on Ampere (except A100) and newer (MEASUREMENT.md
    1.1). MIG: NVML has no power per instance (1.7), so the whole parent GPU is measured, once.

    Args:
        handle: the physical GPU's NVML handle.
        nvml: the ``pynvml`` module, already initialised.
        index: the logical CUDA index (position in ``CUDA_VISIBLE_DEVICES``); the name is ``gpu:<index>``.
        clock: monotonic clock in seconds, for the readings' ``time_s``.
        mig_uuids: the MIG instances through which this GPU was selected.
        on_close: called once by :meth:`close` (releases the shared ``nvmlInit``).

    Attributes:
        info: ``index``, ``nvml_index``, ``uuid``, ``name``, ``mig``, ``mig_uuids``, ``scope``,
            ``power_limit_w`` (enforced limit in W, ``None`` if unsupported), ``driver_version``.

    Raises:
        SensorUnavailable: the GPU has neither an energy counter nor power readings.
        SensorReadError: the GPU could not be read (lost, driver error).
    """

    kind = GPU

    def __init__(
        self,
        handle: Any,
        *,
        nvml: Any,
        index: int,
        clock: Callable[[], float] = time.monotonic,
        mig_uuids: Sequence[str] = (),
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.name = f"gpu:{index}"
        self._nvml, self._handle, self._clock, self._on_close = nvml, handle, clock, on_close
        self._closed = False
        self._power_beside = True
        self.uuid = ""  # named in the errors of the call that reads it
        self.uuid = str(text(self._call("nvmlDeviceGetUUID")))
        has_counter = self._call("nvmlDeviceGetTotalEnergyConsumption", optional=True) is not None
        self.method = ENERGY_COUNTER if has_counter else POWER_POLLING
        if not has_counter:
            self._call("nvmlDeviceGetPowerUsage")  # neither counter nor power: nothing to measure
        self.info = self._describe(index, list(mig_uuids))

    def _call(self, function: str, optional: bool = False) -> Any:
        how = nvml_calls.optional if optional else nvml_calls.call
        return how(self._nvml, self.name, function, self._handle, path=self.uuid)

    def _describe(self, index: int, mig_uuids: list[str]) -> dict[str, Any]:
        mode = self._call("nvmlDeviceGetMigMode", optional=True)
        mig = bool(mig_uuids) or bool(mode and mode[0] == getattr(self._nvml, "NVML_DEVICE_MIG_ENABLE", 1))
        limit_mw = self._call("nvmlDeviceGetEnforcedPowerLimit", optional=True)
        return {
            "index": index,
            "nvml_index": self._call("nvmlDeviceGetIndex", optional=True),
            "uuid": self.uuid,
            "name": text(self._call("nvmlDeviceGetName")),
            "mig": mig,
            "mig_uuids": mig_uuids,
            "scope": "whole GPU, shared by MIG instances" if mig else "whole GPU",
            "power_limit_w": None if limit_mw is None else limit_mw / 1000,
            "driver_version": text(optional(self._nvml, self.name, "nvmlSystemGetDriverVersion")),
        }

    def read(self) -> Reading:
        """Read the energy counter (and power beside it), or the power alone when polling.

        Raises:
            SensorUnavailable: power is not supported (polling path).
            SensorPermissionError: NVML refused the read.
            SensorReadError: the GPU is lost, or another NVML error.
        """
        if self.method == ENERGY_COUNTER:
            try:
                energy_mj = self._call("nvmlDeviceGetTotalEnergyConsumption")
            except SensorUnavailable as e:
                log.warning("%s: energy counter no longer available (%s); polling power from now on", self.name, e)
                self.method = POWER_POLLING
            else:
                now = self._clock()
                return Reading(self.name, GPU, now, energy_j=energy_mj / 1000, power_w=self._power_beside_w())
        power_mw = self._call("nvmlDeviceGetPowerUsage")
        return Reading(self.name, GPU, self._clock(), power_w=power_mw / 1000)

    def _power_beside_w(self) -> float | None:
        # The counter is the measurement; power beside it is only a cross-check and must not fail the reading.
        if not self._power_beside:
            return None
        try:
            return self._call("nvmlDeviceGetPowerUsage") / 1000
        except SensorUnavailable:
            self._power_beside = False
        except SensorError as e:
            log.debug("%s: power beside the counter failed: %s", self.name, e)
        return None

    def __repr__(self) -> str:
        return f"NvmlSensor({self.name!r}, uuid={self.uuid!r}, method={self.method!r})"

    def close(self) -> None:
        """Release this sensor's share of ``nvmlInit``; NVML shuts down with the last sensor. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._on_close is not None:
                self._on_close()


class _Session:
    """One ``nvmlInit`` shared by the sensors of one :func:`find_gpus` call: ``nvmlShutdown`` after the last."""

    def __init__(self, nvml: Any) -> None:
        self._nvml, self._users, self._lock = nvml, 1, threading.Lock()  # find_gpus holds the first share

    def acquire(self) -> Callable[[], None]:
        with self._lock:
            self._users += 1
        return self.release

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            try:
                call(self._nvml, SOURCE, "nvmlShutdown")
            except SensorError as e:
                log.debug("nvmlShutdown failed: %s", e)


def find_gpus(
    *,
    nvml: Any = None,
    visible_devices: str | None,
    devices: Sequence[int | str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[NvmlSensor], list[Absent]]:
    """Open one sensor per GPU this process may use; say why there is none when there is none.

    Args:
        nvml: the ``pynvml`` module (a :class:`~tracker.testing.FakeNvml` in tests); imported when ``None``.
        visible_devices: ``CUDA_VISIBLE_DEVICES``: ``None`` (unset) is every GPU in NVML order, ``""`` none;
            else a comma list of NVML indices, ``GPU-`` UUIDs or unique prefixes of them, and ``MIG-`` UUIDs
            (which measure their parent GPU, once however many of its instances are listed).
        devices: keep only these logical indices or UUIDs (each DDP rank its own GPU); ``None`` keeps all.
        clock: monotonic clock in seconds, for the readings.

    Returns:
        The sensors (close each; NVML shuts down with the last) and the absent sources, with reasons
        ``library missing``, ``no driver``, ``permission denied``, ``driver error``, ``no device``, ``not supported``.

    Raises:
        ConfigurationError: an entry of ``visible_devices`` or ``devices`` matches no GPU, or several.
    """
    if visible_devices is not None and not visible_devices.strip():
        return [], [_absent("no device", "CUDA_VISIBLE_DEVICES is empty, which hides every GPU", "unset it")]
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError as e:
            return [], [_absent("library missing", str(e), "pip install nvidia-ml-py")]
    try:
        call(nvml, SOURCE, "nvmlInit")
    except SensorError as e:
        reason = _INIT_REASONS.get(type(e), "driver error")
        if reason == "no driver" and not nvidia_expected(visible_devices):
            # No driver and no sign of an NVIDIA GPU: a CPU-only machine, where that is normal, not a fault.
            return [], [_absent("no device", f"no NVIDIA GPU or driver on this machine ({e.args[0]})")]
        return [], [_absent(reason, e.args[0], e.hint)]
    session = _Session(nvml)
    try:
        return _open(nvml, session, visible_devices, devices, clock)
    finally:
        session.release()


def _open(nvml: Any, session: _Session, visible_devices: str | None, devices: Any, clock: Any) -> tuple[list, list]:
    try:
        gpus = _enumerate(nvml)
    except SensorError as e:
        return [], [_absent("driver error", e.args[0], e.hint)]
    chosen = select_gpus(nvml, visible_gpus(nvml, gpus, visible_devices), devices)
    if not chosen:
        why = f"no GPU selected by CUDA_VISIBLE_DEVICES={visible_devices!r} and devices={devices!r}"
        return [], [_absent("no device", why if gpus else "NVML found no GPU")]
    sensors, absent = [], []
    for gpu, migs in group_by_gpu(chosen):
        release = session.acquire()
        try:
            sensor = NvmlSensor(gpu.handle, nvml=nvml, index=gpu.index, clock=clock, mig_uuids=migs, on_close=release)
        except SensorError as e:
            release()
            absent.append(_absent(_DEVICE_REASONS.get(type(e), "driver error"), e.args[0], e.hint))
        else:
            sensors.append(sensor)
    return sensors, absent


# Where an NVIDIA GPU leaves traces even when NVML cannot be loaded: device node, kernel module,
# and WSL2's paravirtualised GPU (no /dev/nvidia* there).
NVIDIA_SIGNS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/sys/module/nvidia", "/dev/dxg")


def nvidia_expected(visible_devices: str | None, roots: tuple[str, ...] = NVIDIA_SIGNS) -> bool:
    """Whether this machine shows signs of an NVIDIA GPU: a device node, a kernel driver, or GPUs named by the user."""
    return bool(visible_devices and visible_devices.strip()) or any(os.path.exists(root) for root in roots)


def _absent(reason: str, detail: str, hint: str = "") -> Absent:
    return Absent(source=SOURCE, kind=GPU, reason=reason, detail=detail, hint=hint)


def _enumerate(nvml: Any) -> list[Gpu]:
    gpus = []
    for i in range(call(nvml, SOURCE, "nvmlDeviceGetCount")):
        handle = call(nvml, SOURCE, "nvmlDeviceGetHandleByIndex", i)
        gpus.append(Gpu(i, handle, str(text(call(nvml, SOURCE, "nvmlDeviceGetUUID", handle)))))
    return gpus
