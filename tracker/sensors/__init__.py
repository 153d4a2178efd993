"""Hardware access: the only package in the project that talks to hardware.

One module per source, each a small class satisfying :class:`Sensor`:

- ``nvml``: NVIDIA GPUs through ``pynvml`` (package ``nvidia-ml-py``); energy counter, else polled power.
- ``rapl``: Linux powercap sysfs (Intel and AMD packages, DRAM).
- ``cpu_estimate``: psutil utilisation x TDP, when RAPL is absent or unreadable.
- ``ram``: a documented RAM power model, when no RAPL DRAM zone is readable.
- ``hwmon``: the node's own meter, the ACPI power meter through hwmon (kind ``node``): read beside the
  components, never added to them.

:func:`tracker.sensors.discovery.discover` returns the sensors this machine supports and, for each
absent source, why; :mod:`tracker.sensors.methods` names the ways a figure is obtained.
Every module is imported lazily: ``import tracker`` does no I/O and initialises nothing.
"""

import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, NamedTuple, Protocol, runtime_checkable

from tracker.errors import ConfigurationError

GPU, CPU, RAM, NODE = "gpu", "cpu", "ram", "node"
# The components whose energy makes a row's ``energy_kwh``; the node's own meter (``node``) measures the
# whole machine, the components included, so it is shown beside them and never added.
COMPONENTS = (GPU, CPU, RAM)
KINDS = (*COMPONENTS, NODE)

Clock = Callable[[], float]


class Reading(NamedTuple):
    """One reading of one sensor.

    Attributes:
        sensor: the sensor's unique name, e.g. ``"gpu:0"``, ``"cpu:package-0"``, ``"ram"``.
        kind: ``"gpu"``, ``"cpu"``, ``"ram"`` or ``"node"``.
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
        estimated_s: seconds of ``energy_j`` the sensor estimated rather than measured, since it opened
            (a hole in a driver's sample buffer, a stretch whose timestamps could not be trusted); 0 for
            a hardware counter. Cumulative, like ``energy_j``: the meter books the difference as a gap.
        estimated_var_j2: the variance of those estimates, J², cumulative; its difference widens the band.
        lag_s: how long before ``time_s`` the moment lies that ``power_w`` describes, on average, s: 0 for a
            power read as it is; a driver's reading that is refreshed every ``τ`` and averages the ``w`` before
            each refresh describes, read at a random moment, the power of ``(τ + w)/2`` earlier.
    """

    sensor: str
    kind: str
    time_s: float
    energy_j: float | None = None
    power_w: float | None = None
    counter_range_j: float | None = None
    energy_error_j: float = 0.0
    estimated_s: float = 0.0
    estimated_var_j2: float = 0.0
    lag_s: float = 0.0


@runtime_checkable
class Sensor(Protocol):
    """What every source satisfies; a Protocol, so fakes need not inherit.

    Attributes:
        name: unique sensor name, also the ``sensor`` of its readings.
        kind: ``"gpu"``, ``"cpu"``, ``"ram"`` or ``"node"`` (the whole machine, beside the components).
        method: how its figure is obtained, written to the log beside it: ``energy_counter``,
            ``power_samples``, ``power_instant``, ``power_average`` or ``power_polling`` (NVML),
            ``rapl`` or ``rapl_dram`` (powercap), ``tdp_estimate`` (table
            TDP), ``tdp_user`` (the user's TDP), ``tdp_default`` (unknown CPU, per-thread default),
            ``ram_model`` or ``ram_user`` (RAM model, or the user's watts), ``acpi_power_meter`` (the node's meter).
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


class Absent(NamedTuple):
    """A source that is not measured here, and why.

    Attributes:
        source: ``"nvml"``, ``"rapl"``, ...
        kind: the kind it would have measured.
        reason: ``"library missing"``, ``"no driver"``, ``"no device"``, ``"permission denied"``,
            ``"not supported"``, ``"driver error"`` or ``"driver hung"`` (no answer within discovery's deadline).
        detail: the underlying message.
        hint: what the user could do, if anything.
    """

    source: str
    kind: str
    reason: str
    detail: str = ""
    hint: str = ""


class Discovery:
    """The sensors found on this machine and the sources that are absent (discovery appends to both).

    Attributes:
        sensors: the sensors found.
        absent: the sources not found, and why.
    """

    __slots__ = ("sensors", "absent")

    def __init__(self, sensors: list[Sensor] | None = None, absent: list[Absent] | None = None) -> None:
        self.sensors: list[Sensor] = [] if sensors is None else sensors
        self.absent: list[Absent] = [] if absent is None else absent

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
