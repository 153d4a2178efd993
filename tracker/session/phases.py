"""Epochs and phases: the methods of :class:`~tracker.EnergyTracker` that say what the energy is for.

They live in :class:`EpochsAndPhases`, a base class of ``EnergyTracker``, so that each module stays
small; the rules of the segment stack they open and close (one epoch at a time, each index once,
no phase inside itself) are :class:`~tracker.session.timeline.Timeline`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from tracker.errors import ConfigurationError, UsageError
from tracker.logs.schema import COMPLETE, INTERRUPTED, RESERVED_PHASES

if TYPE_CHECKING:
    from tracker.session.timeline import Timeline

T = TypeVar("T", bound="EpochsAndPhases")


class EpochsAndPhases:
    """``epoch``, ``phase``, ``begin_epoch``, ``begin_phase``, ``end``, ``add_samples``, ``log_metrics``.

    Attributes:
        _timeline: the measurements and the stack of open segments (set by ``EnergyTracker``).
        _started_s: when measuring started on the monotonic clock, s; ``None`` before ``start()``.
        _stopped: whether ``stop()`` was called.
    """

    _timeline: Timeline
    _started_s: float | None
    _stopped: bool

    @contextlib.contextmanager
    def epoch(self: T, index: int, samples: int | None = None) -> Iterator[T]:
        """Measure one epoch; its row is written when the block ends (``interrupted`` if it raised)."""
        self.begin_epoch(index, samples)
        with self._closing():
            yield self

    @contextlib.contextmanager
    def phase(self: T, name: str, samples: int | None = None) -> Iterator[T]:
        """Measure a phase (``validation``, ``test``, ``inference``, ...), inside an epoch or not."""
        self.begin_phase(name, samples)
        with self._closing():
            yield self

    @contextlib.contextmanager
    def _closing(self) -> Iterator[None]:
        try:
            yield
        except BaseException:  # Ctrl-C and sys.exit too: the row is written `interrupted`, the exception re-raised
            self.end(INTERRUPTED)
            raise
        self.end(COMPLETE)

    def begin_epoch(self, index: int, samples: int | None = None) -> None:
        """Open epoch ``index`` (for callbacks; prefer :meth:`epoch`).

        Raises:
            ConfigurationError: ``index`` is not a non-negative int, or ``samples`` is invalid.
            UsageError: not started, an epoch is already open, or ``index`` was used before.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigurationError(f"epoch index {index!r}: give a non-negative int (0, 1, 2, ...)")
        self._require_started(f"epoch({index})")
        self._timeline.begin_epoch(index, samples)

    def begin_phase(self, name: str, samples: int | None = None) -> None:
        """Open a phase (for callbacks; prefer :meth:`phase`).

        Raises:
            ConfigurationError: ``name`` is empty, ``"other"`` or ``"train"``, or ``samples`` is invalid.
            UsageError: not started, or a phase of that name is already open.
        """
        if not isinstance(name, str) or not name or name in RESERVED_PHASES:
            raise ConfigurationError(
                f"phase name {name!r}: give a name such as 'validation', 'test' or 'inference' "
                "('train' is the epoch itself, 'other' is what lies outside epochs)"
            )
        self._require_started(f"phase({name!r})")
        self._timeline.begin_phase(name, samples)

    def end(self, status: str = COMPLETE) -> None:
        """Close the innermost open epoch or phase and write its row.

        Raises:
            ConfigurationError: ``status`` is neither ``"complete"`` nor ``"interrupted"``.
            UsageError: nothing is open.
        """
        self._timeline.end(status)

    def add_samples(self, count: int) -> None:
        """Count ``count`` more items (images, tokens, queries) in the innermost open epoch or phase."""
        self._timeline.add_samples(count)

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Add the user's metrics (loss, accuracy) to the innermost open epoch or phase's row.

        Raises:
            UsageError: no epoch or phase is open.
            ConfigurationError: ``metrics`` is not a mapping, or a name clashes with a tracker column.
        """
        self._timeline.log_metrics(metrics)

    def _require_started(self, what: str) -> None:
        if self._started_s is None or self._stopped:
            raise UsageError(f"{what} called on a tracker that is not running; use `with EnergyTracker() as energy:`")
