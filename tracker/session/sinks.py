"""Sinks: each finished row's ``energy/*`` metrics (:mod:`tracker.session.vocabulary`) into MLflow, TensorBoard, W&B.

``sinks=["mlflow", "tensorboard", "wandb"]`` (or sink objects, for their settings) sends every row
the tracker writes to the experiment trackers people watch while they train. Each library is an
extra, imported only when its sink is asked for. The sinks run on a thread of their own: the
training thread only puts the row in a queue. A sink that fails is one warning (later failures at
DEBUG), and the rows are in ``epochs.csv`` whatever happens to it.

A sink is an object with ``open(run)`` (on the thread that starts the tracker: an active run is
found there), ``write(metrics, step)`` (or ``write_row(record, devices)``, for the records
themselves: the Prometheus exporter) and ``close()``; ``run`` gives the run's name, directory and
experiment. Under a distributed launcher, global rank 0's sinks log the job's rows, every rank's
merged (:mod:`tracker.session.job_metrics`), and the other ranks' log nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tracker.errors import ConfigurationError
from tracker.logs.schema import EpochRecord
from tracker.session.job_metrics import POLL_S, OwnRows
from tracker.session.outputs import Guarded
from tracker.session.vocabulary import STEP

logger = logging.getLogger(__name__)

# How long stop() waits for the sinks to send what is queued, s.
CLOSE_TIMEOUT_S = 30.0


class RunInfo(NamedTuple):
    """What a sink may name: the run's name, its directory (``None``: nothing written), its experiment."""

    name: str
    run_dir: Path | None
    experiment: str | None


class MLflowSink:
    """``MlflowClient.log_batch`` of each row's metrics, at its step, into the active MLflow run or a new one.

    Args:
        tracking_uri: the tracking server or store (``sqlite:///mlflow.db``); default MLflow's own
            (``MLFLOW_TRACKING_URI``, else ``./mlruns``).
        run_id: the run to log into; default the active run (``mlflow.start_run``) when there is one,
            else a new run named after the tracker's, in the experiment named ``experiment=`` (created if needed).
    """

    name, extra, module = "mlflow", "mlflow", "mlflow"

    def __init__(self, tracking_uri: str | None = None, run_id: str | None = None) -> None:
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._client: Any = None
        self._own = False

    def open(self, run: RunInfo) -> None:
        """Find the active run (on the caller's thread: MLflow's active run is the thread's) or create one."""
        import mlflow

        self._client = mlflow.MlflowClient(self.tracking_uri)
        active = mlflow.active_run()
        if self.run_id is None and active is not None and self.tracking_uri in (None, mlflow.get_tracking_uri()):
            self.run_id = active.info.run_id
        if self.run_id is None:
            experiment_id = "0"
            if run.experiment:
                found = self._client.get_experiment_by_name(run.experiment)
                experiment_id = found.experiment_id if found else self._client.create_experiment(run.experiment)
            self.run_id = self._client.create_run(experiment_id, run_name=run.name or None).info.run_id
            self._own = True

    def write(self, metrics: dict[str, float], step: int) -> None:
        """Log the metrics at ``step`` (one call)."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(k, v, now_ms, step) for k, v in metrics.items()])

    def close(self) -> None:
        """End the run if this sink created it."""
        if self._own and self._client is not None:
            self._client.set_terminated(self.run_id)


class TensorBoardSink:
    """``SummaryWriter.add_scalar`` of each row's metrics at its step (torch's, which needs the tensorboard package).

    Args:
        log_dir: where the event files go; default ``<run directory>/tensorboard`` (``runs/`` without one).
    """

    name, extra, module = "tensorboard", "tensorboard", "tensorboard"

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self.log_dir = log_dir
        self._writer: Any = None

    def open(self, run: RunInfo) -> None:
        """Open the event file."""
        from torch.utils.tensorboard import SummaryWriter

        where = self.log_dir or (run.run_dir / "tensorboard" if run.run_dir else None)
        self._writer = SummaryWriter(log_dir=None if where is None else str(where))

    def write(self, metrics: dict[str, float], step: int) -> None:
        """One scalar per metric at ``step``."""
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()


class WandbSink:
    """``run.log`` of each row's metrics into the active W&B run (``wandb.init`` first), against ``energy/step``.

    Args:
        run: the W&B run to log into; default ``wandb.run``, the active one.
    """

    name, extra, module = "wandb", "wandb", "wandb"

    def __init__(self, run: Any = None) -> None:
        self.run = run

    def open(self, run: RunInfo) -> None:
        """Take the active run; ``energy/*`` is plotted against ``energy/step``, not W&B's own step.

        Raises:
            RuntimeError: there is no active run (the sink's one warning says so).
        """
        import wandb

        self.run = self.run or wandb.run
        if self.run is None:
            raise RuntimeError("no active W&B run: call wandb.init() before the tracker starts")
        self.run.define_metric(STEP)
        self.run.define_metric("energy/*", step_metric=STEP)

    def write(self, metrics: dict[str, float], step: int) -> None:
        """Log the metrics with their step as ``energy/step`` (the x-axis of ``energy/*``), one W&B step a row."""
        if self.run is not None:
            self.run.log({**metrics, STEP: step})

    def close(self) -> None:
        """Nothing: the run is the user's to finish."""


SINKS = {sink.name: sink for sink in (MLflowSink, TensorBoardSink, WandbSink)}


def check_sinks(value: Any, name: str) -> tuple[Any, ...]:
    """The ``sinks`` option: names of :data:`SINKS` or sink objects.

    Raises:
        ConfigurationError: a name is unknown, or an object has no ``open``, ``write`` and ``close``.
    """
    items = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        raise ConfigurationError(f"{name}={value!r}: give a list of sinks, e.g. {name}=['mlflow', 'tensorboard']")
    for item in items:
        if isinstance(item, str) and item not in SINKS:
            raise ConfigurationError(f"{name}: {item!r} is not a sink; give some of {list(SINKS)}, or sink objects")
        if not isinstance(item, str) and not all(callable(getattr(item, m, None)) for m in ("open", "write", "close")):
            raise ConfigurationError(
                f"{name}: {item!r} is not a sink; give a name ({', '.join(SINKS)}) or an object with open(run), "
                "write(metrics, step) and close(), such as tracker.MLflowSink(tracking_uri=...)"
            )
    return items


def build(sinks: Sequence[Any]) -> list[Any]:
    """Sink objects for the ``sinks`` option, each library found (not imported).

    Raises:
        ConfigurationError: a sink's library is not installed (the message names its extra).
    """
    built = [SINKS[s]() if isinstance(s, str) else s for s in sinks]
    for sink in built:
        module = getattr(sink, "module", None)
        if module and importlib.util.find_spec(module) is None:
            raise ConfigurationError(
                f"sinks: {sink.name!r} needs the {module} package: pip install 'training-energy-tracker[{sink.extra}]'"
            )
    return built


class SinkThread:
    """Sends the rows to the sinks from a thread of its own; the training thread only queues each row.

    Args:
        sinks: the sink objects (those with ``write_row`` get this process's records, the others metrics).
        run: what a sink may name.
        source: where the metrics come from: this run's rows (default), or the job's
            (:class:`~tracker.session.job_metrics.JobRows`, read on this thread).
    """

    def __init__(self, sinks: Sequence[Any], run: RunInfo, source: Any = None) -> None:
        self._rows: list[tuple[Guarded, Guarded]] = []  # (write_row, close): this process's records
        self._metrics: list[tuple[Guarded, Guarded]] = []  # (write, close): energy/* metrics
        for sink in sinks:
            label = f"the {getattr(sink, 'name', type(sink).__name__)} sink"
            opened = Guarded(sink.open, label)
            opened(run)
            if not opened.failed:
                row_writer = getattr(sink, "write_row", None)
                where = self._rows if row_writer else self._metrics
                where.append((Guarded(row_writer or sink.write, label), Guarded(sink.close, label)))
        self._source = source or OwnRows()
        self._queue: queue.SimpleQueue[tuple[EpochRecord, Sequence[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="energy-tracker.sinks", daemon=True)
        self._thread.start()

    def put(self, row: EpochRecord, devices: Sequence[Any] = ()) -> None:
        """Queue a row and its device records (no I/O here)."""
        self._queue.put((row, devices))

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Send what is queued (under a job, the other ranks' last rows too), close the sinks; waits <= timeout_s."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning(
                "energy-tracker: the sinks did not finish within %g s; the rows are in epochs.csv", timeout_s
            )

    def _run(self) -> None:
        while (item := self._next()) is not None:
            if not item:
                self._send(self._source.look())
                continue
            for write, _ in self._rows:
                write(*item)
            if self._metrics:
                self._send(self._source.on_row(item[0]))
        if self._metrics:
            self._send(self._source.finish())
        for _, close in (*self._rows, *self._metrics):
            close()

    def _next(self) -> tuple[Any, ...] | None:
        """The next row queued (``None``: close); ``()`` when a row waits for other ranks and none came in POLL_S."""
        try:
            return self._queue.get(timeout=POLL_S if self._source.waiting else None)
        except queue.Empty:
            return ()

    def _send(self, sent: list[tuple[dict[str, float], int]]) -> None:
        for metrics, step in sent:
            for write, _ in self._metrics:
                write(metrics, step)
