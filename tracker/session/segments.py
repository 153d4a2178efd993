"""Non-overlapping segments of a run: epochs, phases, and the energy outside them.

Segments form a stack: the energy between two boundaries goes to the segment on top, so a
validation phase inside a training epoch is never counted twice. The bottom of the stack is
the ``other`` segment (setup, checkpoints, the time between epochs), so no energy is dropped.
"""

from __future__ import annotations

from typing import Any

from tracker.logs.schema import TRAIN
from tracker.measure.meter import Snapshot, Usage


class Segment:
    """An open epoch or phase and the energy attributed to it so far.

    Attributes:
        epoch: the epoch index (``None`` outside epochs).
        phase: ``train``, ``validation``, ... or ``other``.
        opened_utc: ISO UTC time it was opened.
        samples: items processed, if counted.
        metrics: the user's metrics for its row.
        usage: energy while it was on top of the stack.
        active_s: seconds it was on top of the stack.
        peaks_w: highest power per sensor while on top, W.
        since: the snapshot when it last came on top (``None`` while another segment is on top).
        since_s: the clock reading then, s.
        last_utc: ISO UTC time it was last on top.
        stale_at_edges: by sensor, the edges at which it came on top without that sensor's reading
            (the edges at which it left the top are counted in ``usage``).
        first_step, last_step: global numbers of the first and last optimizer step counted in it
            (``None`` before its first).
        opened_s: the clock when it was first put on the stack, s.
        note: what its row's ``notes`` say of it beside the tracker's own (a resumed epoch), or ``""``.
    """

    __slots__ = (
        "epoch", "phase", "opened_utc", "samples", "metrics", "usage", "active_s", "peaks_w", "since", "since_s",
        "last_utc", "stale_at_edges", "first_step", "last_step", "opened_s", "note",
    )  # fmt: skip

    def __init__(
        self, epoch: int | None, phase: str, opened_utc: str, samples: int | None = None, note: str = ""
    ) -> None:
        self.epoch = epoch
        self.phase = phase
        self.opened_utc = opened_utc
        self.samples = samples
        self.metrics: dict[str, Any] = {}
        self.usage = Usage()
        self.active_s = 0.0
        self.peaks_w: dict[str, float] = {}
        self.since: Snapshot | None = None
        self.since_s = 0.0
        self.last_utc = ""
        self.stale_at_edges: dict[str, int] = {}
        self.first_step: int | None = None
        self.last_step: int | None = None
        self.opened_s: float | None = None
        self.note = note

    def activate(self, snapshot: Snapshot, now_s: float, stale: frozenset[str] = frozenset()) -> None:
        """It comes on top of the stack at this boundary, where the sensors ``stale`` were not read in time."""
        self.since, self.since_s = snapshot, now_s
        if self.opened_s is None:
            self.opened_s = now_s
        for sensor in stale:
            self.stale_at_edges[sensor] = self.stale_at_edges.get(sensor, 0) + 1

    def deactivate(self, snapshot: Snapshot, now_s: float, peaks_w: dict[str, float], now_utc: str) -> None:
        """It leaves the top of the stack at this boundary: fold in the energy since it came on top."""
        if self.since is None:
            return
        self.usage = self.usage + (snapshot - self.since)
        self.active_s += now_s - self.since_s
        for sensor, watts in peaks_w.items():
            self.peaks_w[sensor] = max(self.peaks_w.get(sensor, 0.0), watts)
        self.since = None
        self.last_utc = now_utc

    def add_samples(self, count: int) -> None:
        """Count ``count`` more items processed."""
        self.samples = (self.samples or 0) + count

    def count_step(self, number: int) -> None:
        """Count the optimizer step numbered ``number`` (global) in it."""
        if self.first_step is None:
            self.first_step = number
        self.last_step = number

    def so_far(self, snapshot: Snapshot, now_s: float, now_utc: str) -> Segment:
        """A copy closed at this moment (its energy and seconds up to ``snapshot``); this one is unchanged."""
        copy = Segment(self.epoch, self.phase, self.opened_utc, self.samples, self.note)
        for name in ("usage", "active_s", "since", "since_s", "last_utc", "first_step", "last_step", "opened_s"):
            setattr(copy, name, getattr(self, name))
        for name in ("metrics", "peaks_w", "stale_at_edges"):  # copies: the training thread goes on adding to them
            setattr(copy, name, dict(getattr(self, name)))
        copy.deactivate(snapshot, now_s, {}, now_utc)
        return copy

    def continued(self, opened_utc: str) -> Segment:
        """A fresh segment for the same epoch and phase, going on where this one is cut (nothing counted yet)."""
        return Segment(self.epoch, self.phase, opened_utc)

    @property
    def label(self) -> str:
        """How users name it: ``epoch 3``, ``validation of epoch 3``, ``test``."""
        if self.phase == TRAIN and self.epoch is not None:
            return f"epoch {self.epoch}"
        return self.phase if self.epoch is None else f"{self.phase} of epoch {self.epoch}"
