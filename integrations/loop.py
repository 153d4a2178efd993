"""Keras-like callbacks for a hand-written training loop, over :class:`tracker.EnergyTracker`.

Example:
    >>> from integrations.loop import EnergyLoopCallback
    >>> cb = EnergyLoopCallback(log_dir=None, carbon_intensity_g_per_kwh=300)
    >>> cb.on_train_begin()
    >>> for epoch in range(2):
    ...     cb.on_epoch_begin(epoch)
    ...     row = cb.on_epoch_end(epoch, logs={"loss": 0.5})
    >>> summary = cb.on_train_end()
    >>> summary.epochs
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker import EnergyTracker, EpochRecord, Summary, UsageError, integration


class EnergyLoopCallback:
    """Per-epoch energy and CO2 for a plain loop, with hooks named like Keras callbacks.

    Each epoch's row in ``epochs.csv`` gets the ``logs`` passed to :meth:`on_epoch_end` as
    metric columns (loss, accuracy, ...). Validation and test can be measured apart with
    :meth:`on_phase_begin`/:meth:`on_phase_end`.

    Args:
        **options: any :class:`~tracker.session.energy_tracker.EnergyTracker` option (``log_dir``, ``country``,
            ``pue``, ``epochs``, ``interval_s``, ...); validated here, before training starts.

    Raises:
        ConfigurationError: an option is invalid (same messages as ``EnergyTracker``).
    """

    def __init__(self, **options: Any) -> None:
        # a plain loop's place is the launcher's variables'
        self._options = integration.CallbackOptions(options, "EnergyLoopCallback", sets=("launch",), check_dir=True)
        self.config = self._options.config
        self.tracker: EnergyTracker | None = None
        self._open: list[tuple[str, Any]] = []  # ("epoch", index) and ("phase", name), innermost last

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Start measuring (creates the run directory and the sampler)."""
        if self.tracker is not None:
            raise UsageError("on_train_begin() called twice; call on_train_end() first")
        self.tracker = self._options.tracker().start()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Open epoch ``epoch``."""
        self._running("on_epoch_begin").begin_epoch(epoch)
        self._open.append(("epoch", epoch))

    def on_epoch_end(
        self, epoch: int, logs: Mapping[str, Any] | None = None, samples: int | None = None
    ) -> EpochRecord | None:
        """Close the epoch and write its row, with ``logs`` as metric columns and ``samples`` items processed.

        Returns:
            The row written (its energy in kWh, CO2e in kg, ...; ``logs`` are in ``epochs.csv``, not in it).
        """
        tracker = self._running("on_epoch_end")
        self._check_innermost(("epoch", epoch), f"on_epoch_end({epoch!r})")
        if samples:
            tracker.add_samples(samples)
        if logs:
            tracker.log_metrics(logs)
        tracker.end()
        self._open.pop()
        return tracker.last_row

    def on_step_end(self, step: int | None = None, logs: Mapping[str, Any] | None = None,
                    samples: int | None = None) -> None:  # fmt: skip
        """Count one optimizer step (numbered ``step`` when given) and its ``samples`` in the open epoch.

        With ``row_every_n_steps`` or ``row_every_s``, the open epoch's row is written here when due.
        ``logs`` is accepted for Keras-like loops and left alone: metrics go in at the epoch's end.
        """
        self._running("on_step_end").step(samples, global_step=step)

    def on_batch_end(self, batch: int | None = None, logs: Mapping[str, Any] | None = None,
                     samples: int | None = None) -> None:  # fmt: skip
        """Keras's name: one batch, one optimizer step, numbered after the last (``batch``: its index in the epoch)."""
        self._running("on_batch_end").step(samples)

    def on_phase_begin(self, name: str) -> None:
        """Open a phase such as ``validation`` (inside an epoch or not)."""
        self._running("on_phase_begin").begin_phase(name)
        self._open.append(("phase", name))

    def on_phase_end(self, logs: Mapping[str, Any] | None = None) -> EpochRecord | None:
        """Close the innermost phase and write its row; returns it (as :meth:`on_epoch_end` does)."""
        tracker = self._running("on_phase_end")
        self._check_innermost(("phase", self._open[-1][1] if self._open else None), "on_phase_end()")
        if logs:
            tracker.log_metrics(logs)
        tracker.end()
        self._open.pop()
        return tracker.last_row

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> Summary:
        """Stop measuring (an epoch or phase still open is written ``interrupted``); returns the run's summary."""
        tracker, self._open = self._running("on_train_end"), []
        return tracker.stop()

    def on_exception(self, exc: BaseException | None = None) -> Summary:
        """Write the open epoch as ``interrupted`` and stop (call it from the loop's ``except``)."""
        tracker, self._open = self._running("on_exception"), []
        return tracker.stop(integration.INTERRUPTED)

    def summary(self) -> Summary:
        """The run's totals so far."""
        return self._running("summary").summary()

    def _check_innermost(self, wanted: tuple[str, Any], call: str) -> None:
        """Raise unless ``wanted`` is the innermost open epoch or phase, before anything is changed."""
        innermost = self._open[-1] if self._open else None
        if innermost == wanted:
            return
        if innermost is None:
            raise UsageError(f"{call} called with no {wanted[0]} open; open it first with on_{wanted[0]}_begin")
        kind, name = innermost
        close = f"on_epoch_end({name!r})" if kind == "epoch" else "on_phase_end()"
        raise UsageError(f"{call} called while {kind} {name!r} is the innermost one open; call {close} first")

    def _running(self, hook: str) -> EnergyTracker:
        if self.tracker is None:
            raise UsageError(f"{hook}() called before on_train_begin()")
        return self.tracker
