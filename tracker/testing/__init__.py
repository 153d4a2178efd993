"""Fakes for testing code that uses the tracker, shipped as public API.

Everything here stands in for hardware at its boundary, so the true energy is known:

- power traces (:func:`steady`, :func:`square_wave`, :func:`sine`, :func:`ramp`, :func:`piecewise`): power as a
  function of time with its exact integral;
- :class:`FakeClock`: a monotonic clock that moves only when told;
- :class:`FakeSensor`: a :class:`~tracker.sensors.Sensor` driven by a trace, with scripted faults;
- :class:`FakeNvml` (and :func:`fake_pynvml`): a stand-in for the ``pynvml`` module with the same
  function names, constants and ``NVMLError`` classes, whose devices follow power traces;
- :class:`FakeAmdSmi` (and :func:`fake_amdsmi`): a stand-in for AMD's ``amdsmi`` binding, the same way;
- :func:`build_powercap_tree`: a temporary ``/sys/class/powercap`` tree for the RAPL sensor;
- :func:`build_hwmon_tree`: a temporary ``/sys/class/hwmon`` tree whose ACPI power meters follow a trace.

Example:
    >>> clock = FakeClock()
    >>> sensor = FakeSensor(trace=steady(250.0), clock=clock)
    >>> first = sensor.read(); clock.advance(2.0); second = sensor.read()
    >>> second.energy_j - first.energy_j
    500.0
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tracker.errors import SensorReadError
from tracker.sensors import GPU, Reading
from tracker.testing.fake_amdsmi import FakeAmdGpu, FakeAmdSmi, fake_amdsmi
from tracker.testing.fake_hwmon import HwmonTree, build_hwmon_tree
from tracker.testing.fake_nvml import FakeGpu, FakeNvml, fake_pynvml
from tracker.testing.fake_powercap import build_powercap_tree
from tracker.testing.traces import PowerTrace, piecewise, ramp, sine, square_wave, steady

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
    "FakeAmdSmi",
    "FakeAmdGpu",
    "fake_amdsmi",
    "build_powercap_tree",
    "HwmonTree",
    "build_hwmon_tree",
]


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
