"""Energy from a stream of readings: pure arithmetic, no threads, no clock, no I/O.

Counters give energy as differences (with wraparound and resets); power-only sensors are
integrated with the trapezoid rule, and the variance of that rule's sampling error is kept so
that an uncertainty band can be reported. Gaps longer than ``gap_factor`` sampling intervals are
recorded as seconds, never papered over.

A :class:`Snapshot` is a cheap immutable value; the energy between two moments is
``later - earlier``, exactly additive: ``(c - b) + (b - a) == c - a``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from tracker.sensors import Reading

J_PER_KWH = 3_600_000


def joules_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours."""
    return energy_j / J_PER_KWH


def counter_delta_j(previous_j: float, current_j: float, range_j: float | None) -> tuple[float, str]:
    """Energy between two raw counter values, in J, and what happened to the counter.

    Returns:
        ``(delta_j, event)`` where event is ``""``, ``"wrap"`` or ``"reset"``. A counter with a
        range wraps back to zero past it (RAPL's ``max_energy_range_uj``); one without a range
        only goes down when it was reset (an NVML driver reload), and then the energy since the
        reset, ``current_j``, is the best lower bound: negative energy is never returned.
    """
    if current_j >= previous_j:
        return current_j - previous_j, ""
    if range_j:
        return current_j + range_j - previous_j, "wrap"
    return current_j, "reset"


def trapezoid_j(p0_w: float, p1_w: float, dt_s: float) -> float:
    """Energy in J between two instantaneous power readings ``dt_s`` apart (trapezoid rule)."""
    return 0.5 * (p0_w + p1_w) * dt_s


def trapezoid_variance_j2(p0_w: float, p1_w: float, dt_s: float) -> float:
    """Variance in J² of the trapezoid's error for one interval of a step-like load.

    If power steps once from ``p0`` to ``p1`` at a uniformly random moment inside the interval,
    the trapezoid's error is ``(p0 - p1)(1/2 - u)dt`` with ``u ~ U(0, 1)``, whose variance is
    ``((p1 - p0)·dt)² / 12``. Errors of different intervals are independent when the sampling
    phase is random with respect to the workload (hence the sampler's jitter).
    """
    return ((p1_w - p0_w) * dt_s) ** 2 / 12.0


@dataclass(frozen=True, slots=True)
class SensorTotals:
    """Cumulative figures of one sensor.

    Attributes:
        energy_j: best estimate of energy, J (counter differences, else the trapezoid).
        integrated_j: trapezoid over power readings, J: the estimate for power-only sensors and
            a cross-check beside a counter.
        integrated_s: seconds covered by ``integrated_j``.
        sampling_var_j2: variance of the trapezoid's sampling error in J², for power-only spans.
        unmeasured_s: seconds where neither a counter nor two power readings were available.
        gap_s: seconds in intervals longer than ``gap_factor`` sampling intervals.
        readings: readings used.
        wraps: counter wraparounds seen.
        resets: counter resets seen (energy between the last reading and the reset is lost).
        edge_error_j: in a snapshot, the error bound of the newest reading's counter
            (:attr:`~tracker.sensors.Reading.energy_error_j`); in a difference or sum of them, the
            sum of the bounds of its edges, J. It adds whichever way totals are combined.
    """

    energy_j: float = 0.0
    integrated_j: float = 0.0
    integrated_s: float = 0.0
    sampling_var_j2: float = 0.0
    unmeasured_s: float = 0.0
    gap_s: float = 0.0
    readings: int = 0
    wraps: int = 0
    resets: int = 0
    edge_error_j: float = 0.0

    def __add__(self, other: SensorTotals) -> SensorTotals:
        return _combine(self, other, 1)

    def __sub__(self, other: SensorTotals) -> SensorTotals:
        return _combine(self, other, -1)


_FIELDS = tuple(f.name for f in fields(SensorTotals) if f.name != "edge_error_j")


def _combine(a: SensorTotals, b: SensorTotals, sign: int) -> SensorTotals:
    combined = {name: getattr(a, name) + sign * getattr(b, name) for name in _FIELDS}
    return SensorTotals(**combined, edge_error_j=a.edge_error_j + b.edge_error_j)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative totals of every sensor at one moment.

    Attributes:
        sensors: totals by sensor name.
        last_time_s: time of the newest reading of each sensor (the sensor's clock).
    """

    sensors: Mapping[str, SensorTotals] = field(default_factory=dict)
    last_time_s: Mapping[str, float] = field(default_factory=dict)

    def __sub__(self, earlier: Snapshot) -> Usage:
        empty = SensorTotals()
        return Usage({name: totals - earlier.sensors.get(name, empty) for name, totals in self.sensors.items()})


@dataclass(frozen=True, slots=True)
class Usage:
    """Energy of every sensor over an interval (a difference of snapshots, or a sum of them)."""

    sensors: Mapping[str, SensorTotals] = field(default_factory=dict)

    def __add__(self, other: Usage) -> Usage:
        names = list(self.sensors) + [n for n in other.sensors if n not in self.sensors]
        empty = SensorTotals()
        return Usage({n: self.sensors.get(n, empty) + other.sensors.get(n, empty) for n in names})

    @property
    def energy_j(self) -> float:
        """Total energy of all sensors, J."""
        return sum(t.energy_j for t in self.sensors.values())


class Meter:
    """Accumulates readings into per-sensor totals; not thread-safe (its owner, the timeline, holds a lock).

    Readings of one sensor must arrive in time order; an older or same-time reading than the
    last one is ignored (two threads may race to hand in readings taken moments apart: a counter
    loses nothing by it, a power sensor one sample).

    Boundary readings (taken when an epoch or phase opens or closes) describe the moment of the
    boundary, where the load often changes (training stops, or starts). A power-only interval
    between a boundary reading and an ordinary one is therefore integrated with the ordinary
    reading's power held (a zero-order hold from inside the segment), not the trapezoid, which
    would mix the two sides of the change: on a load that drops at an epoch's end the trapezoid
    loses about ΔP·h/4 per edge.

    Args:
        interval_s: the sampling interval, s; intervals longer than ``gap_factor`` times it are gaps.
        gap_factor: how many intervals make a gap.
    """

    def __init__(self, interval_s: float, gap_factor: float = 3.0) -> None:
        self._gap_s = interval_s * gap_factor
        self._last: dict[str, Reading] = {}
        self._last_at_boundary: dict[str, bool] = {}
        self._totals: dict[str, SensorTotals] = {}
        self._peaks_w: dict[str, float] = {}

    def add(self, reading: Reading, boundary: bool = False) -> None:
        """Fold one reading into its sensor's totals; ``boundary`` marks a reading taken at an epoch edge."""
        previous = self._last.get(reading.sensor)
        if previous is not None and reading.time_s <= previous.time_s:
            return
        totals = self._totals.get(reading.sensor, SensorTotals())
        hold = _hold(self._last_at_boundary.get(reading.sensor, False), boundary)
        step = _step(previous, reading, self._gap_s, hold) if previous else SensorTotals()
        totals = totals + step + _ONE_READING
        self._totals[reading.sensor] = replace(totals, edge_error_j=reading.energy_error_j)
        self._last[reading.sensor] = reading
        self._last_at_boundary[reading.sensor] = boundary
        if reading.power_w is not None:
            self._peaks_w[reading.sensor] = max(self._peaks_w.get(reading.sensor, 0.0), reading.power_w)

    def add_all(self, readings: Iterable[Reading], boundary: bool = False) -> None:
        """Fold several readings, in order."""
        for reading in readings:
            self.add(reading, boundary)

    def last(self, sensor: str) -> Reading | None:
        """The newest reading of a sensor, if any."""
        return self._last.get(sensor)

    def take_peaks_w(self) -> dict[str, float]:
        """The highest power reading of each sensor, W, since the previous call (then forgets them)."""
        peaks, self._peaks_w = self._peaks_w, {}
        return peaks

    def snapshot(self) -> Snapshot:
        """The cumulative totals now, as an immutable value."""
        return Snapshot(
            MappingProxyType(dict(self._totals)),
            MappingProxyType({name: r.time_s for name, r in self._last.items()}),
        )


_ONE_READING = SensorTotals(readings=1)


def _hold(previous_at_boundary: bool, current_at_boundary: bool) -> str:
    """Which reading's power stands for an interval touching one boundary: ``previous``, ``current`` or none."""
    if current_at_boundary and not previous_at_boundary:
        return "previous"
    if previous_at_boundary and not current_at_boundary:
        return "current"
    return ""


def held_j(previous: Reading, current: Reading, hold: str, dt_s: float) -> tuple[float, float]:
    """Energy (J) with one reading's power held over the interval, and its error variance (J²).

    If the power stepped at a uniformly random moment inside the interval instead of at the
    boundary, the hold errs by ``ΔP·u·dt`` with ``u ~ U(0, 1)``: second moment ``(ΔP·dt)²/3``.
    """
    watts = previous.power_w if hold == "previous" else current.power_w
    delta = (current.power_w or 0.0) - (previous.power_w or 0.0)
    return (watts or 0.0) * dt_s, (delta * dt_s) ** 2 / 3.0


def _step(previous: Reading, current: Reading, gap_s: float, hold: str = "") -> SensorTotals:
    """The totals contributed by the interval between two readings of one sensor."""
    dt = current.time_s - previous.time_s
    gap = dt if dt > gap_s else 0.0
    integrated = var = covered = 0.0
    if previous.power_w is not None and current.power_w is not None:
        integrated = trapezoid_j(previous.power_w, current.power_w, dt)
        var = trapezoid_variance_j2(previous.power_w, current.power_w, dt)
        covered = dt
    if previous.energy_j is not None and current.energy_j is not None:
        energy, event = counter_delta_j(previous.energy_j, current.energy_j, current.counter_range_j)
        return SensorTotals(
            energy_j=energy,
            integrated_j=integrated,
            integrated_s=covered,
            gap_s=gap,
            wraps=int(event == "wrap"),
            resets=int(event == "reset"),
        )
    if covered:
        energy, var = held_j(previous, current, hold, dt) if hold else (integrated, var)
        return SensorTotals(
            energy_j=energy, integrated_j=integrated, integrated_s=covered, sampling_var_j2=var, gap_s=gap
        )
    return SensorTotals(unmeasured_s=dt, gap_s=gap)
