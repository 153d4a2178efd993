"""Counters built from power: the driver's sample buffer, and a trailing average turned back into energy.

Pure arithmetic over timestamps in seconds and power in watts; the NVML and amdsmi sensors feed
them and report the result as a cumulative ``energy_j`` with an ``energy_error_j`` bound, so the
meter takes their differences exactly as it takes a hardware counter's.

:class:`SampleCounter` integrates every sample of a driver's buffer (trapezoid at the driver's own
rate), whatever the reader's interval; between the newest sample and the moment of the reading it
holds the newest sample's power, and says how wrong that may be.

:class:`AverageCounter` integrates a power reading that is a trailing mean over ``w`` seconds.
Such a reading lags the load by about ``w/2``: integrating it as if it were instantaneous moves
energy across an epoch edge whenever the load changed within ``w`` of it. With ``A`` the trailing
mean, ``C(t) = ∫A + (w/2)·A(t)`` differs from the true energy by a constant when the load has been
steady for ``w``; after a step ``ΔP`` that happened ``u`` seconds ago (``u < w``) the difference is
``-ΔP·u(w-u)/(2w)``, at most ``ΔP·w/8``, and it vanishes again once ``u ≥ w``. So ``C(b) - C(a)`` is
the energy of ``[a, b]`` up to that edge term, which :meth:`AverageCounter.energy` bounds.

Both counters never go down (a decrease would read as a counter reset): an estimate below the one
reported before is held until the integral overtakes it, which delays energy, never loses it.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from itertools import pairwise

from tracker.energy import trapezoid_j


class SampleCounter:
    """Energy from a buffer of timestamped power samples, in J.

    Samples come in batches (one fetch of the driver's buffer each), in seconds of the reader's own
    clock. Within a batch the buffer is contiguous; between two batches it may have overflowed (the
    reader came late): a first sample more than ``HOLE_FACTOR`` typical spacings (and ``MIN_HOLE_S``)
    after the last one seen opens a hole, which is not bridged by the trapezoid of its two ends (a load that changed in
    it would be booked wrong by up to the whole hole) but estimated with the mean power of the samples
    around it, with the variance of a mean anywhere between 0 and the highest of them,
    ``(peak·Δt)²/12``. :meth:`bridge` estimates a stretch the same way from one polled power reading
    (when the samples' timestamps cannot be trusted). ``estimated_s`` and ``estimated_var_j2`` add up
    what was estimated, for the rows.

    Args:
        memory_s: how far back the spread of recent samples is taken for the error bound, s.

    Attributes:
        last_s: time of the newest sample (or bridge) counted, s; ``None`` before the first.
        last_w: its power, W.
        gaps: holes estimated so far.
        estimated_s: seconds estimated rather than integrated from samples, so far.
        estimated_var_j2: the variance of those estimates, J², so far.
    """

    HOLE_FACTOR = 2.5
    MIN_HOLE_S = 0.1  # shorter, the trapezoid errs by little, and a driver's irregular sampling raises no note

    def __init__(self, memory_s: float = 1.0) -> None:
        self.last_s: float | None = None
        self.last_w = 0.0
        self.integral_j = 0.0
        self.samples = 0
        self.gaps = 0
        self.typical_dt_s: float | None = None
        self.estimated_s = 0.0
        self.estimated_var_j2 = 0.0
        self._reported_j = 0.0
        self._recent: deque[tuple[float, float]] = deque()
        self._spacings: deque[float] = deque(maxlen=64)
        self._memory_s = memory_s

    def add(self, samples: Iterable[tuple[float, float]]) -> None:
        """Fold in one batch of samples ``(time_s, watts)``; ones not newer than the last are ignored."""
        batch = sorted(s for s in samples if self.last_s is None or s[0] > self.last_s)
        if not batch:
            return
        self._spacings.extend(b[0] - a[0] for a, b in pairwise(batch))
        if self._spacings:  # the mean of the recent spacings, the period: a driver's jitter spreads them (0, 2 periods)
            self.typical_dt_s = statistics.fmean(self._spacings)
        first_s, first_w = batch[0]
        if self.last_s is not None:
            dt = first_s - self.last_s
            if self.typical_dt_s is not None and dt > max(self.HOLE_FACTOR * self.typical_dt_s, self.MIN_HOLE_S):
                self.gaps += 1
                self._estimate(dt, [w for _, w in self._recent] or [self.last_w], [w for _, w in batch])
            else:
                self.integral_j += trapezoid_j(self.last_w, first_w, dt)
        previous_w = first_w
        for (t0, _), (t1, watts) in pairwise(batch):
            self.integral_j += trapezoid_j(previous_w, watts, t1 - t0)
            previous_w = watts
        self.last_s, self.last_w = batch[-1]
        self.samples += len(batch)
        self._recent.extend(batch)
        while self._recent and self._recent[0][0] < self.last_s - self._memory_s:
            self._recent.popleft()

    def bridge(self, time_s: float, watts: float | None) -> None:
        """Count up to ``time_s`` without samples: estimated from the recent power and one polled now (or ``None``)."""
        if self.last_s is None or time_s <= self.last_s:
            self.last_s, self.last_w = time_s, self.last_w if watts is None else watts
            return
        now_w = self.last_w if watts is None else watts
        self._estimate(time_s - self.last_s, [w for _, w in self._recent] or [self.last_w], [now_w])
        self.last_s, self.last_w = time_s, now_w
        self._recent.clear()
        self._recent.append((time_s, now_w))

    def _estimate(self, dt_s: float, before_w: list[float], after_w: list[float]) -> None:
        """Estimate ``dt_s`` unseen seconds by the mean of the power on either side (each side's mean, halved)."""
        self.integral_j += 0.5 * (statistics.fmean(before_w) + statistics.fmean(after_w)) * dt_s
        self.estimated_s += dt_s
        self.estimated_var_j2 += (max(*before_w, *after_w) * dt_s) ** 2 / 12.0

    def energy(self, now_s: float) -> tuple[float, float]:
        """Energy up to ``now_s`` (same time base as the samples) and a bound on its error, J.

        The stretch after the newest sample is the newest power held; its error is bounded by that
        stretch times the spread of the recent samples.
        """
        if self.last_s is None:
            return self._reported_j, 0.0
        lag_s = max(0.0, now_s - self.last_s)
        estimate = self.integral_j + self.last_w * lag_s
        self._reported_j = max(self._reported_j, estimate)
        watts = [w for _, w in self._recent] or [self.last_w]
        return self._reported_j, lag_s * (max(watts) - min(watts))


class AverageCounter:
    """Energy from a power reading that is a trailing mean over ``window_s``, in J (see the module docstring).

    Args:
        window_s: the length of the trailing mean, s.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.integral_j = 0.0
        self._last: tuple[float, float] | None = None
        self._recent: deque[tuple[float, float]] = deque()
        self._reported_j = 0.0

    def energy(self, time_s: float, mean_w: float) -> tuple[float, float]:
        """Fold in the trailing mean ``mean_w`` read at ``time_s``; returns the energy so far and its error bound, J.

        The bound is ``w/2`` times the range of the means seen over the last ``w``: a step ``ΔP``
        ``u`` seconds ago moved the mean by ``ΔP·u/w`` while the counter is off by ``ΔP·u(w-u)/(2w)``.
        """
        if self._last is not None and time_s > self._last[0]:
            self.integral_j += trapezoid_j(self._last[1], mean_w, time_s - self._last[0])
        self._last = (time_s, mean_w)
        self._recent.append((time_s, mean_w))
        while self._recent[0][0] < time_s - self.window_s:
            self._recent.popleft()
        half = 0.5 * self.window_s
        self._reported_j = max(self._reported_j, self.integral_j + half * mean_w)
        means = [w for _, w in self._recent]
        return self._reported_j, half * (max(means) - min(means))


class UpdatePeriod:
    """How often a driver refreshes a polled power reading, inferred from the polls; how often to poll it, s.

    A driver refreshes its power reading every ``τ`` (20 ms before Volta, 100 ms on A100 and H100;
    docs/measurement.md §1.2) and a read in between returns the newest refresh, so polling faster than
    ``τ`` only adds cost, and polling slower misses refreshes. As Zeus's power monitor does, ``τ``
    is the shortest time seen between two changes of the reading (each change is a refresh), and
    the reading is polled at half of it (no refresh is seen late by more than ``τ/2``), within
    ``[floor_s, ceiling_s]``.

    A load that holds still between changes hides the refreshes in between, so ``τ`` is only
    trusted after ``min_changes`` changes (the shortest gap among that many); until then a reading
    that changes is polled at ``floor_s`` (the safe side: faster), and one that has not changed
    in ``calibration_s`` at ``ceiling_s`` (a steady load loses nothing to slower polling). The poll
    speeds up again as soon as changes come closer.

    A reading that changes at (nearly) every poll, ``CONTINUOUS`` of them or more, shows no refresh
    period at all (a noisy or continuous reading: the shortest gap is then only the shortest time
    between two polls, which says nothing of the driver); ``τ`` stays unknown and the reading is
    polled at ``ceiling_s``. A driver that refuses polls this fast (:meth:`slow_down`) doubles the floor.

    Args:
        floor_s: the fastest poll, s (also the poll while calibrating).
        ceiling_s: the slowest poll, s.
        calibration_s: how long to poll at ``floor_s`` while the reading does not change, s.
        min_changes: changes of the reading needed before ``τ`` is trusted.

    Attributes:
        period_s: the inferred refresh period ``τ``, s; ``None`` until ``min_changes`` changes were seen,
            or while the reading changes at nearly every poll.
        interval_s: how often to poll now, s.
        changes: changes of the reading seen so far.
        polls: polls after the first, so far.
        continuous: whether the reading changes at (nearly) every poll (``CONTINUOUS``): no refresh period shows.
    """

    CONTINUOUS = 0.9

    def __init__(self, floor_s: float, ceiling_s: float, calibration_s: float = 1.0, min_changes: int = 32) -> None:
        self.floor_s, self.ceiling_s = floor_s, ceiling_s
        self.period_s: float | None = None
        self.interval_s = floor_s
        self.changes = 0
        self.polls = 0
        self.continuous = False
        self._calibration_s, self._min_changes = calibration_s, min_changes
        self._shortest_s = float("inf")
        self._first_s: float | None = None
        self._last_w: float | None = None
        self._last_change_s: float | None = None

    def observe(self, time_s: float, watts: float) -> float:
        """Fold in one poll (its time, s, and the power it read, W); returns the interval to poll at now, s."""
        if self._first_s is None:
            self._first_s = time_s
        if self._last_w is not None:
            self.polls += 1
            if watts != self._last_w:
                if self._last_change_s is not None and time_s > self._last_change_s:
                    self._shortest_s = min(self._shortest_s, time_s - self._last_change_s)
                self._last_change_s = time_s
                self.changes += 1
        self._last_w = watts
        self.continuous = self.changes >= self._min_changes and self.changes >= self.CONTINUOUS * self.polls
        if self.continuous:
            self.period_s, self.interval_s = None, self.ceiling_s
        elif self.changes >= self._min_changes:
            self.period_s = self._shortest_s
            self.interval_s = min(self.ceiling_s, max(self.floor_s, self.period_s / 2))
        elif self.changes == 0 and time_s - self._first_s >= self._calibration_s:
            self.interval_s = self.ceiling_s
        else:
            self.interval_s = self.floor_s
        return self.interval_s

    def slow_down(self) -> float:
        """Double the floor (up to the ceiling): a driver refused a poll as too fast; returns the interval now, s."""
        self.floor_s = min(self.ceiling_s, 2 * self.floor_s)
        self.interval_s = max(self.interval_s, self.floor_s)
        return self.interval_s
