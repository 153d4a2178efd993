"""Power traces: power as a function of time with its exact integral, so the true energy is known.

Public through :mod:`tracker.testing`; the fake sensor and the fake NVML follow them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple


class PowerTrace(NamedTuple):
    """Power in watts as a function of time in seconds, with its exact integral.

    Attributes:
        power_w: ``power_w(t)`` in W.
        energy_j: ``energy_j(t)``, the integral of power from time 0 to ``t``, in J.
    """

    power_w: Callable[[float], float]
    energy_j: Callable[[float], float]

    def between_j(self, t0: float, t1: float) -> float:
        """The true energy between two times, in J."""
        return self.energy_j(t1) - self.energy_j(t0)


def steady(watts: float) -> PowerTrace:
    """A constant draw of ``watts``."""
    return PowerTrace(lambda t: watts, lambda t: watts * t)


def square_wave(low_w: float, high_w: float, period_s: float, duty: float = 0.5) -> PowerTrace:
    """``high_w`` for the first ``duty`` of each period, ``low_w`` for the rest (a bursty load)."""
    high_s = period_s * duty

    def power(t: float) -> float:
        return high_w if (t % period_s) < high_s else low_w

    def energy(t: float) -> float:
        whole, rest = divmod(t, period_s)
        per_period = high_w * high_s + low_w * (period_s - high_s)
        partial = high_w * min(rest, high_s) + low_w * max(0.0, rest - high_s)
        return whole * per_period + partial

    return PowerTrace(power, energy)


def sine(mean_w: float, amplitude_w: float, period_s: float) -> PowerTrace:
    """``mean_w + amplitude_w·sin(2πt/period_s)``: a load that swings smoothly."""
    omega = 2 * math.pi / period_s

    def power(t: float) -> float:
        return mean_w + amplitude_w * math.sin(omega * t)

    def energy(t: float) -> float:
        return mean_w * t + amplitude_w * (1 - math.cos(omega * t)) / omega

    return PowerTrace(power, energy)


def ramp(start_w: float, end_w: float, duration_s: float) -> PowerTrace:
    """Linear from ``start_w`` to ``end_w`` over ``duration_s``, then flat at ``end_w``."""
    slope = (end_w - start_w) / duration_s

    def power(t: float) -> float:
        return start_w + slope * min(max(t, 0.0), duration_s)

    def energy(t: float) -> float:
        inside = min(max(t, 0.0), duration_s)
        return start_w * inside + 0.5 * slope * inside**2 + end_w * max(0.0, t - duration_s)

    return PowerTrace(power, energy)


def piecewise(steps: Sequence[tuple[float, float]]) -> PowerTrace:
    """Piecewise-constant power: ``steps`` is ``[(from_s, watts), ...]`` sorted by time, starting at 0."""
    starts = [start for start, _ in steps]
    watts = [w for _, w in steps]
    cumulative = [0.0]
    for i in range(1, len(steps)):
        cumulative.append(cumulative[-1] + watts[i - 1] * (starts[i] - starts[i - 1]))

    def index(t: float) -> int:
        return max(0, bisect.bisect_right(starts, t) - 1)

    def energy(t: float) -> float:
        i = index(t)
        return cumulative[i] + watts[i] * (t - starts[i])

    return PowerTrace(lambda t: watts[index(t)], energy)
