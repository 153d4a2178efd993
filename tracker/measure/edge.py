"""Readings at epoch and phase edges, with a deadline: the training thread never waits on hardware.

A driver can hang inside a read (an NVML call during Xid recovery, a stalled sysfs file) for
seconds, and no Python code can interrupt it. So the training thread never makes the read
itself: :class:`EdgeReader` hands the edge's reads to a small daemon thread
(``energy-tracker.edge``) and waits for them at most ``deadline_s``. Readings made in time are
returned and describe the edge (the deadline runs from the first read: a thread waiting for a
busy CPU is not waiting on hardware); a read still in flight at the deadline is left to finish on that
thread, and its reading is handed to ``late`` (an ordinary reading). While one edge thread is
stuck in a hung read, the next edge gets another thread (at most ``MAX_THREADS``); when they are
all stuck, the edge gets no readings at all and the caller falls back on the background ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tracker.sensors import Reading

# The longest an edge waits for its readings, s. A healthy NVML or sysfs read takes 10-100 µs;
# waking a thread and getting the answer back takes well under 1 ms on an idle machine.
EDGE_DEADLINE_S = 0.01
MAX_THREADS = 4
# The longest an edge waits for its thread to start reading (a loaded CPU), s; the deadline then runs.
PICKUP_S = 0.1
# An edge thread idle this long ends (epochs are minutes apart; a thread starts in ~0.1 ms).
IDLE_EXIT_S = 1.0

Read = Callable[[Any], "Reading | None"]
Late = Callable[[list[Reading]], None]


class _Job:
    """One edge's reads: its slots, the readings made so far, and whether its caller stopped waiting."""

    __slots__ = ("slots", "readings", "abandoned", "done", "started")

    def __init__(self, slots: list[Any]) -> None:
        self.slots = slots
        self.readings: list[Reading] = []
        self.abandoned = False
        self.done = threading.Event()
        self.started = threading.Event()


class _Worker:
    """One edge thread: waits for a job, reads its slots in order, then waits again."""

    def __init__(self, owner: EdgeReader) -> None:
        self.owner = owner
        self.job: _Job | None = None
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="energy-tracker.edge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            if not self.wake.wait(IDLE_EXIT_S) and self.owner.retire(self):
                return
            self.wake.clear()
            job = self.job
            if job is None:  # closed
                return
            self.owner.work(job)
            self.job = None
            again = self.owner.idle(self)
            job.done.set()
            if not again:
                return


class EdgeReader:
    """Makes the reads of an edge on its own threads, and returns those done within a deadline.

    Args:
        read: reads one slot without blocking on another thread's read (``None``: skipped or failed).
        late: receives a reading that came after its edge's deadline.
    """

    def __init__(self, read: Read, late: Late) -> None:
        self._read = read
        self._late = late
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._closed = False

    def read(self, slots: Sequence[Any], deadline_s: float) -> list[Reading]:
        """Read ``slots``; returns the readings made within ``deadline_s`` seconds, in slot order."""
        job = _Job(list(slots))
        if not job.slots:  # a thread taken for nothing would never be handed back: after MAX_THREADS, no edge read
            return []
        worker = self._take()
        if worker is None:
            return []
        worker.job = job
        worker.wake.set()
        # The deadline runs from the first read: waiting for the thread to be scheduled is the CPU's
        # doing, not the hardware's (up to PICKUP_S on a machine too busy to run it).
        if not job.done.wait(deadline_s) and not job.started.is_set() and job.started.wait(PICKUP_S):
            job.done.wait(deadline_s)
        with self._lock:
            job.abandoned = True
            return list(job.readings)

    def work(self, job: _Job) -> None:
        """Read a job's slots (on an edge thread); a reading after the deadline goes to ``late``."""
        job.started.set()
        for slot in job.slots:
            reading = self._read(slot)
            if reading is None:
                continue
            with self._lock:
                late = job.abandoned
                if not late:
                    job.readings.append(reading)
            if late:
                self._late([reading])

    def idle(self, worker: _Worker) -> bool:
        """``worker`` has finished its job; returns whether it should wait for another (not closed)."""
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
            return not self._closed

    def retire(self, worker: _Worker) -> bool:
        """Whether idle ``worker`` may end: true unless an edge has just taken it."""
        with self._lock:
            if worker not in self._idle:
                return False
            self._idle.remove(worker)
            self._all.remove(worker)
            return True

    def close(self, timeout_s: float = 0.1) -> None:
        """Stop the idle threads (one stuck in a hung read ends when the read returns)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.job = None
            worker.wake.set()
        for worker in idle:
            worker.thread.join(timeout_s)

    def _take(self) -> _Worker | None:
        with self._lock:
            if self._closed:
                return None
            if self._idle:
                return self._idle.pop()
            if len(self._all) >= MAX_THREADS:
                return None  # every edge thread is stuck in a hung read
            worker = _Worker(self)
            self._all.append(worker)
            return worker
