"""The measuring side of a session: sampler and meter connected, and the stack of open segments.

:class:`Timeline` feeds the sampler's readings into the meter under one lock, reads both at every
boundary (an epoch or phase opened or closed) so that boundaries are exact, and moves the energy
between two boundaries to the segment on top of the stack (see :mod:`tracker.session.segments`). It keeps
the stack's rules: one epoch at a time, each index once, no phase inside itself. Each closed
segment goes to a callback; what becomes of it (rows, files, other ranks) is the session's business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

from tracker.errors import ConfigurationError, UsageError
from tracker.logs.schema import (
    COMPLETE,
    INTERRUPTED,
    OTHER_PHASE,
    PARTIAL,
    RESERVED_PHASES,
    TRAIN,
    VALIDATION,
    check_metric_names,
)
from tracker.measure.edge import EDGE_DEADLINE_S
from tracker.measure.meter import Meter, SensorTotals, Snapshot, power_cap_w
from tracker.measure.sampler import BACKGROUND, FAILING, MANUAL, Sampler
from tracker.sensors import GPU, Clock, Reading, Sensor
from tracker.session.accounting import DeviceUsage
from tracker.session.segments import Segment

MIN_OTHER_ROW_S = 1.0

OnClose = Callable[[Segment, str], None]
OnReadings = Callable[[list[Reading]], None]


class Sampling(NamedTuple):
    """How a tracker's sensors are being read.

    Attributes:
        mode: ``"background"`` (a thread reads them every interval) or ``"manual"`` (the caller does).
        running: whether a background thread is reading them now (in this process).
        ticks: readings of the sensors at ``interval_s`` made so far (by the thread or ``sample()``).
        lanes: the sensors read together and their seconds between readings now, ``(interval_s, names)``,
            the lane at ``interval_s`` first (it may be empty), then faster ones (polled GPU power, whose
            interval follows its driver's refresh period).
    """

    mode: str
    running: bool
    ticks: int
    lanes: tuple[tuple[float, tuple[str, ...]], ...]

    @property
    def intervals_s(self) -> dict[str, float]:
        """Each sensor's seconds between readings now, by sensor name."""
        return {name: interval_s for interval_s, names in self.lanes for name in names}


class Timeline:
    """Owns the sampler, the meter, the lock between them and the stack of open segments.

    The bottom of the stack is the ``other`` segment (energy outside every epoch and phase); it is
    handed on once it holds ``MIN_OTHER_ROW_S`` (1 s) or more, and at the end of the run.

    Args:
        sensors: what to read.
        interval_s: seconds between background readings.
        clock: monotonic clock in seconds (the sensors' clock).
        jitter: the sampler's jitter, a fraction of each slot, 0 to 1.
        now_utc: the wall clock as ISO 8601 UTC text, for the segments' start and end times.
        on_close: called with each closed segment and its status (``complete`` or ``interrupted``).
        on_readings: called with each batch of readings after the meter has it (the power trace);
            on the sampler's thread or the caller's.
        row_every_n_steps: cut the open epoch's row once it holds steps up to a multiple of this many
            (``None``: no cut by steps).
        row_every_s: cut the open epoch's row at the first step this many seconds after it opened
            (``None``: no cut by time).
        edge_deadline_s: the longest a boundary waits for its sensor reads, s.
        manual: start no background thread; the caller reads the sensors with :meth:`sample`.
    """

    def __init__(
        self,
        sensors: Sequence[Sensor],
        interval_s: float,
        *,
        clock: Clock,
        jitter: float,
        now_utc: Callable[[], str],
        on_close: OnClose,
        on_readings: OnReadings,
        row_every_n_steps: int | None = None,
        row_every_s: float | None = None,
        edge_deadline_s: float = EDGE_DEADLINE_S,
        manual: bool = False,
    ) -> None:
        self.sensors = sensors
        self.lock = threading.RLock()
        caps = {s.name: cap for s in sensors if (cap := power_cap_w(s.info)) is not None}
        self.meter = Meter(interval_s, caps_w=caps)
        # GPUs last in each lane: an opening boundary reads them last, a closing one first (see boundary()).
        lanes = lane_intervals(sorted(sensors, key=lambda s: s.kind == GPU), interval_s)
        common = {"clock": clock, "jitter": jitter, "edge_deadline_s": edge_deadline_s}
        self.sampler = Sampler(lanes.pop(interval_s, []), self._on_readings, interval_s=interval_s, **common)
        # Sensors that must be read more often than interval_s (polled GPU power) get a sampler of their own,
        # whose interval follows what they ask for as they run (a polled GPU: its driver's refresh period).
        self.fast_lanes = [
            Sampler(members, self._on_readings, interval_s=lane_s, slowest_s=interval_s, **common)
            for lane_s, members in sorted(lanes.items())
        ]
        self.manual = manual
        self.stack: list[Segment] = []
        self._at_boundary = False
        self.stale: frozenset[str] = frozenset()
        self.last_epoch: int | None = None
        self._epochs_seen: set[int] = set()
        self._clock = clock
        self._now_utc = now_utc
        self._on_close = on_close
        self._tap = on_readings
        self._every_n, self._every_s = row_every_n_steps, row_every_s
        self.steps = 0  # optimizer steps counted in the run (a resumed run's before it included)
        self._epoch: Segment | None = None  # the open epoch's current row

    # ---- the user's segments ------------------------------------------------------------------------------------

    def begin_epoch(self, index: int, samples: Any, note: str = "") -> None:
        """Open epoch ``index`` on top of the stack (``note``: for its row's ``notes``).

        Raises:
            UsageError: an epoch is already open, or ``index`` was used before.
            ConfigurationError: ``samples`` is neither ``None`` nor a non-negative int.
        """
        open_epoch = next((s for s in self.stack if s.phase == TRAIN), None)
        if open_epoch is not None:
            raise UsageError(f"epoch({index}) opened while {open_epoch.label} is still open; close it first")
        if index in self._epochs_seen:
            raise UsageError(f"epoch({index}) was already measured in this run; epoch indices must be unique")
        segment = Segment(index, TRAIN, self._now_utc(), check_samples(samples), note)
        self._epochs_seen.add(index)
        self.push(segment)
        self._epoch = segment

    def step(self, samples: int | None = None, number: int | None = None) -> None:
        """Count one optimizer step (``number``, else the next) and its ``samples`` in the open epoch's row.

        With no epoch open, the innermost open segment counts it. On the caller's thread this is a
        counter increment; only when the open epoch's row is due (``row_every_n_steps``,
        ``row_every_s``) and on top of the stack is it cut, at an edge read as an epoch's edges are.

        Raises:
            ConfigurationError: ``samples`` is neither ``None`` nor a non-negative int.
        """
        self.steps = n = self.steps + 1 if number is None else number
        segment = self._epoch or self.stack[-1]
        segment.count_step(n)
        if samples is not None:
            segment.add_samples(check_samples(samples))
        if segment is self._epoch and self.stack[-1] is segment and self._due(segment, n):
            self.cut()

    def _due(self, segment: Segment, step: int) -> bool:
        """Whether the epoch's row ``segment`` ends with ``step``: a multiple of the steps, or the time, reached."""
        every_n, every_s = self._every_n, self._every_s
        if every_n is not None and step >= ((segment.first_step or step) - 1) // every_n * every_n + every_n:
            return True
        return every_s is not None and self._clock() - (segment.opened_s or 0.0) >= every_s

    def cut(self) -> None:
        """Write the open epoch's row (on top of the stack) as ``partial``; the epoch goes on in a fresh row.

        The edge is read first, as when an epoch closes; the bookkeeping after it is the fresh row's.
        """
        snapshot, now_s, peaks = self.boundary()
        segment = self.stack[-1]
        segment.deactivate(snapshot, now_s, peaks, self._now_utc())
        fresh = segment.continued(self._now_utc())
        self.stack[-1] = self._epoch = fresh
        fresh.activate(snapshot, now_s, self.stale)
        self._on_close(segment, PARTIAL)

    def begin_phase(self, name: str, samples: Any, epoch: int | None = None) -> None:
        """Open phase ``name`` on top of the stack, in the innermost open epoch if any (else ``epoch``).

        Raises:
            UsageError: a phase of that name is already open.
            ConfigurationError: ``samples`` is neither ``None`` nor a non-negative int.
        """
        if any(s.phase == name for s in self.stack):
            raise UsageError(f"phase({name!r}) opened inside itself; close the open {name!r} phase first")
        inside = next((s.epoch for s in reversed(self.stack) if s.epoch is not None), None)
        if inside is None and epoch is None and name == VALIDATION:
            epoch = self.last_epoch  # validating after `with energy.epoch(i):` closed validates epoch i
        self.push(Segment(epoch if inside is None else inside, name, self._now_utc(), check_samples(samples)))

    def end(self, status: str) -> None:
        """Close the innermost open epoch or phase.

        Raises:
            ConfigurationError: ``status`` is neither ``"complete"`` nor ``"interrupted"``.
            UsageError: nothing is open.
        """
        check_status(status)
        if len(self.stack) < 2:
            raise UsageError("end() called with no epoch or phase open")
        self.close_top(status)

    def add_samples(self, count: int) -> None:
        """Count ``count`` more items in the innermost open epoch or phase (none open: nothing).

        Raises:
            ConfigurationError: ``count`` is not a non-negative int.
        """
        check_samples(count)
        if len(self.stack) > 1:
            self.stack[-1].add_samples(count)

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Add ``metrics`` to the innermost open epoch or phase.

        Raises:
            UsageError: no epoch or phase is open.
            ConfigurationError: ``metrics`` is not a mapping, or a name clashes with a tracker column.
        """
        if not isinstance(metrics, Mapping):
            raise ConfigurationError(f"log_metrics({metrics!r}): give a dict of metric names and values")
        if len(self.stack) < 2:
            raise UsageError("log_metrics() called outside an epoch or phase; call it inside `with energy.epoch(i):`")
        named = {str(key): value for key, value in metrics.items()}  # a CSV header holds text: 1 is "1"
        if len(named) < len(metrics):
            twice = sorted({str(k) for k in metrics if sum(str(j) == str(k) for j in metrics) > 1})
            raise ConfigurationError(f"log_metrics(): keys {twice} name the same column twice (e.g. 1 and '1'); "
                                     "give each metric one name")  # fmt: skip
        check_metric_names(named)
        self.stack[-1].metrics.update({name: plain_number(value) for name, value in named.items()})

    # ---- boundaries ---------------------------------------------------------------------------------------------

    def open(self, opened_utc: str) -> float:
        """Take the first readings and open the ``other`` segment; returns the clock then, s."""
        snapshot, now_s, _ = self.boundary(opening=True)
        self.stack = [Segment(None, OTHER_PHASE, opened_utc)]
        self.stack[0].activate(snapshot, now_s, self.stale)
        return now_s

    def boundary(self, opening: bool = False) -> tuple[Snapshot, float, dict[str, float]]:
        """Read every sensor now; returns the meter's snapshot, the clock (s) and the peaks since (W).

        An epoch's edges are the instants control returns to the user's code and leaves it: an
        opening boundary reads the GPUs last (the fast lanes after the main one, GPUs last within
        it), a closing one reads them first, so the other sensors' reads fall outside the epoch.
        """
        with self.lock:
            self._at_boundary = True  # the readings that sample_now hands to _on_readings, on this thread
            try:
                samplers = self.samplers if opening else self.samplers[::-1]
                read = {r.sensor for sampler in samplers for r in sampler.sample_now(reverse=not opening)}
            finally:
                self._at_boundary = False
            # Not read in time: its last background reading stands in, for both segments at this edge.
            self.stale = frozenset(s.name for s in self.sensors if s.name not in read)
            now_s, health = self._clock(), self.health
            for sensor in self.stale:
                self.meter.stale_edge(sensor, now_s, out=health[sensor].status == FAILING)
            return self.meter.snapshot(), now_s, self.meter.take_peaks_w()

    def push(self, segment: Segment) -> None:
        """Put ``segment`` on top: the energy from the last reading on is its own.

        The bookkeeping (the ``other`` row handed on, written to disk) happens between two readings,
        so that the last thing before control returns to the user's code is the reading that opens
        the segment; the time it took goes to the ``other`` segment, never to the new one.
        """
        snapshot, now_s, peaks = self.boundary(opening=True)
        self.stack[-1].deactivate(snapshot, now_s, peaks, self._now_utc())
        if len(self.stack) == 1 and self.flush_other(force=False):
            # The fresh ``other`` segment holds the bookkeeping's time, up to the reading that opens ``segment``.
            self.stack[0].activate(snapshot, now_s, self.stale)
            snapshot, now_s, peaks = self.boundary(opening=True)
            self.stack[0].deactivate(snapshot, now_s, peaks, self._now_utc())
        self.stack.append(segment)
        segment.activate(snapshot, now_s, self.stale)

    def close_top(self, status: str) -> None:
        """Close the segment on top and hand it on with ``status``: the reading first, the bookkeeping after."""
        snapshot, now_s, peaks = self.boundary()
        segment = self.stack.pop()
        segment.deactivate(snapshot, now_s, peaks, self._now_utc())
        self.stack[-1].activate(snapshot, now_s, self.stale)
        if segment.phase == TRAIN:
            self.last_epoch = segment.epoch
        if segment is self._epoch:
            self._epoch = None
        self._on_close(segment, status)

    def close_all(self) -> None:
        """Close every open epoch and phase as ``interrupted``, then hand on the ``other`` segment."""
        while len(self.stack) > 1:
            self.close_top(INTERRUPTED)
        self.flush_other(force=True)

    def flush_other(self, force: bool) -> bool:
        """Hand on the ``other`` segment when due (``force``: at the end, if it holds anything); whether it was."""
        other = self.stack[0]
        if force and other.since is not None:
            snapshot, now_s, peaks = self.boundary()
            other.deactivate(snapshot, now_s, peaks, self._now_utc())
        due = other.active_s >= MIN_OTHER_ROW_S or (force and other.active_s > 0)
        if due:
            self._on_close(other, COMPLETE)
            fresh = Segment(None, OTHER_PHASE, self._now_utc())
            if other.since is not None:
                fresh.activate(other.since, other.since_s)
            self.stack[0] = fresh
            return True
        return False

    def read_now(self) -> None:
        """Take a reading of every sensor now, as an edge does (never waiting on a busy or slow one), edge or not."""
        for sampler in self.samplers:
            sampler.sample_now()

    def so_far(self, first: int = 0) -> list[Segment]:
        """The open segments from the ``first`` (``other`` is 0), each a copy closed now (energy and seconds so far).

        Safe on any thread.
        """
        with self.lock:
            snapshot, now_s, now_utc = self.meter.snapshot(), self._clock(), self._now_utc()
            return [segment.so_far(snapshot, now_s, now_utc) for segment in self.stack[first:]]

    # ---- sensors ------------------------------------------------------------------------------------------------

    @property
    def samplers(self) -> list[Sampler]:
        """The main sampler (every ``interval_s``) and the fast lanes, if any."""
        return [self.sampler, *self.fast_lanes]

    @property
    def health(self) -> dict[str, Any]:
        """How each sensor has fared, by sensor name, whichever sampler reads it."""
        return {name: health for sampler in self.samplers for name, health in sampler.health.items()}

    @property
    def sampling(self) -> Sampling:
        """How the sensors are being read now: the mode, whether a thread runs, ticks done, each sensor's interval."""
        return Sampling(
            mode=MANUAL if self.manual else BACKGROUND,
            running=any(sampler.running for sampler in self.samplers),
            ticks=self.sampler.ticks,
            lanes=tuple((sampler.interval_s, tuple(sampler.health)) for sampler in self.samplers),
        )

    def start_samplers(self) -> None:
        """Start the background threads (none in manual mode)."""
        if self.manual:
            return
        for sampler in self.samplers:
            sampler.start()

    def sample(self, names: Collection[str] | None = None) -> list[Reading]:
        """Read the sensors named (default: all) now, on this thread, as a background tick does; returns the readings.

        Raises:
            ConfigurationError: a name is not one of the sensors'.
        """
        unknown = sorted(set(names or ()) - {s.name for s in self.sensors})
        if unknown:
            known = [s.name for s in self.sensors]
            raise ConfigurationError(f"sample({unknown[0]!r}): no such sensor; give some of {known}, or none for all")
        return [
            reading
            for sampler in self.samplers
            if names is None or not set(names).isdisjoint(sampler.health)
            for reading in sampler.tick(names)
        ]

    def stop_sampler(self) -> None:
        """Stop the background threads and close the sensors."""
        for sampler in self.samplers:
            sampler.stop()
        for sampler in self.samplers:
            sampler.close_sensors()

    def device_usages(self, segment: Segment, host: str, rank: int) -> list[DeviceUsage]:
        """What each sensor measured during ``segment``, as seen by ``rank`` on ``host``."""
        health = self.health
        return [
            DeviceUsage(
                sensor=s.name,
                kind=s.kind,
                method=s.method,
                device=str(s.info.get("name") or s.info.get("model", "")),
                uuid=str(s.info.get("uuid", "")),
                host=host,
                rank=rank,
                status=health[s.name].status,
                totals=segment.usage.sensors.get(s.name, _EMPTY)
                + SensorTotals(stale_edges=segment.stale_at_edges.get(s.name, 0)),
                peak_w=segment.peaks_w.get(s.name),
            )
            for s in self.sensors
        ]

    def _on_readings(self, readings: list[Reading]) -> None:
        with self.lock:
            self.meter.add_all(readings, boundary=self._at_boundary)
        self._tap(readings)


_EMPTY = SensorTotals()


def is_count(value: Any) -> bool:
    """Whether ``value`` is a non-negative int (an index, a step number, a count), ``True`` and ``False`` not."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_epoch_index(value: Any) -> int:
    """``value`` if it is an epoch index: a non-negative int.

    Raises:
        ConfigurationError: it is not.
    """
    if not is_count(value):
        raise ConfigurationError(f"epoch index {value!r}: give a non-negative int (0, 1, 2, ...)")
    return value


def check_phase_name(value: Any) -> str:
    """``value`` if the user may name a phase so: a non-empty str other than the tracker's own.

    Raises:
        ConfigurationError: it is not.
    """
    if not isinstance(value, str) or not value or value in RESERVED_PHASES:
        raise ConfigurationError(
            f"phase name {value!r}: give a name such as 'validation', 'test' or 'inference' "
            f"({TRAIN!r} is the epoch itself, {OTHER_PHASE!r} is what lies outside epochs)"
        )
    return value


def lane_intervals(sensors: Sequence[Sensor], interval_s: float) -> dict[float, list[Sensor]]:
    """Sensors grouped by how often they are read: ``interval_s``, or faster where a sensor needs it.

    A sensor may declare ``max_interval_s`` (polled GPU power: from 0.01 s, then half its driver's
    refresh period): then it is read at the smaller of that and ``interval_s``, so a user who reads
    counters every second for less overhead does not slow the polled GPUs down with them. The lane
    is grouped by what the sensors ask for at the start; its sampler then follows them.
    """
    lanes: dict[float, list[Sensor]] = {interval_s: []}
    for sensor in sensors:
        most = getattr(sensor, "max_interval_s", None)
        lane = min(interval_s, most) if most else interval_s
        lanes.setdefault(lane, []).append(sensor)
    return lanes


def plain_number(value: Any) -> Any:
    """A one-element tensor or array as its number (``tensor(0.5)`` → ``0.5``); anything else unchanged."""
    item = getattr(value, "item", None)
    if item is None or isinstance(value, (int, float, str)):
        return value
    try:
        return item()
    except (ValueError, RuntimeError, TypeError):  # more than one element: written as given
        return value


def check_status(value: Any) -> str:
    """``value`` if it is a segment status, ``"complete"`` or ``"interrupted"``.

    Raises:
        ConfigurationError: it is not.
    """
    if value not in (COMPLETE, INTERRUPTED):
        raise ConfigurationError(f"status={value!r}: give {COMPLETE!r} or {INTERRUPTED!r}")
    return value


def check_samples(value: Any) -> int | None:
    """``value`` if it is a count of items processed: ``None`` or a non-negative int.

    Raises:
        ConfigurationError: it is not.
    """
    if value is None:
        return None
    if not is_count(value):
        raise ConfigurationError(f"samples={value!r}: give the number of items processed as a non-negative int")
    return value


def power_rows(
    readings: Sequence[Reading], started_s: float, host: str, rank: int, now_utc: str
) -> list[tuple[Any, ...]]:
    """``power.csv`` rows (:data:`~tracker.logs.schema.POWER_COLUMNS`) of the readings that carry a value.

    Args:
        readings: one batch from the sampler.
        started_s: the run's start on the monotonic clock, s; ``elapsed_s`` counts from it.
        host: the machine that measured.
        rank: the process that measured.
        now_utc: ISO 8601 UTC time of the batch, for ``time_utc``.

    Returns:
        ``(time_utc, elapsed_s, host, rank, sensor, power_w, energy_j)`` tuples, in s, W and J.
    """
    return [
        (now_utc, r.time_s - started_s, host, rank, r.sensor, r.power_w, r.energy_j)
        for r in readings
        if r.power_w is not None or r.energy_j is not None
    ]
