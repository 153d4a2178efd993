"""Hardware access: the only package in the project that talks to hardware.

One module per source, each a small class satisfying :class:`Sensor`:

- ``nvml``: NVIDIA GPUs through ``pynvml`` (package ``nvidia-ml-py``); energy counter, else polled power.
- ``rapl``: Linux powercap sysfs (Intel and AMD packages, DRAM).
- ``cpu_estimate``: psutil utilisation x TDP, when RAPL is absent or unreadable.
- ``ram``: a documented RAM power model, when no RAPL DRAM zone is readable.

:func:`discover` returns the sensors this machine supports and, for each absent source, why.
Every module is imported lazily: ``import tracker`` does no I/O and initialises nothing.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tracker.errors import ConfigurationError

GPU, CPU, RAM = "gpu", "cpu", "ram"
KINDS = (GPU, CPU, RAM)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading of one sensor.

    Attributes:
        sensor: the sensor's unique name, e.g. ``"gpu:0"``, ``"cpu:package-0"``, ``"ram"``.
        kind: ``"gpu"``, ``"cpu"`` or ``"ram"``.
        time_s: when it was read, in seconds of the sensor's monotonic clock.
        energy_j: the cumulative energy counter in joules, raw (it may wrap or reset), or
            ``None`` for a sensor that only gives power.
        power_w: instantaneous power in watts, or ``None``. Beside a counter it is a cross-check.
        counter_range_j: the value in joules at which ``energy_j`` wraps back to zero;
            ``None`` when the counter never wraps, so that a decrease means a reset.
        energy_error_j: a bound on the error of ``energy_j`` at this instant, J: 0 for a hardware
            counter; for a counter the sensor builds from power (a driver's sample buffer, a trailing
            mean) what the power not yet seen could add or remove. It does not accumulate: the
            energy between two readings is off by at most the sum of their two bounds.
    """

    sensor: str
    kind: str
    time_s: float
    energy_j: float | None = None
    power_w: float | None = None
    counter_range_j: float | None = None
    energy_error_j: float = 0.0


@runtime_checkable
class Sensor(Protocol):
    """What every source satisfies; a Protocol, so fakes need not inherit.

    Attributes:
        name: unique sensor name, also the ``sensor`` of its readings.
        kind: ``"gpu"``, ``"cpu"`` or ``"ram"``.
        method: how its figure is obtained, written to the log beside it: ``energy_counter``,
            ``power_samples``, ``power_instant``, ``power_average`` or ``power_polling`` (NVML),
            ``rapl`` or ``rapl_dram`` (powercap), ``tdp_estimate`` (table
            TDP), ``tdp_user`` (the user's TDP), ``tdp_default`` (unknown CPU, per-thread default),
            ``ram_model`` or ``ram_user`` (RAM model, or the user's watts).
        info: what it measures, for ``run.json`` and ``devices.csv`` (model, UUID, TDP, ...).
    """

    name: str
    kind: str
    method: str
    info: Mapping[str, Any]

    def read(self) -> Reading:
        """Take one reading; raise a :class:`~tracker.errors.SensorError` on failure."""
        ...

    def close(self) -> None:
        """Release what the sensor holds (NVML, file handles); idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class Absent:
    """A source that is not measured here, and why.

    Attributes:
        source: ``"nvml"``, ``"rapl"``, ...
        kind: the kind it would have measured.
        reason: ``"library missing"``, ``"no driver"``, ``"no device"``, ``"permission denied"``,
            ``"not supported"`` or ``"driver error"``.
        detail: the underlying message.
        hint: what the user could do, if anything.
    """

    source: str
    kind: str
    reason: str
    detail: str = ""
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Discovery:
    """The sensors found on this machine and the sources that are absent."""

    sensors: list[Sensor] = field(default_factory=list)
    absent: list[Absent] = field(default_factory=list)

    def close(self) -> None:
        """Close every sensor found."""
        for sensor in self.sensors:
            sensor.close()


def is_positive_number(value: object) -> bool:
    """Whether ``value`` is a finite real number above 0 (a bool is not a number here)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def positive_watts(value: object, argument: str) -> float:
    """``value`` as a float if it is a finite positive number of watts.

    Raises:
        ConfigurationError: naming ``argument`` and the value given.
    """
    if not is_positive_number(value):
        raise ConfigurationError(
            f"{argument}={value!r} is not valid: give a power in watts as a positive number "
            f"(e.g. {argument}=10.0), or None to estimate it"
        )
    return float(value)


def discover(
    *,
    nvml: Any = None,
    visible_devices: str | None = None,
    gpu_devices: Sequence[int | str] | None = None,
    powercap_root: Path | str | None = None,
    cpu_tdp_w: float | None = None,
    ram_w: float | None = None,
    gpus: bool = True,
    cpu: bool = True,
    ram: bool = True,
    clock: Clock = time.monotonic,
) -> Discovery:
    """Find the sensors this machine supports.

    GPUs come from NVML; CPU from RAPL package zones, else the TDP estimate; RAM from RAPL
    DRAM zones, else the RAM model. Absent hardware is an empty list plus a reason, never an
    exception, except for configuration errors (a ``CUDA_VISIBLE_DEVICES`` entry that matches
    no GPU, a powercap root that does not exist when one was given explicitly).

    Args:
        nvml: the ``pynvml`` module to use (a fake in tests); imported lazily when ``None``.
        visible_devices: ``CUDA_VISIBLE_DEVICES`` as a string; read from the environment when ``None``.
        gpu_devices: measure only these GPUs: logical CUDA indices (as the process sees them, after
            ``CUDA_VISIBLE_DEVICES``) or UUIDs; ``None`` measures every visible GPU.
        powercap_root: the powercap sysfs directory; ``None`` is ``/sys/class/powercap`` and may be absent,
            an explicit root must exist.
        cpu_tdp_w: the CPU package power in watts to use instead of the table lookup.
        ram_w: the RAM power in watts to use instead of the RAM model.
        gpus: whether to look for GPUs.
        cpu: whether to measure the CPU (RAPL, else the estimate).
        ram: whether to measure RAM (RAPL DRAM, else the model).
        clock: monotonic clock in seconds, shared with the sampler.

    Raises:
        ConfigurationError: a ``CUDA_VISIBLE_DEVICES`` entry or an explicit powercap root is invalid.
    """
    from tracker.sensors import cpu_estimate, rapl
    from tracker.sensors import nvml as nvml_backend
    from tracker.sensors import ram as ram_backend

    found = Discovery()
    if visible_devices is None:
        visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        find = nvml_backend.find_gpus
        _found(found, "nvml", GPU, lambda: find(nvml=nvml, visible_devices=visible_devices, devices=gpu_devices,
                                                clock=clock))  # fmt: skip
    rapl_sensors: list[Sensor] = []
    if cpu or ram:
        find_rapl = rapl.find_rapl
        rapl_sensors = _found(Discovery(absent=found.absent), "rapl", CPU,
                              lambda: find_rapl(root=powercap_root, clock=clock))  # fmt: skip
    if cpu:
        package = [s for s in rapl_sensors if s.kind == CPU and cpu_tdp_w is None]
        found.sensors.extend(package or _one(found, "cpu_estimate", CPU, lambda: cpu_estimate.CpuEstimateSensor(
            tdp_w=cpu_tdp_w, clock=clock)))  # fmt: skip
    if ram:
        dram = [s for s in rapl_sensors if s.kind == RAM and ram_w is None]
        found.sensors.extend(dram or _one(found, "ram_model", RAM, lambda: ram_backend.RamModelSensor(
            power_w=ram_w, clock=clock)))  # fmt: skip
    return found


def _found(into: Discovery, source: str, kind: str, find: Callable[[], tuple[list, list]]) -> list[Sensor]:
    """Run one backend's ``find``; any exception but a ConfigurationError becomes an absent source with its reason."""
    try:
        sensors, absent = find()
    except ConfigurationError:
        raise
    except Exception as exc:  # a binding's or kernel's surprise must not stop the training from starting
        sensors, absent = [], [Absent(source, kind, "driver error", f"{type(exc).__name__}: {exc}")]
    into.sensors.extend(sensors)
    into.absent.extend(absent)
    return sensors


def _one(into: Discovery, source: str, kind: str, make: Callable[[], Sensor]) -> list[Sensor]:
    """``[make()]``, or ``[]`` with an absent source when it raises anything but a ConfigurationError."""
    return _found(Discovery(absent=into.absent), source, kind, lambda: ([make()], []))
