"""Energy from a stream of readings: pure arithmetic, no threads, no clock, no I/O.

Counters give energy as differences (with wraparound and resets); power-only sensors are
integrated with the trapezoid rule, and the variance of that rule's sampling error is kept so
that an uncertainty band can be reported. Gaps longer than ``gap_factor`` sampling intervals are
recorded as seconds, never papered over.

A :class:`Snapshot` is a cheap immutable value; the energy between two moments is
``later - earlier``, exactly additive: ``(c - b) + (b - a) == c - a``.
"""

import math
import operator
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from tracker.energy import counter_delta_j, trapezoid_j
from tracker.sensors import Reading

# Bounds of plausibility. No device draws 5 kW (the largest GPUs are rated ~1.2 kW); a known limit
# (NVML's enforced power limit, a CPU's TDP) may be exceeded by transients, hence the margin.
UNKNOWN_CAP_W = 5000.0
CAP_MARGIN = 1.5
# A counter may be updated late (NVML and RAPL refresh every few to 100 ms), then catch up.
COUNTER_LAG_S = 1.0
# A step back of at most this many seconds at the device's cap is a wobble, not a reset.
JITTER_S = 1.0
# A power-only outage is estimated with the sensor's mean power over about this many seconds before it.
RECENT_S = 10.0


def classify_counter(
    reference_j: float, current_j: float, range_j: float | None, dt_s: float, cap_w: float
) -> tuple[float | None, str]:
    """Energy (J) of one counter interval and its event, with glitches told apart from resets.

    The most a device can add to its counter in ``dt_s`` is ``cap_w·(dt_s + COUNTER_LAG_S)`` (the
    lag: a counter may be updated late, then catch up). Against that limit:

    - a step forward within it is energy (``""``); a wrap (range given) within it is ``"wrap"``;
    - a fall to a value within it is a restart near zero, ``"reset"``: the energy since the restart;
    - a small step back (at most ``cap_w·JITTER_S``) is ``"jitter"``: no energy, and the caller keeps
      the higher value as its reference so that the wobble books nothing twice;
    - anything else (a step back to the middle of nowhere, a jump forward the device could not
      draw) is ``"glitch"``, returned as ``None``: the caller estimates the interval from power.

    Args:
        reference_j: the counter value energy is counted from (the highest trusted value), J.
        current_j: the new raw value, J.
        range_j: the wrap range, J, or ``None``.
        dt_s: seconds since the reference reading.
        cap_w: the most the device can draw, W (its power limit or TDP with margin).
    """
    limit_j = cap_w * (max(dt_s, 0.0) + COUNTER_LAG_S)
    delta, event = counter_delta_j(reference_j, current_j, range_j)
    if event == "" or (event == "wrap" and delta <= limit_j):
        return (delta, event) if delta <= limit_j else (None, "glitch")
    if current_j <= limit_j:
        return current_j, "reset"
    if reference_j - current_j <= cap_w * JITTER_S:
        return 0.0, "jitter"
    return None, "glitch"


def power_cap_w(info: Mapping[str, Any]) -> float | None:
    """The most a device can draw, W: its enforced power limit (NVML) or TDP, times ``CAP_MARGIN``; else None."""
    for key in ("power_limit_w", "tdp_w"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value) * CAP_MARGIN
    return None


def trapezoid_variance_j2(p0_w: float, p1_w: float, dt_s: float) -> float:
    """Variance in J² of the trapezoid's error for one interval of a step-like load.

    If power steps once from ``p0`` to ``p1`` at a uniformly random moment inside the interval,
    the trapezoid's error is ``(p0 - p1)(1/2 - u)dt`` with ``u ~ U(0, 1)``, whose variance is
    ``((p1 - p0)·dt)² / 12``. Errors of different intervals are independent when the sampling
    phase is random with respect to the workload (hence the sampler's jitter).
    """
    return ((p1_w - p0_w) * dt_s) ** 2 / 12.0


class SensorTotals(NamedTuple):
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
        covered_s: seconds covered by good readings (intervals measured and shorter than a gap).
        rejected: readings (or their power) rejected as implausible: negative, NaN, infinite, or
            above the device's cap; none of them enters a total.
        jitters: small backward steps of a counter (no energy booked).
        glitches: counter steps the device could not have made; their intervals are estimated from power.
        stale_edges: epoch or phase edges at which this sensor could not be read in time, so that the
            edge used its last background reading.
        split_s: seconds of a counter's outage that span an edge: the part before the edge is estimated
            there from the sensor's recent power (the counter's figure comes later), the part after it is
            what the counter then shows less that estimate; both err by the estimate's error.
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
    covered_s: float = 0.0
    rejected: int = 0
    jitters: int = 0
    glitches: int = 0
    stale_edges: int = 0
    split_s: float = 0.0

    def __add__(self, other: "SensorTotals") -> "SensorTotals":
        return _combine(self, other, 1)

    def __sub__(self, other: "SensorTotals") -> "SensorTotals":
        return _combine(self, other, -1)


_EDGE = SensorTotals._fields.index("edge_error_j")


def _combine(a: SensorTotals, b: SensorTotals, sign: int) -> SensorTotals:
    # Field by field as tuples: every reading adds two of these on the sampler's thread (a third of a tick's CPU
    # when built by name). The edges' error bounds add whichever way.
    if sign > 0:
        return SensorTotals._make(map(operator.add, a, b))
    values = list(map(operator.sub, a, b))
    values[_EDGE] = a.edge_error_j + b.edge_error_j
    return SensorTotals._make(values)


_NOTHING: Mapping[str, Any] = MappingProxyType({})  # the shared, immutable empty default


class Snapshot(NamedTuple):
    """Cumulative totals of every sensor at one moment.

    Attributes:
        sensors: totals by sensor name.
        last_time_s: time of the newest reading of each sensor (the sensor's clock).
    """

    sensors: Mapping[str, SensorTotals] = _NOTHING
    last_time_s: Mapping[str, float] = _NOTHING

    def __sub__(self, earlier: "Snapshot") -> "Usage":
        empty = SensorTotals()
        return Usage({name: totals - earlier.sensors.get(name, empty) for name, totals in self.sensors.items()})


class Usage(NamedTuple):
    """Energy of every sensor over an interval (a difference of snapshots, or a sum of them)."""

    sensors: Mapping[str, SensorTotals] = _NOTHING

    def __add__(self, other: "Usage") -> "Usage":
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

    Implausible readings never enter a total: a negative, NaN or infinite value, or power above
    the sensor's cap, is rejected and counted (``rejected``). Counter steps are classified by
    :func:`classify_counter`: jitter books nothing, a glitch's interval is estimated from power.

    Boundary readings (taken when an epoch or phase opens or closes) describe the moment of the
    boundary, where the load often changes (training stops, or starts). A power-only interval
    between a boundary reading and an ordinary one is therefore integrated with the ordinary
    reading's power held (a zero-order hold from inside the segment), not the trapezoid, which
    would mix the two sides of the change: on a load that drops at an epoch's end the trapezoid
    loses about ΔP·h/4 per edge. A power-only gap (an outage) is estimated the same way, with a
    band as wide as the sensor's highest power seen: the mean over the gap is taken as unknown
    between 0 and that power.

    Args:
        interval_s: the sampling interval, s; intervals longer than ``gap_factor`` times it are gaps.
        gap_factor: how many intervals make a gap.
        caps_w: the most each sensor can draw, W, by sensor name (see :func:`power_cap_w`);
            ``UNKNOWN_CAP_W`` for the others.
    """

    def __init__(self, interval_s: float, gap_factor: float = 3.0, caps_w: Mapping[str, float] | None = None) -> None:
        self._gap_s = interval_s * gap_factor
        self._caps_w = dict(caps_w or {})
        self._last: dict[str, Reading] = {}
        self._reference_j: dict[str, float] = {}
        self._last_at_boundary: dict[str, bool] = {}
        self._totals: dict[str, SensorTotals] = {}
        self._peaks_w: dict[str, float] = {}
        self._max_w: dict[str, float] = {}
        self._recent: dict[str, tuple[float, float]] = {}  # decayed sums of (J, s) of good power intervals
        self._booked: dict[str, tuple[float, SensorTotals]] = {}  # an out counter: estimated up to when, and what

    def add(self, reading: Reading, boundary: bool = False) -> None:
        """Fold one reading into its sensor's totals; ``boundary`` marks a reading taken at an epoch edge."""
        previous = self._last.get(reading.sensor)
        if previous is not None and reading.time_s <= previous.time_s:
            return
        sensor = reading.sensor
        checked, rejected = plausible(reading, self.cap_w(sensor))
        if rejected:
            self._count(sensor, SensorTotals(rejected=1))
        if checked is None:
            return
        reading = checked
        step = self._step(previous, reading, boundary) if previous else SensorTotals()
        if sensor in self._booked:
            step = _less_booked(step, self._booked.pop(sensor)[1], reading.time_s - previous.time_s)
        self._count(reading.sensor, step + _ONE_READING)
        self._totals[sensor] = self._totals[sensor]._replace(edge_error_j=reading.energy_error_j)
        self._last[reading.sensor] = reading
        self._last_at_boundary[reading.sensor] = boundary
        if reading.power_w is not None:
            self._peaks_w[reading.sensor] = max(self._peaks_w.get(reading.sensor, 0.0), reading.power_w)
            self._max_w[reading.sensor] = max(self._max_w.get(reading.sensor, 0.0), reading.power_w)

    def add_all(self, readings: Iterable[Reading], boundary: bool = False) -> None:
        """Fold several readings, in order."""
        for reading in readings:
            self.add(reading, boundary)

    def reject(self, sensor: str) -> None:
        """Count a reading of ``sensor`` that was rejected before it reached the meter."""
        self._count(sensor, SensorTotals(rejected=1))

    def stale_edge(self, sensor: str, now_s: float | None = None, out: bool = False) -> None:
        """Count an edge at which ``sensor`` was not read in time (its last background reading stood in).

        When the sensor is ``out`` (failing: its reads raise, and it will be read again) and counts
        energy, the energy since its last reading (or the last such edge) up to ``now_s`` is estimated
        here from its recent power: its counter loses nothing, but the energy it shows on its return
        would otherwise all go to the segment it returns in. The band is that of a mean power anywhere
        between 0 and the sensor's cap (the load may have changed unseen); what the counter shows on
        its return is then less this estimate. A lost device (gone from the bus) is not estimated.
        """
        self._count(sensor, SensorTotals(stale_edges=1))
        last = self._last.get(sensor)
        if not out or now_s is None or last is None or last.energy_j is None:
            return
        since_s, booked = self._booked.get(sensor, (last.time_s, _EMPTY))
        dt = now_s - since_s
        if dt <= 0:
            return
        energy_j, span_s = self._recent.get(sensor, (0.0, 0.0))
        estimate = SensorTotals(
            energy_j=(energy_j / span_s if span_s else 0.0) * dt,
            sampling_var_j2=(self.cap_w(sensor) * dt) ** 2 / 12.0,
            split_s=dt,
        )
        self._count(sensor, estimate)
        self._booked[sensor] = (now_s, booked + estimate)

    def cap_w(self, sensor: str) -> float:
        """The most ``sensor`` can draw, W."""
        return self._caps_w.get(sensor, UNKNOWN_CAP_W)

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

    def _count(self, sensor: str, step: SensorTotals) -> None:
        if sensor:
            self._totals[sensor] = self._totals.get(sensor, _EMPTY) + step

    def _remember(self, sensor: str, energy_j: float, span_s: float) -> None:
        """Fold a good interval into the sensor's recent mean power, older intervals fading over ``RECENT_S``."""
        total_j, total_s = self._recent.get(sensor, (0.0, 0.0))
        decay = math.exp(-span_s / RECENT_S)
        self._recent[sensor] = (total_j * decay + energy_j, total_s * decay + span_s)

    def _step(self, previous: Reading, current: Reading, boundary: bool) -> SensorTotals:
        hold = _hold(self._last_at_boundary.get(current.sensor, False), boundary)
        energy_j, span_s = self._recent.get(current.sensor, (0.0, 0.0))
        recent = energy_j / span_s if span_s else None
        power = _power_step(previous, current, self._gap_s, hold, self._max_w.get(current.sensor, 0.0), recent)
        if previous.energy_j is None or current.energy_j is None:
            self._reference_j.pop(current.sensor, None)
            if power.covered_s and power.integrated_s:  # a good interval: into the recent mean, older ones fading
                self._remember(current.sensor, power.integrated_j, power.integrated_s)
            return power
        reference = self._reference_j.get(current.sensor, previous.energy_j)
        dt = current.time_s - previous.time_s
        energy, event = classify_counter(
            reference, current.energy_j, current.counter_range_j, dt, self.cap_w(current.sensor)
        )
        self._reference_j[current.sensor] = reference if event == "jitter" else current.energy_j
        if energy is None:  # a glitch: the power beside the counter, else nothing claimed
            return power._replace(glitches=1, unmeasured_s=0.0 if power.integrated_s else dt)
        if dt > 0 and current.estimated_s == previous.estimated_s:  # a counter's mean power is exact, gap or not
            self._remember(current.sensor, energy, dt)
        # A counter the sensor built from power may hold estimates (Reading.estimated_s): that is the gap, with
        # their variance; the rest of the interval is counted whatever the readings' spacing.
        estimated_s = max(0.0, current.estimated_s - previous.estimated_s)
        return power._replace(
            energy_j=energy, sampling_var_j2=max(0.0, current.estimated_var_j2 - previous.estimated_var_j2),
            unmeasured_s=0.0, gap_s=estimated_s or power.gap_s,
            covered_s=max(0.0, dt - estimated_s) if estimated_s or not power.gap_s else 0.0,
            wraps=int(event == "wrap"), resets=int(event == "reset"), jitters=int(event == "jitter"),
        )  # fmt: skip


_EMPTY = SensorTotals()
_ONE_READING = SensorTotals(readings=1)


def _less_booked(step: SensorTotals, booked: SensorTotals, dt_s: float) -> SensorTotals:
    """The interval a counter returns with, less the part of its outage estimated at edges (``booked``).

    The rest of the outage is the counter's energy less the estimate: it errs by the estimate's error, the
    other way, hence the same variance. None of the interval is covered by good readings.
    """
    return step._replace(
        energy_j=step.energy_j - booked.energy_j,
        sampling_var_j2=step.sampling_var_j2 + booked.sampling_var_j2,
        split_s=max(0.0, dt_s - booked.split_s),
        gap_s=0.0,
        covered_s=0.0,
    )


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


def _power_step(
    previous: Reading, current: Reading, gap_s: float, hold: str, max_w: float, recent_w: float | None = None
) -> SensorTotals:
    """The totals of the interval between two readings of one sensor, from their power alone.

    A gap (an outage) is estimated with ``recent_w``, the sensor's mean power over the last
    ``RECENT_S`` seconds (its two end readings are two samples of a load that may swing), with the
    variance of a mean anywhere between 0 and the highest power seen, ``max_w``.
    """
    dt = current.time_s - previous.time_s
    gap = dt if dt > gap_s else 0.0
    if previous.power_w is None or current.power_w is None:
        return SensorTotals(unmeasured_s=dt, gap_s=gap)
    integrated = trapezoid_j(previous.power_w, current.power_w, dt)
    energy, var = (integrated, trapezoid_variance_j2(previous.power_w, current.power_w, dt))
    if hold and not gap:
        energy, var = held_j(previous, current, hold, dt)
    if gap:
        energy = integrated if recent_w is None else recent_w * dt
        var = (max(max_w, previous.power_w, current.power_w) * dt) ** 2 / 12.0
    return SensorTotals(
        energy_j=energy + lag_j(previous, current), integrated_j=integrated, integrated_s=dt, sampling_var_j2=var,
        gap_s=gap, covered_s=0.0 if gap else dt,
    )  # fmt: skip


def lag_j(previous: Reading, current: Reading) -> float:
    """The energy a lagging power reading has not shown yet, moved into the interval that ends at ``current``, J.

    A reading that describes the power of ``lag_s`` before it was read (:attr:`Reading.lag_s`) makes the
    integral over readings ``∫R`` the energy up to ``lag_s`` ago; ``C(t) = ∫R + lag_s·R(t)`` is the energy up
    to now with the newest power held over the stretch not seen yet. Each interval adds its share of that
    term, ``lag_s·(P₁ - P₀)``, so that a sum of intervals (a row) is ``C(b) - C(a)``: without it a row that
    starts idle and ends busy lacks ``lag_s·ΔP`` (docs/measurement.md §1.2). The newer reading's lag is taken
    for both, so that the first polled reading after a counter's (a counter gone mid-run) books nothing twice.
    """
    return current.lag_s * ((current.power_w or 0.0) - (previous.power_w or 0.0))


def plausible(reading: Reading, cap_w: float) -> tuple[Reading | None, bool]:
    """``reading`` with implausible values removed, and whether any was.

    A counter value that is negative, NaN or infinite rejects the whole reading; so does such a
    power, or one above ``cap_w``, on a power-only reading. Beside a good counter, a bad power is
    dropped and the counter kept.
    """
    energy_ok = reading.energy_j is None or (math.isfinite(reading.energy_j) and reading.energy_j >= 0)
    power_ok = reading.power_w is None or (math.isfinite(reading.power_w) and 0 <= reading.power_w <= cap_w)
    if energy_ok and power_ok:
        return reading, False
    if not energy_ok or reading.energy_j is None:
        return None, True
    return reading._replace(power_w=None), True
