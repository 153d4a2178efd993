"""PyTorch Lightning callback: the energy and CO2 of every epoch, DDP without double counting, resumable.

``EnergyCallback`` is a ``lightning.pytorch.Callback``; ``PLEnergyCallback`` is the same callback for
the older ``pytorch_lightning`` package (built on first use).
"""

from __future__ import annotations

import logging
import os
from functools import partialmethod
from typing import Any

from typing_extensions import override

try:
    from lightning.pytorch import Callback
except ImportError:  # only the older package name, pytorch_lightning, is installed
    from pytorch_lightning import Callback

from integrations._distributed import distributed, gather, placement, trainer_launch
from integrations._guard import guarded
from integrations._metrics import PROGRESS_BAR_KEY, TrainerMetricsPerRow, batch_size, progress_text, user_metrics
from integrations._vocabulary import (
    TOTAL_CO2_KG,
    TOTAL_KWH,
    epoch_metrics,
    epoch_metrics_from_rows,
    job_so_far,
    so_far_metrics,
)
from tracker import Config, ConfigurationError, EnergyTracker, Summary, integration

logger = logging.getLogger(__name__)

COMPLETE, INTERRUPTED, GPU = integration.COMPLETE, integration.INTERRUPTED, integration.GPU
TRAIN, VALIDATION, SANITY_CHECK = integration.TRAIN, integration.VALIDATION, integration.SANITY_CHECK
TEST, PREDICT = integration.TEST, integration.PREDICT


class EnergyCallback(Callback):
    """Measures the energy and CO2 of each epoch and phase of a Lightning run.

    Each training epoch is a row (``begin_epoch(trainer.current_epoch)`` ... ``end()``); validation,
    sanity check, test and predict are phases of their own (``validation``, ``sanity_check``, ``test``,
    ``predict``), so a validation inside an epoch is not counted in the epoch's ``train`` row.
    ``samples`` is the first dimension of each batch's first tensor, summed over batches and ranks.
    Rows go to ``<log_dir>/<run>/epochs.csv`` (``devices.csv``, ``run.json`` beside it; under DDP a
    shard per rank, below), ``log_dir``
    defaulting to ``<trainer.log_dir>/energy/``. A checkpoint keeps the run directory and totals:
    resuming from it appends to the same directory, the totals continued.

    **Steps**: each optimizer step (the Trainer's ``global_step``) is counted with its samples, so
    ``row_every_n_steps``/``row_every_s`` cut a long epoch into rows as it runs; ``total_steps``
    (default: ``max_steps``) gives the forecast of the whole run from the step rate.

    **Logged metrics** (to every logger of the Trainer, reduced with ``max`` across ranks, so every
    rank sees rank 0's figure), the vocabulary of :mod:`integrations._vocabulary` (shared with the
    Hugging Face callback; each key's meaning is in ``METRICS`` there). Every ``log_every_n_steps``
    steps: ``energy/total_kwh`` and ``energy/total_co2_kg`` (the run so far, the open epoch
    included; under DDP the job's rows read back on rank 0 and rank 0's open part), and the forecast
    ``energy/forecast_total_kwh`` and ``_co2_kg`` once known (one process only: every rank must log
    the same keys). At each training epoch's end, besides those: ``energy/epoch_kwh``,
    ``energy/epoch_co2_kg`` and ``energy/gpu_power_w`` (only when a GPU is measured; under DDP also
    ``energy/eval_kwh``, the figures being the job's rows'). "The epoch's
    energy" means the same everywhere: the sum of the ``epochs.csv`` rows carrying the epoch's number
    (its ``train`` rows and the ``validation`` run inside it), as ``energy-tracker plot`` stacks them.
    The counted terms, only where the run counts them: ``energy/total_``/``epoch_embodied_co2_kg``
    (estimated), ``_water_l`` (estimated) and ``_node_kwh`` (the node's own meter, beside the energy);
    under DDP at each epoch's end only.

    The progress bar shows ``CO2``: the run's emissions so far as text in scaled units (``12.3 g``),
    so that it moves on a small run. The Trainer's ``callback_metrics`` (your ``self.log`` values,
    tensors as numbers) go into ``epochs.csv`` beside the energy, at each epoch's and phase's end:
    each row the metrics logged (new or changed) while it was open, so a validation row holds its
    validation metrics, not the epoch's training loss. Under DDP they are rank 0's row's: the values
    Lightning gives rank 0 (reduced across ranks where you log with ``sync_dist=True``).

    **Distributed** (any ``torch.distributed`` strategy, one or many nodes), by the rules of
    :mod:`tracker.job.placement`: each rank measures the CUDA device it trains on, matched by
    UUID (else, training on CPU or with ``gpu_devices`` given, every GPU it sees, duplicates dropped
    by UUID keeping the lowest rank's); CPU and RAM are measured once per node, by local rank 0.
    Every rank writes a shard of its own under one job directory (``<log_dir>/<job>/ranks/``), as
    under torchrun, its place taken from the ``Trainer`` and the job's token agreed once at ``setup``;
    ``load_run`` merges the shards. No collective per row: the figures logged at an epoch's end are
    the job's rows read back on rank 0 after a barrier (every rank's row on disk), sent to the others.
    A rank whose GPU cannot be matched in NVML measures without it and warns. After an exception no
    collective is made: each rank writes its own open rows as ``interrupted``.

    Args:
        **options: every :class:`~tracker.EnergyTracker` option (``log_dir``, ``country``, ``pue``,
            ``epochs`` (default: ``trainer.max_epochs``), ``gpu_devices``, ``measure``, ...), and
            ``sensors``, ``clock``, ``nvml``, ``powercap_root``, ``host`` for tests and custom hardware.

    Raises:
        ConfigurationError: here, an option is invalid (``EnergyTracker``'s messages); at ``setup``,
            before the first batch, the log directory cannot be written or a GPU named does not exist.

    Example::

        trainer = L.Trainer(max_epochs=10, callbacks=[EnergyCallback(country="DEU")])
    """

    def __init__(self, **options: Any) -> None:
        # the callback sets the rank and the launch (its Trainer says them); log_dir: the trainer's, at setup
        self._options = integration.CallbackOptions(
            options,
            "EnergyCallback",
            sets=("rank", "launch"),
            defaults={"log_dir": None},
            logs_metrics="the Trainer's loggers (self.log)",
        )
        self.config = self._options.config
        self.tracker: EnergyTracker | None = None
        self._running = False
        self._state: dict[str, Any] | None = None
        self._world = 1
        self._open: list[str] = []
        self._samples: dict[str, int] = {}
        self._row_metrics = TrainerMetricsPerRow()  # each row gets the metrics logged while it was open
        self._epoch_start: Any = None
        self._summary: Summary | None = None
        self._progress = progress_text(None)
        self._last_step = -1  # the Trainer's global_step last counted

    @override
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Check the log directory and create the tracker (sensor discovery), before the first batch.

        A new ``fit`` starts a run of its own (a checkpoint's state, restored after ``setup``, continues
        the checkpoint's run instead); validate, test and predict continue the last run.
        """
        self._release()
        self._last_step = -1
        if stage == "fit":
            self._state = None
        self._show_in_progress_bar(trainer)
        self._world = trainer.world_size
        log_dir = self.config.log_dir or os.path.join(trainer.log_dir or ".", "energy")  # a collective: every rank
        launch = trainer_launch(trainer, self.config.job_id)  # a collective: every rank
        problem = None
        try:
            self.tracker = self._build(trainer, log_dir, launch)
        except ConfigurationError as exc:
            problem = str(exc)
        problems = [p for p in gather(self._world, problem) if p]  # every rank fails together, or none does
        if problems:
            self._release()
            raise ConfigurationError(problems[0])

    def _show_in_progress_bar(self, trainer: Any) -> None:
        # Lightning's progress bar shows logged numbers as "{:.3f}", so a run's kg never leaves 0.000; its
        # get_metrics() may return text, so the bar is given the scaled figure ("CO2 12.3 g") instead.
        bar = getattr(trainer, "progress_bar_callback", None)
        if bar is None or getattr(bar, "_energy_tracker_shown", False):
            return
        original = bar.get_metrics

        def get_metrics(trainer: Any, pl_module: Any) -> dict[str, Any]:
            return {**original(trainer, pl_module), PROGRESS_BAR_KEY: self._progress}

        bar.get_metrics, bar._energy_tracker_shown = get_metrics, True

    def _build(self, trainer: Any, log_dir: str, launch: Any) -> EnergyTracker:
        cfg = self.config
        kinds, gpus, own_gpu = placement(
            trainer.strategy.root_device, trainer.local_rank, trainer.num_devices, cfg.gpu_devices, cfg.measure
        )
        max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        max_steps = getattr(trainer, "max_steps", -1)
        max_steps = max_steps if max_steps and max_steps > 0 else None
        # every rank writes a shard of its own under the job's directory (one directory alone)
        cfg = cfg.replace(log_dir=log_dir, epochs=cfg.epochs or max_epochs, total_steps=cfg.total_steps or max_steps)
        try:
            return self._tracker(launch, cfg, kinds, gpus)
        except ConfigurationError as exc:
            if not own_gpu:
                raise
            logger.warning("energy-tracker: rank %d measures without its GPU: %s", trainer.global_rank, exc)
            return self._tracker(launch, cfg, tuple(k for k in kinds if k != GPU), None)

    def _tracker(self, launch: Any, cfg: Config, kinds: tuple[str, ...], gpus: Any) -> EnergyTracker:
        nothing = {} if kinds else {"sensors": []}  # this rank measures nothing; its shard still says so (and beats)
        cfg = cfg.replace(measure=kinds or cfg.measure, gpu_devices=gpus)
        return self._options.tracker(cfg, launch=launch, **nothing)

    @guarded
    def _start(self, *_: Any) -> None:
        if self.tracker is None or self._running:
            return
        if self._state is not None:
            self.tracker.resume(self._state)
        self.tracker.start()
        self._running = True

    @override
    @guarded
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Start measuring (at the first loop instead, for strategies that restore checkpoints late)."""
        if not trainer.strategy.restore_checkpoint_after_setup:
            self._start()

    on_sanity_check_start = on_train_start = _start

    @override
    @guarded
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Write the open epoch and phases as ``interrupted`` and stop, making no collective."""
        while self._open and self.tracker is not None and self._running:
            self._add_samples(self._samples.pop(self._open.pop(), 0))
            self.tracker.end(INTERRUPTED)
        self._release(INTERRUPTED)

    @override
    @guarded
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Stop the sampler and finish the run directory (a later stage continues it)."""
        self._release()

    def _release(self, status: str = COMPLETE) -> None:
        tracker, self.tracker, self._open = self.tracker, None, []
        if tracker is not None and self._running:
            self._summary = tracker.stop(status)
            self._state = tracker.state()
        elif tracker is not None:
            tracker.discovery.close()
        self._running = False

    def summary(self) -> Summary | None:
        """The run's totals: live while measuring, else as of the last stage's end (``None`` before)."""
        return self.tracker.summary() if self.tracker is not None and self._running else self._summary

    @override
    def state_dict(self) -> dict[str, Any]:
        """The run directory and totals (``EnergyTracker.state()``), for a resumed run to continue."""
        state = self.tracker.state() if self.tracker is not None and self._running else self._state
        return {"tracker": state} if state else {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the checkpoint's run directory and totals once measuring starts."""
        self._state = state_dict.get("tracker") or None

    @guarded
    def _begin(self, phase: str, trainer: Any, *_: Any) -> None:
        self._start()
        if self.tracker is None:
            return
        if phase == TRAIN:
            self.tracker.begin_epoch(trainer.current_epoch)
            self._epoch_start = self._rows_so_far()
        else:
            self.tracker.begin_phase(phase)
        self._open.append(phase)
        self._samples[phase] = 0
        self._row_metrics.begin(phase, user_metrics(trainer.callback_metrics))

    @guarded
    def _count(self, phase: str, batch: Any) -> None:
        if phase in self._samples:
            self._samples[phase] += batch_size(batch) or 0

    @guarded
    def _end(self, phase: str, trainer: Any = None, *_: Any) -> bool:
        if phase not in self._open or self.tracker is None:
            return False
        own = self._row_metrics.end(phase, user_metrics(trainer.callback_metrics) if trainer is not None else {})
        if own and self._open[-1] == phase:
            self._log_user_metrics(own)  # a name epochs.csv refuses still lets the row close
        self._open.remove(phase)
        self._add_samples(self._samples.pop(phase, 0))  # this rank's: the merge sums the ranks'
        self.tracker.end()
        self._progress = progress_text(self.tracker.summary())
        return True

    def _rows_so_far(self) -> Summary:
        # The rows written: the figures logged are those of epochs.csv, not the live preview of what is still open.
        return Summary.build(self.tracker.run_state()._replace(so_far=(), open=()))

    @guarded
    def _log_user_metrics(self, metrics: dict[str, Any]) -> None:
        self.tracker.log_metrics(metrics)

    def _add_samples(self, count: int) -> None:
        if count and self.tracker is not None:
            self.tracker.add_samples(count)

    def _evaluation(self, trainer: Any) -> str:
        return SANITY_CHECK if trainer.sanity_checking else VALIDATION

    @override
    @guarded
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the epoch's row."""
        self._begin(TRAIN, trainer)

    @override
    @guarded
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Open the epoch's row if no ``on_train_epoch_start`` did: a run resumed from a mid-epoch checkpoint."""
        if self.tracker is not None and self._running and TRAIN not in self._open:
            epoch = trainer.current_epoch
            note = f"resumed at step {trainer.global_step}: the rest of epoch {epoch}, its start in earlier rows"
            self.tracker.begin_epoch(epoch, note=note)
            self._epoch_start = self._rows_so_far()
            self._open.append(TRAIN)
            self._samples[TRAIN] = 0

    @override
    @guarded
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Count the batch's samples and, once the optimizer has stepped, the step; log the run so far.

        The step is the Trainer's ``global_step`` (gradient accumulation: one per optimizer step), its
        samples this rank's batches since the last step (the merge sums the ranks' shards).
        """
        self._count(TRAIN, batch)
        step = trainer.global_step
        if self.tracker is None or not self._running or TRAIN not in self._open or step <= self._last_step:
            return
        self._last_step, samples = step, self._samples.get(TRAIN, 0)
        self._samples[TRAIN] = 0
        self.tracker.step(samples=samples or None, global_step=step)
        if step % max(1, trainer.log_every_n_steps) == 0 and not trainer.barebones:
            for key, value in self._so_far().items():
                pl_module.log(key, value, on_step=True, on_epoch=False, sync_dist=True, reduce_fx="max")

    @override
    @guarded
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the epoch's row and log its energy to the Trainer's loggers."""
        if self._end(TRAIN, trainer) and not trainer.barebones:
            for key, value in self._epoch_figures(trainer).items():
                pl_module.log(key, value, sync_dist=True, reduce_fx="max")

    def _so_far(self) -> dict[str, float]:
        """The run so far; under DDP the job's on rank 0 (its rows read back, and rank 0's open part), 0 elsewhere.

        Every rank logs the same keys (each is a collective), reduced with ``max``: every rank sees rank 0's.
        So under DDP the counted terms (embodied, water, node), which only rank 0 reads back from the job's
        rows, come at the epoch's end, sent to every rank with the epoch's figures.
        """
        live = self.tracker.summary()
        if not distributed(self._world):
            return so_far_metrics(live)
        if self.tracker.rank != 0:
            return {TOTAL_KWH: 0.0, TOTAL_CO2_KG: 0.0}
        so_far = job_so_far(self.tracker.job_rows(), live, self.tracker.state()["totals"])
        return {key: so_far[key] for key in (TOTAL_KWH, TOTAL_CO2_KG)}

    def _epoch_figures(self, trainer: Any) -> dict[str, float]:
        """The epoch's figures; under DDP the job's rows read back on rank 0, once every rank wrote its row.

        Two collectives per epoch, none per row: a barrier (every rank's row is on disk), then rank 0's
        figures sent to every rank, so that all log the same keys.
        """
        if not distributed(self._world):
            return epoch_metrics(self._epoch_start, self._rows_so_far())
        trainer.strategy.barrier("energy-tracker")
        figures = None
        if self.tracker is not None and self.tracker.rank == 0:
            rows = self.tracker.job_rows()
            figures = {**epoch_metrics_from_rows(rows), **job_so_far(rows)}
        return trainer.strategy.broadcast(figures, src=0) or {}

    @override
    @guarded
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Open a ``validation`` (or ``sanity_check``) phase."""
        self._begin(self._evaluation(trainer), trainer)

    @override
    @guarded
    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        """Count the batch's samples."""
        self._count(self._evaluation(trainer), batch)

    @override
    @guarded
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the phase's row."""
        self._end(self._evaluation(trainer), trainer)

    def _phase_batch_end(self, phase: str, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        self._count(phase, batch)

    # test and predict: a phase each, written when it ends
    on_test_start = partialmethod(_begin, TEST)
    on_test_batch_end = partialmethod(_phase_batch_end, TEST)
    on_test_end = partialmethod(_end, TEST)
    on_predict_start = partialmethod(_begin, PREDICT)
    on_predict_batch_end = partialmethod(_phase_batch_end, PREDICT)
    on_predict_end = partialmethod(_end, PREDICT)


def __getattr__(name: str) -> Any:
    # PLEnergyCallback: the same class body on `pytorch_lightning.Callback`, whose Trainer rejects others.
    if name != "PLEnergyCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pytorch_lightning

    body = {k: v for k, v in vars(EnergyCallback).items() if k not in ("__dict__", "__weakref__")}
    cls = type(name, (pytorch_lightning.Callback,), {**body, "__qualname__": name})
    globals()[name] = cls
    return cls
