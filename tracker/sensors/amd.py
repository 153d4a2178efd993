"""AMD GPUs (Instinct MI100 to MI300X, Radeon) through ``amdsmi``, AMD's Python binding of the AMD SMI library.

``amdsmi`` ships with ROCm (``/opt/rocm/share/amd_smi``; extra ``amd``) and is imported only on a machine
that shows signs of an AMD GPU (``/dev/kfd``, the ``amdgpu`` module) or when a module is given. Each GPU
uses the best source it has:

==================  ===========================================================================
method              source
==================  ===========================================================================
``energy_counter``  ``amdsmi_get_energy_count``: ``energy_accumulator`` × ``counter_resolution`` µJ
                    (the key was ``power`` before amdsmi 6.2.1)
``power_average``   ``amdsmi_get_power_info``'s ``average_socket_power`` (W), a trailing mean
                    integrated with its lag undone (:class:`~tracker.sensors._power_integrals.AverageCounter`;
                    its 1 s window is an assumption [UNVERIFIED]); or ``current_socket_power`` where
                    the GPU gives it (MI300), polled as ``power_polling``
==================  ===========================================================================

The accumulator is a ``uint64`` in the binding. Whether some GPU's counter is narrower is not
documented, so a decrease is read as a 32-bit wrap when the power that implies is plausible (below
twice the power cap), else as a reset (a driver reload), which the meter flags.

Devices are chosen as HIP and ROCm choose them: ``ROCR_VISIBLE_DEVICES`` filters the GPUs (indices in
amdsmi's order, or UUIDs), then ``HIP_VISIBLE_DEVICES`` filters what is left (indices into it, or
UUIDs); a logical index is a position in the result, as ``torch.cuda`` numbers ROCm devices. That
amdsmi's order is ROCr's is assumed, not documented [UNVERIFIED]: give UUIDs where it matters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tracker.errors import ConfigurationError, SensorError, SensorPermissionError, SensorReadError, SensorUnavailable
from tracker.sensors import GPU, Absent, Reading
from tracker.sensors._library import LibraryShares
from tracker.sensors._power_integrals import AverageCounter
from tracker.sensors.methods import ENERGY_COUNTER, POWER_AVERAGE, POWER_POLLING

log = logging.getLogger(__name__)

MAX_INTERVAL_S = {POWER_AVERAGE: 0.1, POWER_POLLING: 0.05}
AVERAGE_WINDOW_S = 1.0
_SOURCE = "amdsmi"
_UNAVAILABLE = ("NOT_SUPPORTED", "NOT_YET_IMPLEMENTED", "FAIL_LOAD_MODULE", "FAIL_LOAD_SYMBOL", "DRIVER_NOT_LOADED",
                "NO_DRV")  # fmt: skip
# Where an AMD GPU leaves traces: the ROCm compute device node and the kernel driver.
AMD_SIGNS = ("/dev/kfd", "/sys/module/amdgpu")


def _code(smi: Any, name: str) -> int | None:
    return getattr(getattr(smi, "amdsmi_wrapper", None), f"AMDSMI_STATUS_{name}", None)


@contextlib.contextmanager
def amdsmi_errors(smi: Any, sensor: str, function: str, path: str = "") -> Iterator[None]:
    """Translate the binding's exceptions: unsupported -> SensorUnavailable, NO_PERM -> permission, else read error."""
    try:
        yield
    except smi.AmdSmiException as e:
        code = getattr(e, "err_code", None)
        kind = SensorReadError
        if code is not None and code in {_code(smi, name) for name in _UNAVAILABLE}:
            kind = SensorUnavailable
        elif code is not None and code == _code(smi, "NO_PERM"):
            kind = SensorPermissionError
        raise kind(f"{function} failed on {sensor}: {e}", sensor=sensor, path=path) from e


def _call(smi: Any, sensor: str, function: str, *args: Any, path: str = "") -> Any:
    method = getattr(smi, function, None)
    if method is None:
        raise SensorUnavailable(f"{function} is missing from this amdsmi", sensor=sensor, hint="update ROCm")
    with amdsmi_errors(smi, sensor, function, path):
        return method(*args)


def _watts(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class AmdSmiSensor:
    """One AMD GPU, read through ``amdsmi``: the same methods, bands and health as the NVML sensor.

    Args:
        handle: the GPU's processor handle.
        smi: the ``amdsmi`` module, initialised.
        index: the logical index (after ``ROCR_VISIBLE_DEVICES`` and ``HIP_VISIBLE_DEVICES``); the name
            is ``gpu:<index>``.
        amdsmi_index: the position among amdsmi's handles.
        clock: monotonic clock in seconds.
        on_close: called once by :meth:`close` (releases the shared ``amdsmi_init``).

    Attributes:
        info: ``index``, ``amdsmi_index``, ``uuid``, ``name`` (market name), ``bdf``, ``power_limit_w``,
            ``power_source``, ``counter_resolution_uj``.
        max_interval_s: the longest the sampler may wait between readings, s; ``None`` for the counter.

    Raises:
        SensorUnavailable: the GPU gives neither energy nor power.
        SensorReadError: the GPU could not be read.
    """

    kind = GPU

    def __init__(
        self,
        handle: Any,
        *,
        smi: Any,
        index: int,
        amdsmi_index: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.name = f"gpu:{index}"
        self._smi, self._handle, self._clock, self._on_close = smi, handle, clock, on_close
        self._closed = False
        self._average: AverageCounter | None = None
        self._offset_j = 0.0
        self._last_raw: tuple[float, float] | None = None  # (time s, raw counter J)
        self.wraps = 0
        self.uuid = ""
        self.uuid = str(self._call("amdsmi_get_gpu_device_uuid"))
        power = self._call("amdsmi_get_power_info")
        self._limit_w = _watts(power.get("power_limit"))
        self.method, source, resolution = self._choose(power)
        self.max_interval_s = MAX_INTERVAL_S.get(self.method)
        self.info = {
            "index": index, "amdsmi_index": amdsmi_index, "uuid": self.uuid,
            "name": str(self._optional("amdsmi_get_gpu_asic_info", {}).get("market_name", "AMD GPU")),
            "bdf": self._optional("amdsmi_get_gpu_device_bdf", ""), "power_limit_w": self._limit_w,
            "power_source": source, "counter_resolution_uj": resolution, "scope": "whole GPU (socket power)",
        }  # fmt: skip

    def _call(self, function: str) -> Any:
        return _call(self._smi, self.name, function, self._handle, path=self.uuid)

    def _optional(self, function: str, default: Any) -> Any:
        try:
            return self._call(function)
        except SensorError:
            return default

    def _choose(self, power: dict[str, Any]) -> tuple[str, str, float | None]:
        try:
            count = self._call("amdsmi_get_energy_count")
        except (SensorUnavailable, SensorPermissionError):
            count = None
        if count is not None:
            return ENERGY_COUNTER, "amdsmi_get_energy_count", float(count["counter_resolution"])
        if _watts(power.get("current_socket_power")) is not None:
            return POWER_POLLING, "amdsmi_get_power_info: current_socket_power", None
        if _watts(power.get("average_socket_power")) is not None:
            self._average = AverageCounter(AVERAGE_WINDOW_S)
            return POWER_AVERAGE, "amdsmi_get_power_info: average_socket_power (1 s trailing mean, assumed)", None
        raise SensorUnavailable(f"{self.name} gives neither energy nor power", sensor=self.name, path=self.uuid)

    def read(self) -> Reading:
        """Read the energy accumulator, or the socket power.

        Raises:
            SensorUnavailable: the source stopped being supported.
            SensorPermissionError: the library refused the read.
            SensorReadError: the GPU disappeared, or another library error.
        """
        if self.method == ENERGY_COUNTER:
            count = self._call("amdsmi_get_energy_count")
            now = self._clock()
            raw = count.get("energy_accumulator", count.get("power", 0)) * count["counter_resolution"] / 1e6
            return Reading(self.name, GPU, now, energy_j=self._unwrapped(now, raw, count["counter_resolution"]))
        power = self._call("amdsmi_get_power_info")
        now = self._clock()
        if self.method == POWER_POLLING:
            return Reading(self.name, GPU, now, power_w=self._field(power, "current_socket_power"))
        watts = self._field(power, "average_socket_power")
        assert self._average is not None
        energy_j, error_j = self._average.energy(now, watts)
        return Reading(self.name, GPU, now, energy_j=energy_j, power_w=watts, energy_error_j=error_j)

    def _field(self, power: dict[str, Any], key: str) -> float:
        watts = _watts(power.get(key))
        if watts is None:
            raise SensorReadError(f"{key} is {power.get(key)!r} on {self.name}", sensor=self.name, path=self.uuid)
        return watts

    def _unwrapped(self, now: float, raw_j: float, resolution_uj: float) -> float:
        """The counter in J with 32-bit wraps undone where the power they imply is plausible (see the module)."""
        if self._last_raw is not None and raw_j < self._last_raw[1]:
            range_j = 2**32 * resolution_uj / 1e6
            wrapped_j = raw_j + range_j - self._last_raw[1]
            most_w = 2 * (self._limit_w or 1500.0)
            if wrapped_j <= most_w * max(now - self._last_raw[0], 1e-3):
                self._offset_j += range_j
                self.wraps += 1
            # else: a reset; the reported counter goes down and the meter counts it as one
        self._last_raw = (now, raw_j)
        return self._offset_j + raw_j

    def __repr__(self) -> str:
        return f"AmdSmiSensor({self.name!r}, uuid={self.uuid!r}, method={self.method!r})"

    def close(self) -> None:
        """Release this sensor's share of ``amdsmi_init``; the library shuts down with the last. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._on_close is not None:
                self._on_close()


def amd_expected(roots: Sequence[str] = AMD_SIGNS) -> bool:
    """Whether this machine shows signs of an AMD GPU (the ROCm device node or the amdgpu driver)."""
    return any(os.path.exists(root) for root in roots)


def find_amd_gpus(
    *,
    smi: Any = None,
    rocr_visible: str | None = None,
    hip_visible: str | None = None,
    devices: Sequence[int | str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[AmdSmiSensor], list[Absent]]:
    """Open one sensor per AMD GPU this process may use; say why there is none when one was to be expected.

    Args:
        smi: the ``amdsmi`` module (a :class:`~tracker.testing.FakeAmdSmi` in tests); imported when ``None``,
            only on a machine with signs of an AMD GPU or when it is imported already.
        rocr_visible: ``ROCR_VISIBLE_DEVICES`` (``None``: unset).
        hip_visible: ``HIP_VISIBLE_DEVICES`` (``None``: unset), applied after it.
        devices: keep only these logical indices or UUIDs (each DDP rank its own GPU).
        clock: monotonic clock in seconds.

    Raises:
        ConfigurationError: an entry of the variables or of ``devices`` matches no GPU, or several.
    """
    if smi is None:
        if "amdsmi" not in sys.modules and not amd_expected():
            return [], []  # no sign of an AMD GPU: nothing to report, as on most machines
        try:
            import amdsmi as smi
        except Exception as e:  # noqa: BLE001 - the binding raises OSError as well when libamd_smi.so is missing
            return [], [_absent("library missing", str(e), "pip install training-energy-tracker[amd] (ROCm's amdsmi)")]
    try:
        _call(smi, _SOURCE, "amdsmi_init", smi.AmdSmiInitFlags.INIT_AMD_GPUS)
    except SensorError as e:
        return [], [_absent("no driver" if isinstance(e, SensorUnavailable) else "driver error", e.args[0])]
    session = LibraryShares(lambda: _call(smi, _SOURCE, "amdsmi_shut_down"), "amdsmi_shut_down")
    try:
        return _open(smi, session, rocr_visible, hip_visible, devices, clock)
    finally:
        session.release()


def _open(smi: Any, session: LibraryShares, rocr: Any, hip: Any, devices: Any, clock: Any) -> tuple[list, list]:
    try:
        handles = _call(smi, _SOURCE, "amdsmi_get_processor_handles")
        uuids = [str(_call(smi, _SOURCE, "amdsmi_get_gpu_device_uuid", h)) for h in handles]
    except SensorError as e:
        return [], [_absent("driver error", e.args[0])]
    gpus = list(enumerate(zip(handles, uuids, strict=True)))  # (amdsmi index, (handle, uuid))
    gpus = _filter(gpus, rocr, "ROCR_VISIBLE_DEVICES")
    gpus = _filter(gpus, hip, "HIP_VISIBLE_DEVICES")
    chosen = [(logical, *gpu) for logical, gpu in enumerate(gpus)]
    if devices is not None:
        chosen = [c for c in chosen if _wanted(c[0], c[2][1], devices)]
    if not chosen:
        return [], [_absent("no device", "amdsmi found no GPU selected by the visible-device variables and devices")]
    sensors, absent = [], []
    for logical, amd_index, (handle, _) in chosen:
        release = session.acquire()
        try:
            sensors.append(AmdSmiSensor(handle, smi=smi, index=logical, amdsmi_index=amd_index, clock=clock,
                                        on_close=release))  # fmt: skip
        except SensorError as e:
            release()
            absent.append(_absent("not supported" if isinstance(e, SensorUnavailable) else "driver error", e.args[0]))
    return sensors, absent


def _filter(gpus: list, variable: str | None, name: str) -> list:
    """The GPUs a visible-devices variable keeps, in its order; indices count within ``gpus``."""
    if variable is None:
        return gpus
    kept = []
    for entry in (e.strip() for e in variable.split(",")):
        if not entry:
            continue
        kept.append(gpus[_position(entry, [uuid for _, (_, uuid) in gpus], name)])
    return kept


def _position(entry: str, uuids: list[str], name: str) -> int:
    if entry.isdigit():
        if int(entry) < len(uuids):
            return int(entry)
        raise ConfigurationError(f"{name}: GPU {entry} does not exist; this machine's AMD GPUs are 0..{len(uuids) - 1}")
    wanted = entry.lower().removeprefix("gpu-")
    matches = [i for i, uuid in enumerate(uuids) if uuid.lower().removeprefix("gpu-").startswith(wanted)]
    if len(matches) != 1:
        how = "matches no GPU" if not matches else "matches several GPUs"
        raise ConfigurationError(f"{name}: {entry!r} {how}; give an index or a UUID among {uuids}")
    return matches[0]


def _wanted(logical: int, uuid: str, devices: Sequence[int | str]) -> bool:
    return any(d == logical if isinstance(d, int) else uuid.lower().startswith(str(d).lower()) for d in devices)


def _absent(reason: str, detail: str, hint: str = "") -> Absent:
    return Absent(source=_SOURCE, kind=GPU, reason=reason, detail=detail, hint=hint)
