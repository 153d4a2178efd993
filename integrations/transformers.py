"""Hugging Face Transformers: the energy and CO2 of each epoch and evaluation of a ``Trainer``.

Example::

    from integrations.transformers import EnergyTrainerCallback

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation)
    EnergyTrainerCallback(country="DEU").attach(trainer)  # or Trainer(..., callbacks=[EnergyTrainerCallback()])
    trainer.train()
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from integrations._guard import guarded
from integrations._metrics import user_metrics
from integrations._vocabulary import epoch_metrics, epoch_metrics_from_rows, job_so_far, so_far_metrics
from tracker import EnergyTracker, Summary, integration

logger = logging.getLogger(__name__)

COMPLETE, INTERRUPTED, TRAIN = integration.COMPLETE, integration.INTERRUPTED, integration.TRAIN
EVALUATION = integration.VALIDATION
HF_BOOKKEEPING = frozenset({"epoch"})  # the Trainer's float epoch: each row has its own epoch column


class EnergyTrainerCallback(TrainerCallback):
    """Measures each epoch and each evaluation of a ``transformers.Trainer``, and puts the figures in its logs.

    Each training epoch is a row of ``epochs.csv`` (phase ``train``), each evaluation one of phase
    ``validation`` (nested in the epoch when it runs mid-epoch). Rows go to ``<log_dir>/<run>/``,
    ``log_dir`` defaulting to ``<output_dir>/energy``. Measuring spans ``trainer.train()``.

    **Under the Trainer's DDP** (``torchrun``, ``accelerate launch``): every rank runs the callback;
    the tracker finds its rank from the launcher's environment and writes a shard of the job's one
    run directory, each GPU counted once and CPU and RAM once per node
    (:mod:`tracker.job.placement`). The callback makes no collective of its own.

    **Steps**: each optimizer step is counted (``on_step_end``, the Trainer's ``global_step``), so
    ``row_every_n_steps``/``row_every_s`` cut a long epoch into rows as it runs, and ``total_steps``
    (default: the Trainer's ``max_steps``) gives the forecast of the whole run from the step rate.

    **Logged figures** (added to every log of the Trainer; its reporters run on rank 0), the
    vocabulary of :mod:`integrations._vocabulary`, shared with Lightning:

    ``energy/total_kwh`` and ``energy/total_co2_kg`` (the job so far, the open epoch included, at
    every log), ``energy/epoch_kwh``, ``energy/epoch_co2_kg`` and ``energy/gpu_power_w`` (the last
    finished epoch, all its rows), ``energy/eval_kwh`` (the last evaluation) and the forecast
    ``energy/forecast_total_kwh``/``_co2_kg`` once known; and, only where the run counts them,
    ``energy/total_``/``epoch_embodied_co2_kg`` (estimated), ``_water_l`` (estimated) and ``_node_kwh``
    (the node's own meter, beside the energy); each key's meaning is in ``METRICS`` there.

    Under DDP the totals are the job's rows so far, merged from every rank's shard, plus this
    rank's open epoch so far; the epoch figures are the job's rows.

    The Trainer runs its reporters (TensorBoard, W&B, MLflow, ...) before callbacks given in
    ``callbacks=[...]``, so those see the figures one log late; :meth:`attach` puts this callback
    first, and then they see each figure in the same log. ``trainer.state.log_history`` holds them either way.

    **Metrics beside energy**: each log's numbers (``loss``, ``grad_norm``, ``learning_rate``,
    ``eval_loss`` and every ``eval_*``) go into the row open when the Trainer logs them, as columns of
    ``epochs.csv``: an epoch's row holds the epoch's training loss (the Trainer logs it just after the
    epoch ends, so the row is written at that log), an evaluation's row its ``eval_*``. Under DDP
    every rank's row holds the values the Trainer logs, which it has already reduced across ranks
    (the mean loss; evaluation metrics from every rank's predictions); the merged job shows rank 0's.

    **Resuming and retrying**: the row of epoch ``k`` is the Trainer's float epoch rounded down, so
    ``train(resume_from_checkpoint=...)`` from a checkpoint taken mid-epoch (epoch 1.5) measures the
    rest of epoch 1 as epoch 1, its ``notes`` saying where it resumed (the part before is in the earlier
    run's rows). A second ``train()`` after one that raised continues the same run: the failed try's open
    rows are written ``interrupted``, and the retry's epochs follow them. Nothing the tracker raises in a
    hook reaches the training loop: the first such failure is a warning, later ones are DEBUG lines.

    Args:
        **options: every :class:`~tracker.EnergyTracker` option (``log_dir``, ``country``, ``pue``,
            ``epochs`` (default: ``num_train_epochs``), ...), and ``sensors``, ``clock``, ``nvml``,
            ``powercap_root``, ``host`` for tests and custom hardware.

    Raises:
        ConfigurationError: an option is invalid (``EnergyTracker``'s messages); at ``on_train_begin``,
            before the first step, the log directory cannot be used.
    """

    def __init__(self, **options: Any) -> None:
        # the launcher gives the rank; log_dir defaults to <output_dir>/energy, known when training starts
        self._options = integration.CallbackOptions(
            options,
            "EnergyTrainerCallback",
            sets=("rank", "launch"),
            defaults={"log_dir": None},
            logs_metrics="the Trainer's report_to integrations",
        )
        self.config = self._options.config
        self.tracker: EnergyTracker | None = None
        self._open: list[str] = []
        self._figures: dict[str, float] = {}
        self._fresh = False
        self._epoch_ending = False  # the epoch ended; its row waits for the epoch's log (its loss), then closes
        self._epoch_start: Summary | None = None
        self._summary: Summary | None = None
        self._state: dict[str, Any] | None = None  # the run a retried train() continues
        self.run_dir: Path | None = None  # where the rows go: the job's directory under DDP

    def attach(self, trainer: Any) -> EnergyTrainerCallback:
        """Add this callback to ``trainer`` ahead of its reporters, so they log its figures; returns it."""
        handler = trainer.callback_handler
        handler.callbacks[:] = [self, *(c for c in handler.callbacks if c is not self)]
        return self

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start measuring: sensor discovery, the run directory (this rank's shard under DDP).

        After a ``train()`` that raised (no ``on_train_end``, no :meth:`close`), its open rows are written
        ``interrupted`` and this ``train()`` continues its run.
        """
        retried = None
        if self.tracker is not None:
            self._guarded_close(INTERRUPTED)
            retried = self._state
        log_dir = self.config.log_dir if "log_dir" in self._options.given else os.path.join(args.output_dir, "energy")
        planned = float(args.num_train_epochs)
        epochs = int(planned) if args.max_steps <= 0 and planned.is_integer() and planned > 0 else None
        steps = state.max_steps if getattr(state, "max_steps", 0) and state.max_steps > 0 else None
        cfg = self.config.replace(log_dir=log_dir, epochs=self.config.epochs or epochs,
                                  total_steps=self.config.total_steps or steps)  # fmt: skip
        tracker = self._options.tracker(cfg)  # a bad log_dir raises here, before the first step
        self._start(tracker, retried)

    @guarded
    def _start(self, tracker: EnergyTracker, retried: dict[str, Any] | None) -> None:
        if retried:
            tracker.resume(retried)
        self.tracker = tracker.start()
        self.run_dir = tracker.job_dir or tracker.run_dir
        self._summary = None

    @guarded
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the epoch's row: epoch ``floor(state.epoch)``, noted as resumed when that is not a whole number."""
        self._settle()
        if self.tracker is not None:
            index, note = _epoch_index(state.epoch)
            self.tracker.begin_epoch(index, note=note)
            self._epoch_start = self.tracker.summary()
            self._open.append(TRAIN)

    @guarded
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Count the optimizer step, numbered as the Trainer's ``global_step`` (a row may be cut here)."""
        if self.tracker is not None:
            self.tracker.step(global_step=state.global_step)

    @guarded
    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """End the epoch: its row is written at the epoch's log (which the Trainer sends after this), with its loss.

        Without such a log, the row is written when the next thing happens: an evaluation, the next epoch,
        the end of training.
        """
        self._epoch_ending = TRAIN in self._open

    @guarded
    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open an evaluation phase at its first step."""
        self._settle()
        if self.tracker is not None and EVALUATION not in self._open:
            # an evaluation at an epoch's end comes after its row closed: it still names that epoch
            self.tracker.begin_phase(EVALUATION, epoch=max(0, math.ceil(state.epoch or 0) - 1))
            self._open.append(EVALUATION)

    @guarded
    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Write the evaluation's row, if its log did not already."""
        self._settle()
        self._close(EVALUATION)

    @guarded
    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Put the log's metrics in the open row (``loss``, ``eval_*``), and the energy figures in the log.

        The figures also go into ``state.log_history``.
        """
        if logs is None or self.tracker is None:
            return
        self._log_metrics(logs)
        self._settle()  # the epoch's own log: its row is written now, with the loss
        if EVALUATION in self._open and any(k.endswith("_runtime") for k in logs):
            self._close(EVALUATION)  # the evaluation's own log: its row first, so the log holds it
        figures = self.figures()
        logs.update(figures)
        if state.log_history:
            state.log_history[-1].update(figures)

    @guarded
    def _log_metrics(self, logs: dict[str, Any]) -> None:
        """The log's numbers into the innermost open row (HF's float ``epoch`` left out: the row has its own)."""
        numbers = {k: v for k, v in logs.items() if k not in HF_BOOKKEEPING and _is_number(v)}
        if numbers and self._open:
            self.tracker.log_metrics(user_metrics(numbers))

    def _settle(self) -> None:
        if self._epoch_ending:
            self._epoch_ending = False
            self._close(TRAIN)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop measuring and finish the run directory."""
        self._guarded_close(COMPLETE)

    @guarded
    def _guarded_close(self, status: str) -> None:
        self.close(status)

    def close(self, status: str = COMPLETE) -> Summary | None:
        """Stop measuring; after an exception in ``trainer.train()``, call ``close("interrupted")``.

        Returns:
            This process's summary (its shard's, under DDP), or ``None`` if it never started.
        """
        tracker, self.tracker, opened, self._open = self.tracker, None, self._open, []
        self._epoch_ending = False
        if tracker is not None:
            try:
                for _ in opened:
                    tracker.end(INTERRUPTED if status != COMPLETE else COMPLETE)
            finally:
                self._summary = tracker.stop(status)
                self._state = tracker.state()
        return self._summary

    def summary(self) -> Summary | None:
        """This process's totals: live while measuring, else as of the end (``None`` before)."""
        return self.tracker.summary() if self.tracker is not None else self._summary

    def _close(self, phase: str) -> None:
        if self.tracker is None or phase not in self._open:
            return
        while self._open:
            self.tracker.end()
            if self._open.pop() == phase:
                break
        self._fresh = True
        if phase == TRAIN and self._epoch_start is not None:
            self._figures.update(epoch_metrics(self._epoch_start, self.tracker.summary()))

    def figures(self) -> dict[str, float]:
        """The logged figures (see the class): the totals so far at every call, the epoch's after it closes.

        Only global rank 0 reads the job's rows (the Trainer's reporters run there; the other ranks
        keep their own summaries' figures), and only the rows appended since its last look.
        """
        tracker = self.tracker
        if tracker is None:
            return dict(self._figures)
        live = tracker.summary()
        self._figures.update(so_far_metrics(live))
        if tracker.rank == 0 and self.run_dir is not None:
            rows = tracker.job_rows()
            if self._fresh:
                self._figures.update(epoch_metrics_from_rows(rows))
            if tracker.job_dir is not None:  # the job's finished rows, every rank's, and this rank's open part
                self._figures.update(job_so_far(rows, live, tracker.state()["totals"]))
        self._fresh = False
        return dict(self._figures)


def _epoch_index(epoch: float | None) -> tuple[int, str]:
    """The row's epoch index for the Trainer's float ``state.epoch`` at an epoch's start, and its note.

    A whole number (a fresh epoch) is its own index; 1.5 (resumed from a checkpoint taken mid-epoch)
    is the rest of epoch 1. Rounding would call it epoch 2, and the next epoch 2 again.
    """
    value = float(epoch or 0.0)
    index = math.floor(value + 1e-9)  # 2.9999999999 from a sum of step fractions is epoch 3's start
    if value - index <= 1e-6:
        return index, ""
    return index, f"resumed at epoch {value:.4g}: the rest of epoch {index}, its start in an earlier run"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
