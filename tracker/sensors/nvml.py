"""NVIDIA GPUs through NVML: the ``pynvml`` module of NVIDIA's ``nvidia-ml-py`` package.

:func:`find_gpus` returns one :class:`NvmlSensor` per GPU the process may use (which ones is
resolved in :mod:`tracker.sensors._cuda_visible`). Each uses the best source its GPU has, in order:

==================  ==========================================================================
method              source
==================  ==========================================================================
``energy_counter``  ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and newer)
``power_samples``   the driver's power sample buffer, ``nvmlDeviceGetSamples`` with
                    ``NVML_TOTAL_POWER_SAMPLES``: every sample since the last one seen, integrated
                    at the driver's rate whatever the reading interval (Kepler and newer)
``power_instant``   ``nvmlDeviceGetFieldValues`` with ``NVML_FI_DEV_POWER_INSTANT``, polled
``power_average``   a 1 s trailing mean (``NVML_FI_DEV_POWER_AVERAGE``, or ``nvmlDeviceGetPowerUsage``
                    on Ampere except GA100 and newer), polled and integrated with its lag undone
``power_polling``   ``nvmlDeviceGetPowerUsage``, instantaneous on GA100 and older, polled
==================  ==========================================================================

Polled methods declare ``max_interval_s`` so that the session reads them in a fast lane of their own
whatever ``interval_s`` the user sets. A driver refreshes instantaneous power every few tens of ms
and a read returns its newest refresh, so ``power_polling`` and ``power_instant`` ask for half the
refresh period, inferred from their own reads on the threads that make them (``POLL_FLOOR_S`` until
it is known). Readings are in J and W.
No clock or value of the driver is trusted blindly: sample stamps (the CPU's wall clock) are read in
the monotonic time base, sorted, future ones dropped, and polled power replaces them while a step of
the wall clock makes them ambiguous (``CLOCK_STEP_S``); a buffer that overflowed leaves a hole that is
estimated and says so (``Reading.estimated_s``); a power field whose timestamp stands still is frozen
(``FROZEN_S``); a driver that refuses polls this fast is polled slower.
Every ``NVMLError`` is translated into the tracker's exceptions, chained, at one boundary
(:mod:`tracker.sensors.nvml_calls`)::

    NVMLError_NotSupported, _FunctionNotFound,
      _LibraryNotFound, _DriverNotLoaded        -> SensorUnavailable
    NVMLError_NoPermission                      -> SensorPermissionError
    NVMLError_GpuIsLost                         -> SensorGone (a SensorReadError)
    every other code                            -> SensorReadError
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from tracker.errors import SensorError, SensorGone, SensorPermissionError, SensorReadError, SensorUnavailable
from tracker.sensors import GPU, Absent, Reading, nvml_calls
from tracker.sensors._cuda_visible import Gpu, group_by_gpu, select_gpus, visible_gpus
from tracker.sensors._library import LibraryShares
from tracker.sensors._power_integrals import AverageCounter, SampleCounter, UpdatePeriod
from tracker.sensors.methods import ENERGY_COUNTER, POWER_AVERAGE, POWER_INSTANT, POWER_POLLING, POWER_SAMPLES
from tracker.sensors.nvml_calls import SOURCE, call, optional, text

log = logging.getLogger(__name__)

# The longest a method may wait between readings: polled instantaneous power loses ~ΔP·h/√12 per
# load change (see default_interval_s); a 1 s mean is smooth, 0.1 s follows it; the sample buffer
# only has to be read before it overflows (it holds seconds of samples).
MAX_INTERVAL_S = {POWER_POLLING: 0.05, POWER_INSTANT: 0.05, POWER_AVERAGE: 0.1, POWER_SAMPLES: 1.0}
# Instantaneous power is polled at half the driver's refresh period, inferred from the readings
# (UpdatePeriod), within [POLL_FLOOR_S, MAX_INTERVAL_S]. The floor: a driver refreshing every 20 ms
# (pre-Volta, the GPUs without a counter) is seen at most 10 ms late; polling faster gains under
# 12 % of the error (√(τ² + h²) against τ) for each halving's doubled cost (bench/README.md, micro).
# The band: the meter's 3σ counts the trapezoid's error between polls (ΔP·h/√12 per load step), not the
# driver's own lag (a step is seen up to τ + its window late), which reaches ~2 % of a 3 s epoch on the
# issue's traces (3σ alone falls short on a smooth sine or a lone step); it is left to the ±5 % sensor
# band, since a bound of its own needs τ, which a steady or noiseless load hides.
POLL_FLOOR_S = 0.01
# A polled reading is the driver's newest refresh, each the mean of the window before it: before Volta (the
# GPUs without an energy counter) a 10 ms window refreshed every 20 ms (Yang et al., docs/measurement.md §1.2).
# Read at a random moment it describes the power of (refresh + window)/2 = 15 ms earlier (Reading.lag_s); the
# meter books that stretch with the newest power held instead of leaving it to the next row. A reading that
# changes at nearly every poll shows no refresh (UpdatePeriod.continuous) and is taken as read.
POLLED_LAG_S = (0.02 + 0.01) / 2
# The driver stamps its power samples with the CPU's wall clock (µs), which NTP or an operator may step.
# They are read in the monotonic clock's time base, through the offset (wall - monotonic) of each read;
# a change of that offset beyond CLOCK_STEP_S between two reads is a step (ntpd slews an error below
# its step threshold of 128 ms, RFC 5905's STEPT, and steps one above it), and a sample stamped more
# than CLOCK_STEP_S after the read that fetched it is impossible (a wrong stamp: it is dropped).
CLOCK_STEP_S = 0.1
# A power field whose timestamp (when the driver refreshed it) stands still this long is frozen: the
# slowest driver refreshes every 100 ms (A100), so this is five refreshes missed. Until then the
# value is held as polled (at most FROZEN_S·ΔP of error), then the reads fail and the meter estimates.
FROZEN_S = 0.5
_HELD = (POWER_POLLING, POWER_INSTANT)
AVERAGE_WINDOW_S = 1.0  # NVML: "averaged over 1 sec interval" (NVML_FI_DEV_POWER_AVERAGE, GetPowerUsage on Ampere+)
_SOURCES = {
    ENERGY_COUNTER: "nvmlDeviceGetTotalEnergyConsumption",
    POWER_SAMPLES: "nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)",
    POWER_INSTANT: "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)",
    POWER_AVERAGE: "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_AVERAGE), 1 s trailing mean",
}
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")  # by NVML_VALUE_TYPE_*
_INIT_REASONS = {SensorUnavailable: "no driver", SensorPermissionError: "permission denied"}
_DEVICE_REASONS = {SensorUnavailable: "not supported", SensorPermissionError: "permission denied"}


class NvmlSensor:
    """One NVIDIA GPU, read through NVML.

    ``method`` is the best source the GPU has at construction (see the module docstring); a counter
    that stops being supported mid-run switches the sensor to ``power_polling``. ``energy_j`` is the
    raw counter in J (mJ / 1000) since the last driver reload: 64-bit, it never wraps, so a decrease
    is a reset (``counter_range_j=None``). ``power_samples`` and ``power_average`` report a counter
    built from power (:mod:`tracker.sensors._power_integrals`) with its ``energy_error_j``.
    ``power_w`` is board power in W: a cross-check beside the counter (``None`` if that read fails),
    the measurement when polling. MIG: NVML has no power per instance (docs/measurement.md §1.4), so the
    whole parent GPU is measured, once.

    Args:
        handle: the physical GPU's NVML handle.
        nvml: the ``pynvml`` module, already initialised.
        index: the logical CUDA index (position in ``CUDA_VISIBLE_DEVICES``); the name is ``gpu:<index>``.
        clock: monotonic clock in seconds, for the readings' ``time_s``.
        mig_uuids: the MIG instances through which this GPU was selected.
        on_close: called once by :meth:`close` (releases the shared ``nvmlInit``).
        method: use this method instead of the best one the GPU has (to compare methods on one GPU).

    Attributes:
        info: ``index``, ``nvml_index``, ``uuid``, ``name``, ``mig``, ``mig_uuids``, ``scope``,
            ``power_limit_w`` (enforced limit in W, ``None`` if unsupported), ``driver_version``,
            ``power_source`` (the NVML call behind the figure).
        max_interval_s: the longest the sampler may wait between readings, s; ``None`` for a counter.
            Polled instantaneous power starts at ``POLL_FLOOR_S`` and follows half the driver's refresh
            period as the background reads infer it (:class:`~tracker.sensors._power_integrals.UpdatePeriod`);
            ``info["power_update_s"]`` is that period (``None`` until known), ``info["poll_interval_s"]``
            the poll it calls for.

    Raises:
        SensorUnavailable: the GPU has neither an energy counter nor power readings (or not ``method``).
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
        method: str | None = None,
    ) -> None:
        self.name = f"gpu:{index}"
        self._nvml, self._handle, self._clock, self._on_close = nvml, handle, clock, on_close
        # NVML stamps samples with the CPU's wall clock in µs; a fake module brings the clock it stamps with.
        self._wall: Callable[[], float] = getattr(nvml, "wall_clock", time.time)
        self._closed = False
        self._handle_lost = False
        self._power_beside = True
        self._samples: SampleCounter | None = None
        self._offset_s: float | None = None  # wall - monotonic at the last read of the sample buffer, s
        self._distrusted = False  # the wall clock stepped and samples stamped in the old clock may remain
        self._future_us = 0  # the latest future-stamped sample dropped so far
        self._warned = False
        self._average: AverageCounter | None = None
        self.uuid = ""  # named in the errors of the call that reads it
        self.uuid = str(text(self._call("nvmlDeviceGetUUID")))
        self._last_held: Reading | None = None  # the newest polled reading (or the probe's)
        self.method, source = self._choose_method(method)
        self.max_interval_s = MAX_INTERVAL_S.get(self.method)
        self.info = {**self._describe(index, list(mig_uuids)), "power_source": source}
        self._refresh: UpdatePeriod | None = None
        self._field_stamp: tuple[int, float] = (0, 0.0)  # the power field's timestamp, µs, and when it was first seen
        if self.method in _HELD:
            self._follow_refresh()

    def _follow_refresh(self) -> None:
        """Poll at the driver's refresh rate: from the floor, as :class:`UpdatePeriod` infers it from the reads."""
        self._refresh = UpdatePeriod(POLL_FLOOR_S, MAX_INTERVAL_S[self.method])
        self.max_interval_s = self._refresh.interval_s
        self.info.update(power_update_s=None, poll_interval_s=self.max_interval_s)

    def _call(self, function: str, *args: Any, optional: bool = False) -> Any:
        how = nvml_calls.optional if optional else nvml_calls.call
        return how(self._nvml, self.name, function, self._handle, *args, path=self.uuid)

    def _choose_method(self, wanted: str | None) -> tuple[str, str]:
        """The best method this GPU supports (or ``wanted``, if it supports that) and the NVML source behind it.

        Raises:
            SensorUnavailable: no method (or not ``wanted``) works on this GPU.
        """
        probes = {
            ENERGY_COUNTER: self._probe_counter,
            POWER_SAMPLES: self._open_samples,
            POWER_INSTANT: self._probe_instant,
            POWER_AVERAGE: self._probe_average,
            POWER_POLLING: self._probe_usage,
        }
        for method in [wanted] if wanted else probes:
            source = probes[method]()
            if source:
                return method, source
        raise SensorUnavailable(f"{wanted} is not supported by {self.name}", sensor=self.name, path=self.uuid)

    def _probe_counter(self) -> str:
        found = self._call("nvmlDeviceGetTotalEnergyConsumption", optional=True) is not None
        return _SOURCES[ENERGY_COUNTER] if found else ""

    def _probe_instant(self) -> str:
        watts = self._field_w("NVML_FI_DEV_POWER_INSTANT")
        if watts is None:
            return ""
        self._last_held = Reading(self.name, GPU, self._clock(), power_w=watts)
        return _SOURCES[POWER_INSTANT]

    def _probe_average(self) -> str:
        if self._field_w("NVML_FI_DEV_POWER_AVERAGE") is not None:
            self._average = AverageCounter(AVERAGE_WINDOW_S)
            return _SOURCES[POWER_AVERAGE]
        if self._usage_is_averaged() and self._call("nvmlDeviceGetPowerUsage", optional=True) is not None:
            self._average = AverageCounter(AVERAGE_WINDOW_S)
            return "nvmlDeviceGetPowerUsage, 1 s trailing mean (Ampere except GA100, and newer)"
        return ""

    def _probe_usage(self) -> str:
        watts = self._call("nvmlDeviceGetPowerUsage") / 1000  # the last resort: its error says why nothing can be
        self._last_held = Reading(self.name, GPU, self._clock(), power_w=watts)  # measured
        if self._usage_is_averaged():
            return "nvmlDeviceGetPowerUsage, a 1 s trailing mean integrated as if instantaneous"
        return "nvmlDeviceGetPowerUsage, instantaneous (GA100 and older)"

    def _usage_is_averaged(self) -> bool:
        # NVML: "On Ampere (except GA100) or newer GPUs, the API returns power averaged over 1 sec interval".
        arch = self._call("nvmlDeviceGetArchitecture", optional=True)
        ampere = getattr(self._nvml, "NVML_DEVICE_ARCH_AMPERE", 7)
        name = str(text(self._call("nvmlDeviceGetName", optional=True)) or "")
        ga100 = any(model in name for model in ("A100", "A30", "A800"))
        return isinstance(arch, int) and arch >= ampere and not ga100

    def _open_samples(self) -> str:
        """The source if the driver keeps power samples (then counting starts from its newest one), else ``""``."""
        try:
            found = self._fetch_samples(0)
        except (SensorUnavailable, SensorPermissionError):
            return ""
        now = self._clock()
        self._offset_s = self._wall() - now
        self._samples = SampleCounter()
        self._samples.add(self._in_time_base(found, now))
        return _SOURCES[POWER_SAMPLES]

    def _fetch_samples(self, last_seen_us: int) -> list[tuple[float, float]]:
        """Samples newer than ``last_seen_us`` as ``(wall-clock s, W)``; none is NVML's NOT_FOUND, not an error."""
        try:
            kind, samples = self._call("nvmlDeviceGetSamples", self._nvml.NVML_TOTAL_POWER_SAMPLES, last_seen_us)
        except SensorReadError as e:
            if getattr(e.__cause__, "value", None) == getattr(self._nvml, "NVML_ERROR_NOT_FOUND", 6):
                return []
            raise
        member = _VALUE_MEMBERS[kind] if 0 <= kind < len(_VALUE_MEMBERS) else "uiVal"
        return [(s.timeStamp / 1e6, getattr(s.sampleValue, member) / 1000) for s in samples]

    def _in_time_base(self, samples: list[tuple[float, float]], now: float) -> list[tuple[float, float]]:
        """Samples moved to the monotonic clock (through this read's offset), sorted; future stamps dropped."""
        assert self._offset_s is not None
        moved = sorted((stamp - self._offset_s, watts) for stamp, watts in samples)
        future = [t for t, _ in moved if t > now + CLOCK_STEP_S]
        if future and round((future[-1] + self._offset_s) * 1e6) > self._future_us:
            self._future_us = round((future[-1] + self._offset_s) * 1e6)
            self._warn_once("a power sample is stamped %.3g s after it was read; such samples are dropped",
                            future[-1] - now)  # fmt: skip
        return moved[: len(moved) - len(future)]

    def _field_w(self, field: str) -> float | None:
        """A power field (``NVML_FI_DEV_POWER_*``, GPU scope) in W, or ``None`` where the driver lacks it."""
        found = self._field(field)
        return None if found is None else found[0]

    def _field(self, field: str) -> tuple[float, int] | None:
        """A power field in W and its timestamp (µs of the wall clock, when the driver refreshed it), or ``None``."""
        field_id = getattr(self._nvml, field, None)
        if field_id is None:
            return None
        scope = getattr(self._nvml, "NVML_POWER_SCOPE_GPU", 0)
        values = self._call("nvmlDeviceGetFieldValues", [(field_id, scope)], optional=True)
        if not values or values[0].nvmlReturn != getattr(self._nvml, "NVML_SUCCESS", 0):
            return None  # the call succeeds when any field does; each field carries its own return code
        member = _VALUE_MEMBERS[values[0].valueType] if 0 <= values[0].valueType < len(_VALUE_MEMBERS) else "uiVal"
        return getattr(values[0].value, member) / 1000, int(getattr(values[0], "timestamp", 0) or 0)

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
        """Read the energy counter (and power beside it), the sample buffer, or the power alone.

        Raises:
            SensorUnavailable: power is not supported (polling path).
            SensorPermissionError: NVML refused the read.
            SensorReadError: the GPU is lost, or another NVML error.
        """
        if self._handle_lost:
            self._handle = self._call_unchecked("nvmlDeviceGetHandleByUUID", self.uuid)
            self._handle_lost = False
        try:
            return self._read()
        except SensorGone:
            self._handle_lost = True  # re-probed later through its UUID, as after a GPU reset
            raise

    def _call_unchecked(self, function: str, *args: Any) -> Any:
        return nvml_calls.call(self._nvml, self.name, function, *args, path=self.uuid)

    def _read(self) -> Reading:
        if self.method == ENERGY_COUNTER:
            try:
                energy_mj = self._call("nvmlDeviceGetTotalEnergyConsumption")
            except SensorUnavailable as e:
                log.warning("%s: energy counter no longer available (%s); polling power from now on", self.name, e)
                self.method = POWER_POLLING
                self._follow_refresh()
            else:
                now = self._clock()
                return Reading(self.name, GPU, now, energy_j=energy_mj / 1000, power_w=self._power_beside_w())
        if self.method == POWER_SAMPLES:
            return self._read_samples()
        if self.method == POWER_AVERAGE:
            return self._read_average()
        try:
            return self._held(self._poll_w())
        except SensorUnavailable as e:  # NOT_SUPPORTED from a call that answered moments ago
            if not self._refused(e):
                raise
            assert self._last_held is not None
            return self._last_held  # not newer than the last one: nothing to count

    def _poll_w(self) -> float:
        """Power now, W, by the polled method; a power field that stopped being refreshed is an error."""
        if self.method != POWER_INSTANT:
            return self._call("nvmlDeviceGetPowerUsage") / 1000
        found = self._field("NVML_FI_DEV_POWER_INSTANT")
        if found is None:  # not answered (or refused) now, though it was at the probe
            raise SensorUnavailable(f"NVML_FI_DEV_POWER_INSTANT failed on {self.name}", sensor=self.name)
        watts, stamp_us = found
        now = self._clock()
        if stamp_us != self._field_stamp[0]:
            self._field_stamp = (stamp_us, now)
        elif stamp_us and now - self._field_stamp[1] > FROZEN_S:
            raise SensorReadError(
                f"NVML_FI_DEV_POWER_INSTANT on {self.name} has not been refreshed for "
                f"{now - self._field_stamp[1]:.3g} s (frozen at {watts:g} W); its power is estimated meanwhile",
                sensor=self.name, path=self.uuid,
            )  # fmt: skip
        return watts

    def _refused(self, error: SensorError) -> bool:
        """Whether a poll the driver says it does not support is one it refused as too fast (it answered moments ago).

        A driver may turn a poll down soon after the last one it answered (the sampler's jitter brings two
        polls up to two intervals apart, and as close as it likes): the poll is slowed down, never failed.
        """
        last, refresh = self._last_held, self._refresh
        if last is None or refresh is None or self._clock() - last.time_s > 2 * refresh.ceiling_s:
            return False
        self.max_interval_s = refresh.slow_down()
        self.info["poll_interval_s"] = self.max_interval_s
        log.debug("%s refused a poll %.3g s after the last (%s); polled every %.3g s or more from now on",
                  self.name, self._clock() - last.time_s, error, self.max_interval_s)  # fmt: skip
        return True

    def _held(self, watts: float) -> Reading:
        """A polled reading, which also tells the refresh period of the driver behind it (on the reading thread)."""
        now = self._clock()
        refresh = self._refresh
        if refresh is not None:
            self.max_interval_s = refresh.observe(now, watts)
            if refresh.period_s is not None:
                if self.info["power_update_s"] is None:  # debug: one line per GPU would break the 2-line budget
                    log.debug("energy-tracker: %s refreshes its power every %.3g s or less; polled every %.3g s",
                             self.name, refresh.period_s, self.max_interval_s)  # fmt: skip
                self.info["power_update_s"] = round(refresh.period_s, 4)
            self.info["poll_interval_s"] = self.max_interval_s
        lag_s = 0.0 if refresh is not None and refresh.continuous else POLLED_LAG_S
        self._last_held = Reading(self.name, GPU, now, power_w=watts, lag_s=lag_s)
        return self._last_held

    def _read_samples(self) -> Reading:
        counter = self._samples
        assert counter is not None
        now = self._clock()
        if self._stamps_trusted(self._wall() - now, now):
            assert self._offset_s is not None
            last_us = 0 if counter.last_s is None else round((counter.last_s + self._offset_s) * 1e6)
            gaps = counter.gaps
            counter.add(self._in_time_base(self._fetch_samples(last_us), now))
            if counter.gaps > gaps:
                self._warn_once("the driver's power sample buffer overflowed between two reads; the hole is "
                                "estimated from the power around it (the row says gap ... (estimated))")  # fmt: skip
        else:
            counter.bridge(now, self._polled_w())
            # Stamps are trusted again once none lies ahead of the wall clock: the next fetch starts at now.
            assert self._offset_s is not None
            self._distrusted = bool(self._fetch_samples(round((now + self._offset_s) * 1e6)))
        energy_j, error_j = counter.energy(now)
        return Reading(
            self.name, GPU, now, energy_j=energy_j, power_w=counter.last_w, energy_error_j=error_j,
            estimated_s=counter.estimated_s, estimated_var_j2=counter.estimated_var_j2,
        )  # fmt: skip

    def _stamps_trusted(self, offset_s: float, now: float) -> bool:
        """Whether the samples' stamps can be read now: not if the wall clock stepped since the last read, or lately.

        After a step, samples taken before it are still in the buffer stamped in the old clock: after a
        step back, some lie ahead of the new clock (and would be taken for samples still to come). Until
        the buffer holds none (they are evicted, or the clock passes them) power is polled instead.
        """
        previous, self._offset_s = self._offset_s, offset_s
        if previous is not None and abs(offset_s - previous) > CLOCK_STEP_S:
            self._distrusted = True
            self._warn_once("the wall clock stepped by %+.3g s; the driver stamps its power samples with it, so "
                            "power is polled until their stamps can be trusted again", offset_s - previous)  # fmt: skip
        return not self._distrusted

    def _polled_w(self) -> float | None:
        """Power now, W, read as the polling method does; ``None`` when that fails too."""
        try:
            return self._call("nvmlDeviceGetPowerUsage") / 1000
        except SensorError:
            return None

    def _warn_once(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning("energy-tracker: %s: " + message, self.name, *args)

    def _read_average(self) -> Reading:
        counter = self._average
        assert counter is not None
        field = self.info["power_source"].startswith("nvmlDeviceGetFieldValues")
        watts = self._field_w("NVML_FI_DEV_POWER_AVERAGE") if field else self._call("nvmlDeviceGetPowerUsage") / 1000
        if watts is None:
            raise SensorReadError(f"NVML_FI_DEV_POWER_AVERAGE failed on {self.name}", sensor=self.name)
        now = self._clock()
        energy_j, error_j = counter.energy(now, watts)
        return Reading(self.name, GPU, now, energy_j=energy_j, power_w=watts, energy_error_j=error_j)

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
        nvml, absent = _import_pynvml(visible_devices)
        if nvml is None:
            return [], absent
    try:
        call(nvml, SOURCE, "nvmlInit")
    except SensorError as e:
        reason = _INIT_REASONS.get(type(e), "driver error")
        if reason == "no driver" and not nvidia_expected(visible_devices):
            # No driver and no sign of an NVIDIA GPU: a CPU-only machine, where that is normal, not a fault.
            return [], [_absent("no device", f"no NVIDIA GPU or driver on this machine ({e.args[0]})")]
        return [], [_absent(reason, e.args[0], e.hint)]
    session = LibraryShares(lambda: call(nvml, SOURCE, "nvmlShutdown"), "nvmlShutdown")
    try:
        return _open(nvml, session, visible_devices, devices, clock)
    finally:
        session.release()


def _import_pynvml(visible_devices: str | None) -> tuple[Any, list[Absent]]:
    """``pynvml``, or why not: not installed, or (on Linux) no sign of an NVIDIA GPU at all.

    Importing ``pynvml`` builds some 300 classes, most of ``start()``'s cost on a machine without a
    GPU. On Linux NVML cannot reach a GPU without one of :data:`NVIDIA_SIGNS` (the device node, the
    kernel driver, WSL2's ``/dev/dxg``), so when none exists, and no ``pynvml`` is already loaded (a
    fake one included), the import is skipped and the outcome is the one ``nvmlInit`` would give.
    """
    if sys.platform.startswith("linux") and "pynvml" not in sys.modules and not nvidia_expected(visible_devices):
        if importlib.util.find_spec("pynvml") is not None:
            signs = ", ".join(NVIDIA_SIGNS)
            return None, [_absent("no device", f"no NVIDIA GPU or driver on this machine (none of {signs} exists)")]
    try:
        import pynvml
    except ImportError as e:
        return None, [_absent("library missing", str(e), "pip install nvidia-ml-py")]
    return pynvml, []


def _open(
    nvml: Any, session: LibraryShares, visible_devices: str | None, devices: Any, clock: Any
) -> tuple[list, list]:
    try:
        gpus = _enumerate(nvml)
    except SensorError as e:
        return [], [_absent("driver error", e.args[0], e.hint)]
    except Exception as e:  # whatever the binding raises, discovery reports it and training goes on
        return [], [_absent("driver error", f"{type(e).__name__}: {e}", "update nvidia-ml-py")]
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
        except Exception as e:  # a binding's own bug (a UnicodeDecodeError from a name) loses this GPU only
            release()
            absent.append(_absent("driver error", f"GPU {gpu.index}: {type(e).__name__}: {e}", "update nvidia-ml-py"))
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
