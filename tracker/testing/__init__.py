"""Fakes for testing code that uses the tracker, shipped as public API.

Everything here stands in for hardware at its boundary, so the true energy is known:

- power traces (:func:`steady`, :func:`square_wave`, :func:`sine`, :func:`ramp`, :func:`piecewise`): power as a
  function of time with its exact integral;
- :class:`FakeClock`: a monotonic clock that moves only when told;
- :class:`FakeSensor`: a :class:`~tracker.sensors.Sensor` driven by a trace, with scripted faults;
- :class:`FakeNvml` (and :func:`fake_pynvml`): a stand-in for the ``pynvml`` module with the same
  function names, constants and ``NVMLError`` classes, whose devices follow power traces;
- :func:`build_powercap_tree`: a temporary ``/sys/class/powercap`` tree for the RAPL sensor.

Example:
    >>> clock = FakeClock()
    >>> sensor = FakeSensor(trace=steady(250.0), clock=clock)
    >>> first = sensor.read(); clock.advance(2.0); second = sensor.read()
    >>> second.energy_j - first.energy_j
    500.0
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracker.errors import SensorReadError
from tracker.sensors import GPU, Reading

__all__ = [
    "PowerTrace",
    "steady",
    "square_wave",
    "sine",
    "ramp",
    "piecewise",
    "FakeClock",
    "FakeSensor",
    "FakeNvml",
    "FakeGpu",
    "fake_pynvml",
    "build_powercap_tree",
]


@dataclass(frozen=True)
class PowerTrace:
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


class FakeClock:
    """A monotonic clock in seconds that moves only when told; thread-safe.

    Args:
        start: the initial reading in seconds.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current reading, s."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new reading."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back: advance({seconds!r})")
        with self._lock:
            self._now += seconds
            return self._now


class FakeSensor:
    """A sensor that follows a power trace, with scripted faults.

    The trace's time 0 is the clock's reading at construction.

    Args:
        name: the sensor's name.
        kind: ``"gpu"``, ``"cpu"`` or ``"ram"``.
        trace: the power it draws.
        clock: the clock it reads time from (a :class:`FakeClock` in tests).
        method: the method it reports; ``"power_polling"`` makes it a power-only sensor.
        counter_range_j: wrap the counter at this many joules.
        fail: called with the call number (1-based) before each read; an exception it returns is raised.
        block_s: sleep this many real seconds inside every read (a hung driver).
        info: what it reports about itself.
    """

    def __init__(
        self,
        name: str = "fake:0",
        kind: str = GPU,
        trace: PowerTrace | None = None,
        clock: Callable[[], float] = time.monotonic,
        method: str = "energy_counter",
        counter_range_j: float | None = None,
        fail: Callable[[int], BaseException | None] | None = None,
        block_s: float = 0.0,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.name, self.kind, self.method = name, kind, method
        self.info = dict(info or {"model": "fake"})
        self.trace = trace or steady(100.0)
        self.clock = clock
        self.origin_s = clock()
        self.counter_range_j = counter_range_j
        self.fail = fail
        self.block_s = block_s
        self.calls = 0
        self.closed = False

    def true_energy_j(self, t0: float, t1: float) -> float:
        """The exact energy drawn between two clock readings, in J."""
        return self.trace.between_j(t0 - self.origin_s, t1 - self.origin_s)

    def read(self) -> Reading:
        """Read the trace at the current clock time (after any scripted fault)."""
        self.calls += 1
        if self.block_s:
            time.sleep(self.block_s)
        error = self.fail(self.calls) if self.fail else None
        if error is not None:
            raise error
        now = self.clock()
        t = now - self.origin_s
        power = self.trace.power_w(t)
        if self.method == "power_polling":
            return Reading(self.name, self.kind, now, power_w=power)
        energy = self.trace.energy_j(t)
        if self.counter_range_j:
            energy = math.fmod(energy, self.counter_range_j)
        return Reading(self.name, self.kind, now, energy_j=energy, power_w=power, counter_range_j=self.counter_range_j)

    def close(self) -> None:
        """Mark the sensor closed."""
        self.closed = True


def fail_on(calls: Iterable[int], error: BaseException | None = None) -> Callable[[int], BaseException | None]:
    """A ``fail`` script for :class:`FakeSensor`: raise ``error`` on the given call numbers."""
    chosen = set(calls)
    exc = error or SensorReadError("scripted failure", sensor="fake")
    return lambda call: exc if call in chosen else None


def fail_always(error: BaseException | None = None) -> Callable[[int], BaseException | None]:
    """A ``fail`` script for :class:`FakeSensor`: raise ``error`` on every call."""
    exc = error or SensorReadError("scripted failure", sensor="fake")
    return lambda call: exc


# The NVML and powercap fakes live in their own modules to keep each one small; they use the
# traces above, so they are imported last.
from tracker.testing.fake_nvml import FakeGpu, FakeNvml, fake_pynvml  # noqa: E402
from tracker.testing.fake_powercap import build_powercap_tree  # noqa: E402
