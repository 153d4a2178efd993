"""``EnergyTracker``: start/stop, per-epoch rows, totals, forecast, summary, resume.

The session connects the parts: :class:`~tracker.session.timeline.Timeline` (sampler and meter, the stack
of open segments) hands each closed segment to :meth:`EnergyTracker._emit`, which turns it into
rows (:mod:`tracker.session.rows`) and writes them (:mod:`tracker.logs.writer`). The epoch and phase methods come
from :class:`~tracker.session.phases.EpochsAndPhases`, resuming from :mod:`tracker.session.resume`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracker.errors import UsageError
from tracker.logs import liveness
from tracker.logs.merge import SHARDS_DIR
from tracker.logs.schema import COMPLETE, INTERRUPTED
from tracker.logs.writer import RunWriter, check_log_dir, new_run_dir, write_job
from tracker.measure.meter import joules_to_kwh
from tracker.sensors import GPU, KINDS, Clock, Discovery, Reading, Sensor, discover
from tracker.session import placement
from tracker.session import resume as resuming
from tracker.session.accounting import DeviceUsage
from tracker.session.config import DEFAULT_LOG_DIR, Config, check_hardware
from tracker.session.phases import EpochsAndPhases
from tracker.session.rows import RowBuilder
from tracker.session.segments import Segment
from tracker.session.summary import Summary, run_info
from tracker.session.timeline import Timeline, check_status, default_interval_s, power_rows

logger = logging.getLogger(__name__)

# How often the open epoch's energy so far is written to heartbeat.json, s (by the sampler's thread).
HEARTBEAT_S = 2.0

Exchange = Callable[[list[DeviceUsage]], "list[DeviceUsage] | None"]


def utc_now() -> str:
    """The current UTC time in ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class EnergyTracker(EpochsAndPhases):
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
        log_dir: where run directories are created; ``None`` writes nothing.
        run_name: the run directory's name (default ``<UTC time>-<host>-<pid>``; made unique).
        country: ISO 3166 alpha-3 or alpha-2 code for the grid's carbon intensity; default:
            ``ENERGY_TRACKER_COUNTRY``, else the time zone's country, else the world average.
        region: a sub-national region of ``country`` (e.g. a US state).
        cloud_provider, cloud_region: a cloud region's intensity instead (e.g. ``"gcp"``, ``"europe-west1"``).
        carbon_intensity_g_per_kwh: an explicit intensity, g CO2e/kWh.
        intensity_csv: an hourly ``timestamp,g_per_kwh`` CSV, applied to each row's hours.
        pue: power usage effectiveness of the facility, ≥ 1.0 (1.0: what the machine draws).
        interval_s: seconds between background readings; default 1.0 with energy counters,
            0.1 when a GPU has only polled power.
        epochs: the number of epochs, for the forecast of the whole run.
        gpu_devices: measure only these CUDA devices (indices or UUIDs); default all visible.
        cpu_tdp_w: the CPU's power in W for the estimate when RAPL is unreadable.
        ram_w: the RAM's power in W instead of the RAM model.
        measure: which kinds to measure, some of ``("gpu", "cpu", "ram")``.
        power_trace: also write every reading to ``power.csv``.
        jitter: how much of each sampling slot the reading time is spread over at random, 0 to 1
            (1: stratified random sampling, which keeps polled power from aliasing with a periodic load).
        sensors: use these sensors instead of discovering the machine's (tests, custom hardware).
        clock: monotonic clock in seconds (tests pass a fake one; it must be the sensors' clock).
        nvml, powercap_root: hardware roots for discovery (tests pass fakes).
        distributed: ``True``: a rank of a distributed job (one job directory, a shard per rank, each
            GPU counted once and CPU and RAM once per node, see :mod:`tracker.session.placement`);
            ``False``: this process alone; ``None`` (default): ``True`` when the launcher's
            ``WORLD_SIZE`` is above 1 (torchrun, accelerate, deepspeed).
        job_id: what every process of the job shares; names the job directory and merges runs that
            share it in reports; default ``TORCHELASTIC_RUN_ID``, ``SLURM_ARRAY_JOB_ID`` or ``SLURM_JOB_ID``.
        rank, host: who measures, for ``devices.csv`` in distributed runs (the rank is the
            launcher's ``RANK`` when ``distributed``).
        exchange: distributed runs only: called with this process's device usages at each row;
            returns every rank's on the writing rank and ``None`` on the others. Every rank then
            writes its ``other`` rows at the same boundaries, however short, so that the
            collectives line up.

    Raises:
        ConfigurationError: an option is invalid, or the hardware named does not exist.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = DEFAULT_LOG_DIR,
        *,
        run_name: str | None = None,
        country: str | None = None,
        region: str | None = None,
        cloud_provider: str | None = None,
        cloud_region: str | None = None,
        carbon_intensity_g_per_kwh: float | None = None,
        intensity_csv: str | os.PathLike[str] | None = None,
        pue: float = 1.0,
        interval_s: float | None = None,
        epochs: int | None = None,
        gpu_devices: Sequence[int | str] | None = None,
        cpu_tdp_w: float | None = None,
        ram_w: float | None = None,
        measure: Sequence[str] = KINDS,
        power_trace: bool = False,
        jitter: float = 1.0,
        sensors: Sequence[Sensor] | None = None,
        clock: Clock = time.monotonic,
        nvml: Any = None,
        powercap_root: str | os.PathLike[str] | None = None,
        distributed: bool | None = None,
        job_id: str | None = None,
        rank: int = 0,
        host: str | None = None,
        exchange: Exchange | None = None,
        config: Config | None = None,
    ) -> None:
        check_hardware(sensors=sensors, clock=clock, nvml=nvml, powercap_root=powercap_root, rank=rank, host=host,
                       exchange=exchange, config=config)  # fmt: skip
        self.config = config or Config(
            log_dir=log_dir, run_name=run_name, country=country, region=region, cloud_provider=cloud_provider,
            cloud_region=cloud_region, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
            intensity_csv=intensity_csv, pue=pue, interval_s=interval_s, epochs=epochs, gpu_devices=gpu_devices,
            cpu_tdp_w=cpu_tdp_w, ram_w=ram_w, measure=measure, power_trace=power_trace, jitter=jitter,
            distributed=distributed, job_id=job_id,
        )  # fmt: skip
        cfg = self.config
        self._log_dir = None if cfg.log_dir is None else check_log_dir(cfg.log_dir)
        self._clock = clock
        self.launch = self._place(exchange, rank)
        self.rank, self.host = self.launch.rank, host or os.uname().nodename
        self.discovery = Discovery(list(sensors)) if sensors is not None else self._discover(nvml, powercap_root)
        self.interval_s = cfg.interval_s or default_interval_s(self.discovery.sensors)
        self._exchange = exchange
        self._pid = os.getpid()
        self._timeline = Timeline(
            self.discovery.sensors, self.interval_s, clock=clock, jitter=cfg.jitter, now_utc=utc_now,
            on_close=self._emit, on_readings=self._trace, every_boundary=exchange is not None,
        )  # fmt: skip
        self.run_dir: Path | None = None
        self.job_dir: Path | None = None
        self._writer: RunWriter | None = None
        self._rows: RowBuilder | None = None
        self._started_s: float | None = None
        self._started_utc = ""
        self._stopped = False
        self._stopped_s: float | None = None
        self._stopped_utc: str | None = None
        self._status = "running"
        self._resume: Mapping[str, Any] | None = None
        self._owner: threading.Thread | None = None
        self._next_beat_s = float("-inf")
        self._beat_lock = threading.Lock()
        self.process = liveness.this_process()

    def _place(self, exchange: Exchange | None, rank: int) -> placement.Launch:
        """Where this process sits: the launcher's ranks when sharded, else ``rank`` alone."""
        cfg = self.config
        if exchange is not None or cfg.distributed is False:
            return placement.Launch(rank=rank)  # the caller gathers rows itself (Lightning), or measures alone
        launch = placement.detect(job_id=cfg.job_id)
        if cfg.distributed is None and not launch.distributed:
            return placement.Launch(rank=rank, job_id=launch.job_id, job_source=launch.job_source)
        self._sharded = True
        return launch

    _sharded = False

    def _discover(self, nvml: Any, powercap_root: Any) -> Discovery:
        cfg = self.config
        kinds = placement.assign(cfg.measure, self.launch.local_rank, self.launch.local_world_size).kinds
        return discover(
            nvml=nvml, gpu_devices=cfg.gpu_devices, powercap_root=powercap_root, cpu_tdp_w=cfg.cpu_tdp_w,
            ram_w=cfg.ram_w, gpus=GPU in kinds, cpu="cpu" in kinds, ram="ram" in kinds, clock=self._clock,
        )  # fmt: skip

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> EnergyTracker:
        """Create the run directory, take the first readings and start the background sampler."""
        if self._started_s is not None:
            raise UsageError("start() called twice; one EnergyTracker measures one run")
        self._started_utc = utc_now()
        self._owner = threading.current_thread()
        if self._log_dir is not None and self._is_writer:
            self.run_dir = resuming.reopen(self._resume) or self._new_run_dir(self._log_dir)
            if self._sharded and self.run_dir.parent.name == SHARDS_DIR:  # a resumed shard keeps its job
                self.job_dir = self.run_dir.parent.parent
            self._writer = RunWriter(self.run_dir, power_trace=self.config.power_trace)
        name = self.job_dir.name if self.job_dir else self.run_dir.name if self.run_dir else self.config.run_name
        self._rows = RowBuilder(self.config, name or "")
        self._started_s = self._clock() - self._resumed_elapsed_s()  # the first readings' power.csv rows use it
        now_s = self._timeline.open(self._started_utc)
        self._started_s = now_s - self._resumed_elapsed_s()
        self._write_info()
        self._timeline.start_samplers()
        logger.debug("energy-tracker: measuring %s", [s.name for s in self.discovery.sensors])
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
        self._stopped_utc = utc_now()
        try:
            self._timeline.close_all()
        finally:
            self._timeline.stop_sampler()
            self._status = status
            self._write_info()
            if self._writer is not None:
                self._writer.close()
            if self.job_dir is not None:
                write_job(self.job_dir)
        summary = self.summary()
        if self.rank == 0:
            logger.info("energy-tracker: %s", summary.one_line())
        return summary

    def state(self) -> dict[str, Any]:
        """What a later tracker needs to continue this run with :meth:`resume` (JSON-ready, picklable).

        Holds the run directory, the cumulative totals and the seconds measured so far.
        """
        if self._rows is None or self._started_s is None:
            return dict(self._resume) if self._resume else resuming.totals_as_dict(resuming.empty_totals(), 0.0, None)
        elapsed_s = (self._stopped_s or self._clock()) - self._started_s
        return resuming.totals_as_dict(self._rows.totals, elapsed_s, self.run_dir)

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
        resuming.totals_from_state(resuming.check_state(state))
        self._resume = dict(state)

    def __enter__(self) -> EnergyTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(COMPLETE if exc_type is None else INTERRUPTED)

    # ---- results ------------------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        """The run's totals so far (or at the end) as a record; ``str()`` gives a short report."""
        return Summary.build(self, self._rows)

    @property
    def sensor_health(self) -> dict[str, Any]:
        """How each sensor has fared (status, failures, last error), by sensor name."""
        return self._timeline.health

    # ---- internals ----------------------------------------------------------------------------------------------

    # Tests and tools reach into these (``energy._sampler.tick()``); they live in the timeline.
    _sampler = property(lambda self: self._timeline.sampler)
    _meter = property(lambda self: self._timeline.meter)
    _stack = property(lambda self: self._timeline.stack)

    @property
    def _is_writer(self) -> bool:
        return self.rank == 0 or self._sharded  # sharded: every rank writes its own shard

    def _new_run_dir(self, log_dir: Path) -> Path:
        """A run directory of its own; sharded, this rank's shard under the job's directory."""
        if not self._sharded:
            return new_run_dir(log_dir, self.config.run_name)
        if (
            self._resume is None
            and self.launch.world_size > self.launch.local_world_size
            and not (self.config.run_name or self.launch.job_id)
        ):
            logger.warning(
                "energy-tracker: a job on several nodes without a job id (TORCHELASTIC_RUN_ID is 'none', no "
                "SLURM_JOB_ID): each node writes a job directory of its own; give run_name= or job_id=, or "
                "torchrun --rdzv-id, for one"
            )  # fmt: skip
        name = placement.job_dir_name(self.launch, self.config.run_name, self.host, os.getppid())
        self.job_dir = log_dir / name
        shards = self.job_dir / SHARDS_DIR
        shards.mkdir(parents=True, exist_ok=True)  # every rank may come first; none waits for another
        return new_run_dir(shards, placement.shard_name(self.host, self.rank))

    def _warn_unmeasured_gpus(self) -> None:
        # "no device" is the user's choice (CUDA_VISIBLE_DEVICES=""); a missing library or driver is not.
        absent = [a for a in self.discovery.absent if a.kind == GPU and a.reason != "no device"]
        if absent and GPU in self.config.measure:
            logger.warning(
                "energy-tracker: GPUs are not measured (%s: %s%s); to measure only CPU and RAM, and not see this, "
                "give measure=('cpu', 'ram')",
                absent[0].reason, absent[0].detail, f"; {absent[0].hint}" if absent[0].hint else "",
            )  # fmt: skip

    def _resumed_elapsed_s(self) -> float:
        if self._resume is None or self._rows is None:
            return 0.0
        self._rows.totals, elapsed_s = resuming.continued_totals(self._resume, self.run_dir)
        return elapsed_s

    def _trace(self, readings: list[Reading]) -> None:
        if self._writer is None or os.getpid() != self._pid:
            return
        if self.config.power_trace:
            started_s = self._started_s or 0.0
            self._writer.write_power(power_rows(readings, started_s, self.host, self.rank, utc_now()))
        if threading.current_thread() is self._owner or self._stopped or self._clock() < self._next_beat_s:
            return
        if self._beat_lock.acquire(blocking=False):  # the fast lanes' and edge threads' batches come here too
            try:
                self._next_beat_s = self._clock() + HEARTBEAT_S
                self._writer.write_heartbeat(self._heartbeat())
            finally:
                self._beat_lock.release()

    def _heartbeat(self) -> dict[str, Any]:
        """What a reader needs to recover this run if the process dies: who writes it, and the open rows so far."""
        cfg, rows = self.config, []
        for segment, by_kind_j, duration_s in self._timeline.open_segments():
            kwh = {kind: joules_to_kwh(by_kind_j.get(kind, 0.0)) for kind in KINDS}
            energy_kwh = sum(kwh.values())
            g_per_kwh = cfg.intensity.g_per_kwh
            rows.append({
                "epoch": segment.epoch, "phase": segment.phase, "start_utc": segment.opened_utc,
                "duration_s": duration_s, **{f"{kind}_kwh": value for kind, value in kwh.items()},
                "energy_kwh": energy_kwh, "pue": cfg.pue, "carbon_intensity_g_per_kwh": g_per_kwh,
                "co2_kg": energy_kwh * cfg.pue * g_per_kwh / 1000 if g_per_kwh is not None else None,
            })  # fmt: skip
        return {"process": self.process, "time_utc": utc_now(), "open": rows}

    def _emit(self, segment: Segment, status: str) -> None:
        if os.getpid() != self._pid or self._rows is None:
            return  # a forked child writes nothing: the parent owns the run
        devices = self._timeline.device_usages(segment, self.host, self.rank)
        if self._exchange is not None:
            devices = self._exchange(devices)
            if devices is None:
                return
        row, device_rows = self._rows.add(segment, status, devices, self._clock() - (self._started_s or 0.0))
        if self._writer is not None:
            self._writer.write_epoch(row, device_rows)

    def _write_info(self) -> None:
        if self._writer is not None:
            self._writer.write_info(run_info(self))
