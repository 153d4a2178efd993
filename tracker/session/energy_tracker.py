"""``EnergyTracker``: start/stop, epochs and phases, per-epoch rows, totals, forecast, summary, resume.

The session connects the parts: :class:`~tracker.session.timeline.Timeline` (sampler and meter, the stack
of open segments, and the rules of opening and closing them) hands each closed segment to
:meth:`EnergyTracker._emit`, which turns it into rows (:mod:`tracker.session.rows`) and writes them
(:mod:`tracker.logs.writer`). The epoch and phase methods delegate to the timeline; :meth:`summary` and
``run.json`` are made from an immutable :class:`~tracker.session.summary.RunState`
(:mod:`tracker.session.summary`); resuming is :mod:`tracker.session.resume`; everything distributed
(placement, the job directory and shards, identity, the job's rows) is :class:`~tracker.job.job.Job`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from tracker.energy import joined
from tracker.errors import ConfigurationError, UsageError
from tracker.job.job import Job
from tracker.logs.schema import COMPLETE, INTERRUPTED, EpochRecord
from tracker.logs.writer import RunWriter, check_log_dir
from tracker.measure.sampler import MANUAL, default_interval_s
from tracker.sensors import CPU, GPU, KINDS, NODE, RAM, Discovery, Reading
from tracker.sensors.discovery import discover
from tracker.session import prometheus
from tracker.session import resume as resuming
from tracker.session import sinks as sinking
from tracker.session.config import Config, Hardware, option_help, options_doc, resolve_config, split_options
from tracker.session.job_metrics import JobRows, OwnRows
from tracker.session.outputs import Guarded, as_records
from tracker.session.rows import RUNNING, RowBuilder
from tracker.session.segments import Segment
from tracker.session.summary import RunState, Summary, run_info, start_line
from tracker.session.timeline import (
    Sampling,
    Timeline,
    check_epoch_index,
    check_phase_name,
    check_status,
    is_count,
    power_rows,
)

logger = logging.getLogger(__name__)

# How often the open epoch's energy so far is written to heartbeat.json, s (by the sampler's thread).
# Each write previews the open rows (about 1 ms of CPU here): every 2 s that alone was 0.05 % of a core,
# the sampler's whole budget at 1 s sampling. A killed run's recovered rows end at its last beat, so
# they miss at most this much; liveness.STALE_HEARTBEAT_S (60 s) leaves six beats to spare.
HEARTBEAT_S = 10.0

_NOT_GIVEN: Any = object()


class EnergyTracker:
    """Measures the energy and CO2 of a training run, per epoch and phase.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with EnergyTracker(log_dir="runs/energy", country="DEU", epochs=10) as energy:
            for epoch in range(10):
                with energy.epoch(epoch, samples=len(dataset)):
                    loss = train_one_epoch()
                    energy.log_metrics({"loss": loss})
                with energy.phase("validation"):
                    validate()
        print(energy.summary())

    Each finished epoch and phase appends a row to ``<log_dir>/<run>/epochs.csv`` (columns in
    :class:`~tracker.logs.schema.EpochRecord`) and one row per device to ``devices.csv``.

    Args:
        log_dir: (may be given first, without its name) {log_dir}
        config: a :class:`~tracker.session.config.Config` instead of its options (not both).
        **options: any option of :class:`~tracker.session.config.Config` or
            :class:`~tracker.session.config.Hardware`, each declared once there:

    {options}

    Raises:
        ConfigurationError: an option is invalid, or the hardware named does not exist.
    """

    def __init__(self, log_dir: Any = _NOT_GIVEN, *, config: Config | None = None, **options: Any) -> None:
        given, injected = split_options(options, "EnergyTracker")
        if log_dir is not _NOT_GIVEN:
            given["log_dir"] = log_dir
        if config is not None and not isinstance(config, Config):
            resolve_config(config, given)  # raises, before the hardware options are looked at
        hardware = Hardware(**injected)
        self.config = cfg = resolve_config(config, given).resolve()  # reads codecarbon's tables, an hourly CSV
        self._log_dir = None if cfg.log_dir is None else check_log_dir(cfg.log_dir)
        self._clock, self._utc_clock = hardware.clock, hardware.utc_clock
        host = hardware.host or os.uname().nodename
        self._job = Job(cfg.distributed, cfg.job_id, hardware.rank, launch=hardware.launch, host=host)
        self.launch, self.rank, self.host, self.process = self._job.launch, self._job.rank, host, self._job.process
        self._on_row = None if hardware.on_row is None else Guarded(hardware.on_row, "on_row")
        self._sinks = sinking.build(cfg.sinks)  # each library found now, imported at start
        self._sink_thread: sinking.SinkThread | None = None
        self._endpoint = prometheus.claim(cfg.prometheus_port, self.launch.local_rank)  # a port taken: raises here
        if cfg.prometheus_pushgateway is not None:
            prometheus.need_client()
        self._last_row: EpochRecord | None = None
        sensors = hardware.sensors
        self.discovery = Discovery(list(sensors)) if sensors is not None else self._discover(hardware)
        self.interval_s = cfg.interval_s or default_interval_s(self.discovery.sensors)
        self._pid = os.getpid()
        self._timeline = self._new_timeline(hardware)
        self.run_dir: Path | None = None
        self._writer: RunWriter | None = None
        self._rows: RowBuilder | None = None
        self._started_s: float | None = None
        self._started_utc = ""
        self._stopped = False
        self._stopped_s: float | None = None
        self._stopped_utc: str | None = None
        self._status = RUNNING
        self._resume: Mapping[str, Any] | None = None
        self._owner: threading.Thread | None = None
        self._next_beat_s = float("-inf")
        self._beat_lock = threading.Lock()
        self._beats = 0
        self._idle_beat: threading.Event | None = None

    def _new_timeline(self, hardware: Hardware) -> Timeline:
        cfg = self.config
        return Timeline(
            self.discovery.sensors,
            self.interval_s,
            clock=self._clock,
            jitter=cfg.jitter,
            now_utc=self._now_utc,
            on_close=self._emit,
            on_readings=self._trace,
            row_every_n_steps=cfg.row_every_n_steps,
            row_every_s=cfg.row_every_s,
            edge_deadline_s=hardware.edge_deadline_s,
            manual=hardware.sampling == MANUAL,
        )

    def _discover(self, hardware: Hardware) -> Discovery:
        cfg = self.config
        kinds = self._job.kinds(cfg.measure)
        return discover(
            nvml=hardware.nvml,
            gpu_devices=cfg.gpu_devices,
            powercap_root=hardware.powercap_root,
            hwmon_root=hardware.hwmon_root,
            cpu_tdp_w=cfg.cpu_tdp_w,
            ram_w=cfg.ram_w,
            gpus=GPU in kinds,
            cpu=CPU in kinds,
            ram=RAM in kinds,
            node=NODE in kinds,
            clock=self._clock,
            cpu_scope=cfg.cpu_scope_choice[0],
            cpu_scope_root=self._job.tree_root(),
            timeout_s=cfg.discovery_timeout_s,
        )

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> EnergyTracker:
        """Create the run directory, take the first readings and start the background sampler."""
        if self._started_s is not None:
            raise UsageError("start() called twice; one EnergyTracker measures one run")
        self._started_utc = self._now_utc()
        self._owner = threading.current_thread()
        if self._log_dir is not None and self._job.writes:
            self.run_dir = self._job.run_dir(self._log_dir, self.config.run_name, resuming.reopen(self._resume))
            if self._resume is not None:  # before this writer reads epochs.csv's rows and header
                resuming.recover_killed(self.run_dir)
            self._writer = RunWriter(self.run_dir, power_trace=self.config.power_trace)
        totals, elapsed_s, self._timeline.steps = resuming.continued_totals(self._resume, self.run_dir)
        run = self.job_dir.name if self.job_dir else self.run_dir.name if self.run_dir else self.config.run_name
        self._rows = RowBuilder(self.config, run or "", totals, job_id=self.launch.job_id or "")
        self._started_s = self._clock() - elapsed_s  # the first readings' power.csv rows use it
        self._started_s = self._timeline.open(self._started_utc) - elapsed_s
        self._write_info()
        self._start_outputs(run or "")
        self._timeline.start_samplers()
        self._start_idle_beat()
        if self.rank == 0:
            level, line = start_line(self.run_state())
            logger.log(level, "energy-tracker: %s", line)
        self._warn_unmeasured_gpus()
        return self

    def stop(self, status: str = COMPLETE) -> Summary:
        """Close open epochs and phases, stop the sampler, finish ``run.json``; returns :meth:`summary`.

        Segments still open are written as ``interrupted``. Calling it again returns the summary.

        Raises:
            ConfigurationError: ``status`` is neither ``"complete"`` nor ``"interrupted"``.
        """
        check_status(status)
        if self._stopped or self._started_s is None:
            return self.summary()
        self._stopped = True
        if os.getpid() != self._pid:
            return self.summary()  # a forked child (a DataLoader worker) owns nothing of the parent's run
        self._stopped_s = self._clock()
        self._stopped_utc = self._now_utc()
        try:
            self._timeline.close_all()
        finally:
            if self._idle_beat is not None:
                self._idle_beat.set()
            self._timeline.stop_sampler()
            self._status = status
            self._write_info()
            if self._writer is not None:
                with self._beat_lock:  # no heartbeat written after the writer removed it
                    self._writer.close()
            self._job.finish()
            if self._sink_thread is not None:
                self._sink_thread.close()
        summary = self.summary()
        if self.rank == 0:  # DEBUG: the start line and the forecast are the run's two lines; summary() has the rest
            logger.debug("energy-tracker: %s", summary.one_line())
        return summary

    def state(self) -> dict[str, Any]:
        """What a later tracker needs to continue this run with :meth:`resume` (JSON-ready, picklable).

        Holds the run directory, the cumulative totals, the seconds measured and the steps counted so far.
        """
        if self._rows is None or self._started_s is None:
            return dict(self._resume) if self._resume else resuming.initial_state()
        return resuming.totals_as_dict(self._rows.totals, self._elapsed_s(), self.run_dir, self._timeline.steps)

    def resume(self, state: Mapping[str, Any]) -> None:
        """Continue the run that an earlier tracker's :meth:`state` describes; call before :meth:`start`.

        Rows are appended to the same run directory when it still exists (else a new one is made,
        with a warning), cumulative totals and elapsed time continue. The directory's ``epochs.csv``,
        when there is one, is the source of the totals (see :mod:`tracker.session.resume`).

        Raises:
            ConfigurationError: ``state`` is not what :meth:`state` returns.
            UsageError: the tracker has already started.
        """
        if self._started_s is not None:
            raise UsageError("resume() called after start(); call it before start()")
        self._resume = resuming.check_state(state)

    def __enter__(self) -> EnergyTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(COMPLETE if exc_type is None else INTERRUPTED)

    # ---- epochs and phases: the rules are the timeline's --------------------------------------------------------

    @contextlib.contextmanager
    def epoch(self, index: int, samples: int | None = None) -> Iterator[EnergyTracker]:
        """Measure one epoch; its row is written when the block ends (``interrupted`` if it raised)."""
        self.begin_epoch(index, samples)
        with self._closing():
            yield self

    @contextlib.contextmanager
    def phase(self, name: str, samples: int | None = None) -> Iterator[EnergyTracker]:
        """Measure a phase (``validation``, ``test``, ``inference``, ...), inside an epoch or not."""
        self.begin_phase(name, samples)
        with self._closing():
            yield self

    def begin_epoch(self, index: int, samples: int | None = None, note: str = "") -> None:
        """Open epoch ``index`` (for callbacks; prefer :meth:`epoch`).

        Args:
            index: the epoch's index.
            samples: items it will process, when known.
            note: a line of text its row's ``notes`` start with (an integration's word on it: a resumed
                epoch's rest), without ``;`` or a line break.

        Raises:
            ConfigurationError: ``index`` is not a non-negative int, or ``samples`` or ``note`` is invalid.
            UsageError: not started, an epoch is already open, or ``index`` was used before.
        """
        check_epoch_index(index)
        if not isinstance(note, str) or any(c in note for c in ";\r\n"):
            raise ConfigurationError(f"note={note!r}: give one line of text without ';' (it joins the row's notes)")
        self._require_started(f"epoch({index})")
        self._timeline.begin_epoch(index, samples, note)

    def begin_phase(self, name: str, samples: int | None = None, epoch: int | None = None) -> None:
        """Open a phase (for callbacks; prefer :meth:`phase`).

        Args:
            name: the phase's name.
            samples: items it will process, when known.
            epoch: the epoch its row names when no epoch is open (an evaluation just after its
                epoch's row closed); an open epoch's index wins.

        Raises:
            ConfigurationError: ``name`` is empty, ``"other"`` or ``"train"``, or ``samples`` or ``epoch`` is invalid.
            UsageError: not started, or a phase of that name is already open.
        """
        if epoch is not None and not is_count(epoch):
            raise ConfigurationError(f"epoch={epoch!r}: give the epoch index the phase belongs to (0, 1, ...) or None")
        check_phase_name(name)
        self._require_started(f"phase({name!r})")
        self._timeline.begin_phase(name, samples, epoch)

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

    def step(self, samples: int | None = None, *, global_step: int | None = None) -> None:
        """Count one optimizer step (and ``samples`` items: sequences, tokens) in the open epoch.

        On the training thread this costs a counter increment (no lock, no I/O, no hardware), but
        when ``row_every_n_steps`` or ``row_every_s`` makes the open epoch's row due: then its row is
        written here, the epoch going on in the next row, at an edge read as an epoch's edges are.
        With no epoch open, the step counts in the innermost open phase (or the ``other`` row).

        Args:
            samples: items the step processed, added to the row's ``samples``.
            global_step: the step's number when the trainer keeps one (its ``global_step``, continued
                after a resume); default: the step after the last one counted.

        Raises:
            ConfigurationError: ``samples`` or ``global_step`` is not a non-negative int.
            UsageError: the tracker is not running.
        """
        if self._started_s is None or self._stopped:
            self._require_started("step()")
        if global_step is not None and not is_count(global_step):
            raise ConfigurationError(f"global_step={global_step!r}: give the trainer's step number, an int >= 0")
        self._timeline.step(samples, global_step)

    @property
    def last_row(self) -> EpochRecord | None:
        """The last row written (an epoch's, a phase's or ``other``), ``None`` before the first.

        Its metric columns are not in it (they are in ``epochs.csv``); ``on_row`` gets each row as it is written.
        """
        return self._last_row

    @property
    def steps(self) -> int:
        """Optimizer steps counted so far (the last step's number; a resumed run's earlier ones included)."""
        return self._timeline.steps

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Add the user's metrics (loss, accuracy) to the innermost open epoch or phase's row.

        Raises:
            UsageError: no epoch or phase is open.
            ConfigurationError: ``metrics`` is not a mapping, or a name clashes with a tracker column.
        """
        self._timeline.log_metrics(metrics)

    # ---- results ------------------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        """The run's totals so far (or at the end) as a record; ``str()`` gives a short report.

        While the run goes on, the figures include the open epochs and phases up to now (a reading
        is taken, as at an epoch's edge: never waiting on a busy or slow sensor), and ``open`` names them.
        """
        if self._started_s is not None and not self._stopped and os.getpid() == self._pid:
            self._timeline.read_now()
        return Summary.build(self.run_state())

    def run_state(self) -> RunState:
        """The run as it is now, an immutable record (what :meth:`summary` and ``run.json`` are made of)."""
        rows = self._rows
        sensors = self.discovery.sensors
        by_sensors = {kind: joined([s.method for s in sensors if s.kind == kind]) for kind in KINDS}
        return RunState(
            config=self.config,
            run=rows.run if rows else "",
            run_dir=str(self.run_dir) if self.run_dir else None,
            status=self._status,
            started_utc=self._started_utc,
            stopped_utc=self._stopped_utc,
            duration_s=self._elapsed_s(),
            host=self.host,
            launch=self.launch,
            interval_s=self.interval_s,
            sensors=tuple({"name": s.name, "kind": s.kind, "method": s.method, "info": dict(s.info)} for s in sensors),
            absent=tuple(self.discovery.absent),
            health=dict(self.sensor_health),
            totals=rows.totals if rows else None,
            rows=rows.rows if rows else 0,
            process=self.process,
            methods=rows.methods if rows and rows.methods else by_sensors,
            forecast=rows.forecast if rows else None,
            break_even=rows.break_even if rows else None,
            steps=self._timeline.steps,
            so_far=tuple(self._so_far()),
            open=tuple(s.label for s in list(self._timeline.stack)[1:]) if not self._stopped else (),
        )

    def job_rows(self) -> list[dict[str, Any]]:
        """The rows so far of this run, or under a distributed launcher of its whole job, merged as they come.

        Each look reads only what every rank appended since the last (:mod:`tracker.logs.follow`), so
        calling it after every row costs the same at the thousandth row as at the first. One dict per
        epoch and phase: ``epoch``, ``phase``, ``end_utc``, ``duration_s``, ``energy_kwh``, ``co2_kg``,
        ``gpu_kwh``, ``cpu_kwh``, ``ram_kwh`` (kWh, kg CO2e), ``gpu_power_mean_w`` (W, ``None``
        when no GPU is measured), ``embodied_co2_kg`` and ``water_l`` (kg CO2e, L; ``None`` when not counted),
        ``node_kwh`` (the node's own meter, beside the energy; ``None`` without one on every machine), and
        ``ranks`` (how many ranks' rows it holds so far) of ``world_size``,
        ``status`` and ``last_step``. Empty without a log directory.
        """
        return self._job.rows(self.run_dir)

    @property
    def job_dir(self) -> Path | None:
        """The job's directory, whose ``ranks/`` hold every rank's shard; ``None`` outside a distributed job."""
        return self._job.dir

    @property
    def sensor_health(self) -> dict[str, Any]:
        """How each sensor has fared (status, failures, last error), by sensor name."""
        return self._timeline.health

    @property
    def sampling(self) -> Sampling:
        """How the sensors are being read: mode, whether the thread runs, ticks done, each sensor's interval (s)."""
        return self._timeline.sampling

    def sample(self, sensors: Collection[str] | None = None) -> list[Reading]:
        """Read the sensors now, on this thread, as the background thread does every ``interval_s``.

        With ``sampling="manual"`` this is how readings between edges are made (a test on a fake clock,
        a loop that samples itself); in the background mode it adds a reading. It waits for the hardware.

        Args:
            sensors: the names of the sensors to read (``energy.discovery.sensors``); default all.

        Returns:
            The readings made (a sensor that failed or is backing off gives none).

        Raises:
            UsageError: the tracker is not running.
            ConfigurationError: a name is not one of the sensors'.
        """
        self._require_started("sample()")
        return self._timeline.sample(sensors)

    # ---- internals ----------------------------------------------------------------------------------------------

    def _now_utc(self) -> str:
        return self._utc_clock().isoformat(timespec="milliseconds")

    def _elapsed_s(self) -> float:
        if self._started_s is None:
            return 0.0
        return (self._stopped_s if self._stopped_s is not None else self._clock()) - self._started_s

    @contextlib.contextmanager
    def _closing(self) -> Iterator[None]:
        try:
            yield
        except BaseException:  # Ctrl-C and sys.exit too: the row is written `interrupted`, the exception re-raised
            self.end(INTERRUPTED)
            raise
        self.end(COMPLETE)

    def _require_started(self, what: str) -> None:
        if self._started_s is None or self._stopped:
            raise UsageError(f"{what} called on a tracker that is not running; use `with EnergyTracker() as energy:`")

    def _warn_unmeasured_gpus(self) -> None:
        # "no device" is the user's choice (CUDA_VISIBLE_DEVICES=""); a missing library or driver is not.
        absent = [a for a in self.discovery.absent if a.kind == GPU and a.reason != "no device"]
        if absent and GPU in self.config.measure:
            first = absent[0]
            logger.warning(
                "energy-tracker: GPUs are not measured (%s: %s%s); to measure only CPU and RAM, and not see this, "
                "give measure=('cpu', 'ram')",
                first.reason,
                first.detail,
                f"; {first.hint}" if first.hint else "",
            )

    def _trace(self, readings: list[Reading]) -> None:
        if self._writer is None or os.getpid() != self._pid:
            return
        if self.config.power_trace:
            started_s = self._started_s or 0.0
            self._writer.write_power(power_rows(readings, started_s, self.host, self.rank, self._now_utc()))
        if threading.current_thread() is self._owner or self._stopped or self._clock() < self._next_beat_s:
            return
        self._beat()

    def _beat(self) -> None:
        if self._beat_lock.acquire(blocking=False):  # the fast lanes' and edge threads' batches come here too
            try:
                self._next_beat_s = self._clock() + HEARTBEAT_S
                self._beats += 1
                if self._writer is not None and not self._stopped:
                    self._writer.write_heartbeat(self._heartbeat())
            finally:
                self._beat_lock.release()

    def _start_idle_beat(self) -> None:
        """A process with no sensor has no readings to beat with: a thread of its own beats every ``HEARTBEAT_S``."""
        if self.discovery.sensors or self._writer is None:
            return
        stopped = self._idle_beat = threading.Event()

        def beat() -> None:
            while not stopped.wait(HEARTBEAT_S):
                self._beat()

        threading.Thread(target=beat, name="energy-tracker.heartbeat", daemon=True).start()

    def _heartbeat(self) -> dict[str, Any]:
        """What a reader needs to recover this run if the process dies: who writes it, and the open rows so far."""
        rows = self._so_far(1)  # the open epochs and phases; the ``other`` row goes on being written as it is due
        # seq only grows: a reader on another machine judges liveness by its change, never by comparing clocks
        return {"process": self.process, "seq": self._beats, "time_utc": self._now_utc(), "steps": self.steps,
                "open": rows}  # fmt: skip

    def _so_far(self, first: int = 0) -> list[dict[str, Any]]:
        """The open segments' rows as they stand (``running``), from the ``first`` (``other`` is 0); none if stopped."""
        rows, timeline = self._rows, self._timeline
        if rows is None or self._stopped or os.getpid() != self._pid:
            return []
        return [rows.preview(s, timeline.device_usages(s, self.host, self.rank)) for s in timeline.so_far(first)]

    def _start_outputs(self, run: str) -> None:
        """The sinks (global rank 0, one series per run: the job's rows) and the Prometheus exporter (every rank)."""
        cfg, outputs = self.config, list(self._sinks) if self.rank == 0 else []
        if outputs and self.job_dir is not None:
            source: JobRows | OwnRows = JobRows(self._job.follower(), self._started_utc)
        else:  # a resumed run's totals so far: every total it logs counts the earlier rows too
            source = OwnRows(self._rows.totals if self._rows is not None else None)
        if self._endpoint is not None or cfg.prometheus_pushgateway is not None:
            exporter = prometheus.Exporter(self._endpoint, cfg.prometheus_pushgateway, run,
                                           self.launch.job_id or "", self.rank)  # fmt: skip
            exporter.start_series(self.host, self.rank, [(s.kind, s.name) for s in self.discovery.sensors])
            outputs.append(exporter)
        if outputs:
            self._sink_thread = sinking.SinkThread(outputs, sinking.RunInfo(run, self.run_dir, cfg.experiment), source)

    def _emit(self, segment: Segment, status: str) -> None:
        if os.getpid() != self._pid or self._rows is None:
            return  # a forked child writes nothing: the parent owns the run
        devices = self._timeline.device_usages(segment, self.host, self.rank)
        row, device_rows = self._rows.add(segment, status, devices, self._clock() - (self._started_s or 0.0))
        if self._writer is not None:
            self._writer.write_epoch(row, device_rows)
        self._last_row, devices_written = as_records(row, device_rows)
        if self._on_row is not None:
            self._on_row(self._last_row, devices_written)
        if self._sink_thread is not None:
            self._sink_thread.put(self._last_row, devices_written)

    def _write_info(self) -> None:
        if self._writer is not None:
            self._writer.write_info(run_info(self.run_state()))


# The options' help, from their one declaration in tracker.session.config.
EnergyTracker.__doc__ = (
    (EnergyTracker.__doc__ or "")
    .replace("{log_dir}", option_help("log_dir"))
    .replace("    {options}", options_doc(indent=" " * 12))
)
