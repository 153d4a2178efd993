"""The background sampler: one small class owns the thread, and nothing escapes it.

Once in every slot of ``interval_s`` (drift-corrected: slot ``k`` is ``[t0 + k·h, t0 + (k+1)·h)``)
it reads every sensor and hands the batch to a ``sink`` callable. Within its slot the reading
time is random (stratified sampling, ``jitter=1``): a fixed period would phase-lock to a periodic
training step and bias polled power (aliasing); a small jitter around a fixed period does not
help, because the phase then drifts as a slow random walk and stays correlated for minutes.
:meth:`Sampler.sample_now` reads at once on the caller's behalf so that epoch boundaries are
exact: the reads are made on an edge thread (:mod:`tracker.measure.edge`) and waited for at most
``edge_deadline_s`` (10 ms), so that a hung driver never holds the training thread; a sensor being
read by the background thread, failing, or once slow is not read at an edge at all.
:meth:`Sampler.tick` is the loop body, public so that
tests drive it by hand with a fake clock.

A sensor that raises is counted and retried for the whole run, with back-off: after
``max_failures`` failures in a row, it is read again at the first tick ``BACKOFF_BASE_S·2^k`` seconds
after its next failure (``k`` counting from 0) (at most
``BACKOFF_MAX_S`` apart), so that a transient driver error (under load, during Xid recovery) costs
a few readings, and the sensor comes back when the hardware does. A device that is gone
(:class:`~tracker.errors.SensorGone`: fell off the bus, unplugged) is ``lost`` and re-probed every
``BACKOFF_MAX_S``. Each sensor produces at most one warning in a run, and one line when it comes
back. The training thread never sees a sensor's exception.
"""

import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple

from tracker.errors import ConfigurationError, SensorGone
from tracker.measure import edge
from tracker.sensors import GPU, Clock, Reading, Sensor
from tracker.sensors.methods import POWER_POLLING

logger = logging.getLogger(__name__)

Sink = Callable[[list[Reading]], None]

MIN_INTERVAL_S = 0.01
MAX_INTERVAL_S = 3600.0
# The default intervals. Counters lose nothing between reads, so 1 s suffices. Polled power on a
# bursty load errs by about ΔP·h/√12 per transition (see tests/test_accuracy.py): 0.05 s keeps a
# 60 s epoch of a 50↔350 W, 0.3 s square wave within ~2.5 % at 3σ, where docs/measurement.md §7's 0.1 s gives ~5 %.
COUNTER_INTERVAL_S = 1.0
POLLED_INTERVAL_S = 0.05
# A read this slow is a driver hung in the kernel, not a busy interpreter holding the GIL: it is warned.
HUNG_READ_S = 1.0
OK, FAILING, LOST = "ok", "failing", "lost"
# How the sensors are read between edges: by the background thread, or only when the caller asks (sample()).
BACKGROUND, MANUAL = "background", "manual"
# Retry schedule of a failing sensor, s: 0.1, 0.2, 0.4, ... up to 30 (a lost device: every 30).
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 30.0


class SensorHealth(NamedTuple):
    """How one sensor has fared.

    Attributes:
        status: ``"ok"``, ``"failing"`` (the last read failed; retried with back-off) or ``"lost"``
            (the device is gone; re-probed every ``BACKOFF_MAX_S``).
        failures: failed reads in all.
        last_error: the last failure's message.
        slow: a read once took longer than ``slow_read_s``; it is now read in the background only.
        recoveries: times it came back after failing.
    """

    status: str = OK
    failures: int = 0
    last_error: str = ""
    slow: bool = False
    recoveries: int = 0


class _Slot:
    """One sensor and its bookkeeping; touched only under its own lock."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self.lock = threading.Lock()
        self.consecutive = 0
        self.failures = 0
        self.recoveries = 0
        self.last_error = ""
        self.lost = False
        self.retry_at = float("-inf")
        self.slow = False
        self.warned = False

    def health(self) -> SensorHealth:
        status = LOST if self.lost else (FAILING if self.consecutive else OK)
        return SensorHealth(status, self.failures, self.last_error, self.slow, self.recoveries)

    def due(self, now_s: float) -> bool:
        """Whether a failing sensor's back-off has run out (always, for a healthy one)."""
        return now_s >= self.retry_at


def validate_interval(interval_s: object, name: str = "interval_s") -> float:
    """Check a sampling interval and return it as a float.

    Raises:
        ConfigurationError: not a real number within [0.01 s, 3600 s].
    """
    if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)):
        raise ConfigurationError(
            f"{name}={interval_s!r} is not a number; give seconds between readings, e.g. {name}=1.0"
        )
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise ConfigurationError(
            f"{name}={interval_s!r} is out of range; give seconds between {MIN_INTERVAL_S} and {MAX_INTERVAL_S:g}"
            f" ({COUNTER_INTERVAL_S} suits energy counters, {POLLED_INTERVAL_S} polled power)"
        )
    return float(interval_s)


def validate_jitter(jitter: object) -> float:
    """Check a jitter (the fraction of each slot the reading time is spread over) and return it as a float.

    Raises:
        ConfigurationError: not a real number within [0, 1].
    """
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
        raise ConfigurationError(f"jitter={jitter!r}: give a fraction of the interval between 0 and 1 (default 1.0)")
    return float(jitter)


def default_interval_s(sensors: Sequence[Sensor]) -> float:
    """Seconds between readings when the user gives none: polled GPU power is read more often than counters."""
    polled = any(s.kind == GPU and s.method == POWER_POLLING for s in sensors)
    return POLLED_INTERVAL_S if polled else COUNTER_INTERVAL_S


class Sampler:
    """Polls sensors on a daemon thread named ``energy-tracker.sampler``.

    Args:
        sensors: what to read.
        sink: receives each batch of readings, on the sampler thread (or the caller's, for
            :meth:`sample_now`); it must be thread-safe.
        interval_s: seconds between ticks, 0.01 to 3600.
        clock: monotonic clock in seconds used to schedule ticks.
        jitter: the fraction of each slot over which its reading time is spread uniformly at random
            (0: the middle of every slot; 1: anywhere in it, i.e. stratified random sampling).
        seed: seed of the jitter's random numbers, for repeatable tests.
        max_failures: consecutive failures after which the sensor's status stays ``failing`` in the
            rows; before that, retries come at every tick.
        slow_read_s: a read slower than this is never again made at an edge.
        edge_deadline_s: the longest :meth:`sample_now` waits for its readings, s; ``None`` is
            :data:`tracker.measure.edge.EDGE_DEADLINE_S` (10 ms).
        slowest_s: when given, the interval follows the sensors after every tick: the shortest
            ``max_interval_s`` they declare now (a polled GPU's follows its driver's refresh period),
            never above ``slowest_s`` nor below ``MIN_INTERVAL_S``.

    Raises:
        ConfigurationError: an argument is out of range.

    Example:
        >>> from tracker.testing import FakeClock, FakeSensor
        >>> batches = []
        >>> sampler = Sampler([FakeSensor()], batches.append, interval_s=1.0)
        >>> _ = sampler.tick(); len(batches[0])
        1
    """

    def __init__(
        self,
        sensors: Sequence[Sensor],
        sink: Sink,
        *,
        interval_s: float = 1.0,
        clock: Clock = time.monotonic,
        jitter: float = 0.0,
        seed: int | None = None,
        max_failures: int = 3,
        slow_read_s: float = 0.25,
        edge_deadline_s: float | None = None,
        slowest_s: float | None = None,
    ) -> None:
        self.interval_s = validate_interval(interval_s)
        self._slowest_s = slowest_s
        jitter = validate_jitter(jitter)
        if max_failures < 1:
            raise ConfigurationError(f"max_failures={max_failures!r}; give 1 or more")
        self._slots = [_Slot(s) for s in sensors]
        self._sink = sink
        self._clock = clock
        self._jitter = jitter
        self._random = random.Random(seed)
        self._max_failures = max_failures
        self._slow_read_s = slow_read_s
        self._edge_deadline_s = edge_deadline_s
        self._edge = edge.EdgeReader(self._read_if_free, self._deliver)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._sink_warned = False
        self._warn_lock = threading.Lock()
        self.ticks = 0

    @property
    def health(self) -> dict[str, SensorHealth]:
        """How each sensor has fared so far, by sensor name."""
        return {slot.sensor.name: slot.health() for slot in self._slots}

    @property
    def running(self) -> bool:
        """Whether the background thread is alive (in this process)."""
        return self._thread is not None and self._thread.is_alive() and os.getpid() == self._pid

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="energy-tracker.sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop the thread; returns whether it ended within ``timeout_s`` (default 1 s, whatever the interval).

        A read in progress is not interrupted: a sensor hung in its driver is left behind on
        the daemon thread rather than blocking the caller, with one warning.
        """
        self._stop.set()
        if os.getpid() == self._pid:
            self._edge.close()
        thread = self._thread
        if thread is None or os.getpid() != self._pid or thread is threading.current_thread():
            return True
        thread.join(1.0 if timeout_s is None else timeout_s)  # a tick of healthy reads takes milliseconds
        if not thread.is_alive():
            return True
        for slot in (s for s in self._slots if s.lock.locked()):
            self._warn_once(slot, "energy-tracker: reading %s has not returned; leaving it behind", slot.sensor.name)
        return False

    def tick(self, only: Collection[str] | None = None) -> list[Reading]:
        """Read every enabled sensor once (or those named in ``only``) and hand the batch to the sink; returns it."""
        if os.getpid() != self._pid:
            return []  # a forked child (a DataLoader worker) inherits no sampler
        slots = self._slots if only is None else [s for s in self._slots if s.sensor.name in only]
        readings = self._deliver([r for r in map(self._read_waiting, slots) if r is not None])
        self.ticks += 1  # after the sink has the readings: a tick counted is a tick done
        if self._slowest_s is not None:
            self._retune(self._slowest_s)
        return readings

    def _retune(self, slowest_s: float) -> None:
        wanted = [w for slot in self._slots if (w := getattr(slot.sensor, "max_interval_s", None))]
        self.interval_s = max(MIN_INTERVAL_S, min([slowest_s, *wanted]))

    def sample_now(self, reverse: bool = False) -> list[Reading]:
        """Read every sensor that is free, healthy and fast, within the edge deadline; hand them to the sink.

        The reads run on an edge thread (see :mod:`tracker.measure.edge`); this returns the
        readings made within ``edge_deadline_s`` (a later one reaches the sink as an ordinary
        reading). A sensor being read by the background thread, failing, or once slower than
        ``slow_read_s`` is skipped: the caller never waits on hardware. ``reverse`` reads them
        in the opposite order (the last sensor first).
        """
        if os.getpid() != self._pid:
            return []
        slots = [s for s in self._slots if not (s.consecutive or s.slow)]
        if reverse:
            slots.reverse()
        deadline = edge.EDGE_DEADLINE_S if self._edge_deadline_s is None else self._edge_deadline_s
        return self._deliver(self._edge.read(slots, deadline))

    def close_sensors(self) -> None:
        """Close every sensor, once the thread has stopped; errors become debug messages.

        While a read is still hung in its driver (see :meth:`stop`), closing would wait behind it (a
        driver holds its lock through the hang, and ``nvmlShutdown`` needs it): the sensors are then
        closed on a daemon thread once that read returns, and the caller does not wait.
        """
        if any(slot.lock.locked() for slot in self._slots):
            closer = threading.Thread(target=self._close_after_reads, name="energy-tracker.close", daemon=True)
            closer.start()
            return
        self._close_all()

    def _close_after_reads(self) -> None:
        for slot in self._slots:
            with slot.lock:  # the hung read returns first
                pass
        self._close_all()

    def _close_all(self) -> None:
        for slot in self._slots:
            try:
                slot.sensor.close()
            except Exception as exc:  # closing is best effort: a broken driver must not fail stop()
                logger.debug("closing %s failed: %s", slot.sensor.name, exc)

    def _run(self) -> None:
        origin, interval = self._clock(), self.interval_s
        slot = 0
        while not self._stop.wait(max(0.0, self.deadline(origin, slot) - self._clock())):
            try:
                self.tick()
            except Exception:  # the thread must survive anything; at shutdown, modules vanish
                if sys.is_finalizing():
                    return
                logger.debug("sampler tick failed", exc_info=True)
            if self.interval_s != interval:  # retuned: slots of the new length from now on
                origin, interval, slot = self._clock(), self.interval_s, 0
                continue
            # The next slot, or the current one if we fell behind (suspend, stall): no backlog of ticks.
            slot = max(slot + 1, int((self._clock() - origin) / self.interval_s) + 1)

    def deadline(self, origin_s: float, slot: int) -> float:
        """When to read in slot ``slot`` (0-based) of a sampler started at ``origin_s``, in clock seconds."""
        offset = 0.5 + self._jitter * (self._random.random() - 0.5)
        return origin_s + (slot + offset) * self.interval_s

    def _deliver(self, readings: list[Reading]) -> list[Reading]:
        if not readings:
            return readings
        try:
            self._sink(readings)
        except Exception as exc:  # a failing sink (say, a full disk) must not stop sampling
            if not self._sink_warned:
                self._sink_warned = True
                logger.warning("energy-tracker: handling readings failed (%s); measuring continues", exc)
        return readings

    def _read_waiting(self, slot: _Slot) -> Reading | None:
        if not slot.due(self._clock()):
            return None
        with slot.lock:
            return self._read(slot)

    def _read_if_free(self, slot: _Slot) -> Reading | None:
        if slot.consecutive or slot.slow or not slot.lock.acquire(blocking=False):
            return None
        try:
            return self._read(slot)
        finally:
            slot.lock.release()

    def _read(self, slot: _Slot) -> Reading | None:
        started = time.perf_counter()
        try:
            reading = slot.sensor.read()
        except Exception as exc:  # any sensor error, typed or not, becomes a status, never the caller's
            self._failed(slot, exc)
            return None
        finally:
            self._timed(slot, time.perf_counter() - started)
        if slot.consecutive:
            self._recovered(slot)
        return reading

    def _recovered(self, slot: _Slot) -> None:
        logger.info(
            "energy-tracker: %s is back after %d failed reads (%s)", slot.sensor.name, slot.consecutive, slot.last_error
        )
        slot.consecutive, slot.lost, slot.retry_at = 0, False, float("-inf")
        slot.recoveries += 1

    def _timed(self, slot: _Slot, elapsed_s: float) -> None:
        if elapsed_s > self._slow_read_s and not slot.slow:
            slot.slow = True
            logger.debug("%s is slow; reading it in the background only", slot.sensor.name)
        if elapsed_s > HUNG_READ_S:
            self._warn_once(
                slot,
                "energy-tracker: reading %s took %.3g s; it is read in the background only from now on",
                slot.sensor.name,
                elapsed_s,
            )

    def _warn_once(self, slot: _Slot, message: str, *args: object) -> None:
        """Log ``message`` unless this sensor has already had its one warning (threads race here)."""
        with self._warn_lock:
            if slot.warned:
                return
            slot.warned = True
        logger.warning(message, *args)

    def _failed(self, slot: _Slot, exc: Exception) -> None:
        slot.consecutive += 1
        slot.failures += 1
        slot.last_error = f"{type(exc).__name__}: {exc}"
        slot.lost = isinstance(exc, SensorGone)
        if slot.lost:
            wait_s = BACKOFF_MAX_S
        elif slot.consecutive < self._max_failures:
            wait_s = 0.0  # a single bad read is common under load: retry at the next tick
        else:
            wait_s = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (slot.consecutive - self._max_failures))
        slot.retry_at = self._clock() + wait_s
        self._warn_once(
            slot,
            "energy-tracker: reading %s failed (%s); %s",
            slot.sensor.name,
            slot.last_error,
            f"the device is gone; probing it again every {BACKOFF_MAX_S:g} s" if slot.lost
            else f"retrying with back-off (up to {BACKOFF_MAX_S:g} s apart) for the rest of the run",
        )  # fmt: skip
