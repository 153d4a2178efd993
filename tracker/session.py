"""``EnergyTracker``: start/stop, epochs and phases, per-epoch rows, totals, forecast, summary."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracker import resume as resuming
from tracker.accounting import DeviceUsage
from tracker.config import DEFAULT_LOG_DIR, Config, check_hardware
from tracker.errors import ConfigurationError, UsageError
from tracker.logs import EPOCHS_CSV, RunWriter, check_log_dir, new_run_dir, read_csv_rows
from tracker.meter import Meter, SensorTotals, Snapshot
from tracker.records import COMPLETE, INTERRUPTED, OTHER_PHASE
from tracker.rows import RowBuilder
from tracker.sampler import Sampler
from tracker.segments import Segment
from tracker.sensors import GPU, KINDS, Clock, Discovery, Sensor, discover
from tracker.summary import Summary, run_info

logger = logging.getLogger(__name__)

Exchange = Callable[[list[DeviceUsage]], "list[DeviceUsage] | None"]
MIN_OTHER_ROW_S = 1.0


def utc_now() -> str:
    """The current UTC time in ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
    :class:`~tracker.records.EpochRecord`) and one row per device to ``devices.csv``.

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
        rank, host: who measures, for ``devices.csv`` in distributed runs.
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
        )  # fmt: skip
        cfg = self.config
        self._log_dir = None if cfg.log_dir is None else check_log_dir(cfg.log_dir)
        self._clock = clock
        self.discovery = Discovery(list(sensors)) if sensors is not None else self._discover(nvml, powercap_root)
        self.interval_s = cfg.interval_s or _default_interval(self.discovery.sensors)
        self.rank, self.host = rank, host or platform.node()
        self._exchange = exchange
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._meter = Meter(self.interval_s)
        self._sampler = Sampler(
            self.discovery.sensors, self._on_readings, interval_s=self.interval_s, clock=clock, jitter=cfg.jitter
        )
        self._stack: list[Segment] = []
        self._epochs_seen: set[int] = set()
        self._last_epoch: int | None = None
        self.run_dir: Path | None = None
        self._writer: RunWriter | None = None
        self._rows: RowBuilder | None = None
        self._started_s: float | None = None
        self._started_utc = ""
        self._stopped = False
        self._stopped_s: float | None = None
        self._status = "running"
        self._resume: Mapping[str, Any] | None = None

    def _discover(self, nvml: Any, powercap_root: Any) -> Discovery:
        cfg = self.config
        return discover(
            nvml=nvml, gpu_devices=cfg.gpu_devices, powercap_root=powercap_root, cpu_tdp_w=cfg.cpu_tdp_w,
            ram_w=cfg.ram_w, gpus=GPU in cfg.measure, cpu="cpu" in cfg.measure, ram="ram" in cfg.measure,
            clock=self._clock,
        )  # fmt: skip

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> EnergyTracker:
        """Create the run directory, take the first readings and start the background sampler."""
        if self._started_s is not None:
            raise UsageError("start() called twice; one EnergyTracker measures one run")
        self._started_utc = utc_now()
        if self._log_dir is not None and self._is_writer:
            self.run_dir = self._reopen() or new_run_dir(self._log_dir, self.config.run_name)
            self._writer = RunWriter(self.run_dir, power_trace=self.config.power_trace)
        self._rows = RowBuilder(self.config, self.run_dir.name if self.run_dir else self.config.run_name or "")
        snapshot, now_s, _ = self._boundary()
        self._started_s = now_s - self._resumed_elapsed_s()
        self._stack = [Segment(None, OTHER_PHASE, self._started_utc)]
        self._stack[0].activate(snapshot, now_s)
        self._write_info()
        self._sampler.start()
        logger.debug("energy-tracker: measuring %s", [s.name for s in self.discovery.sensors])
        self._warn_unmeasured_gpus()
        return self

    def stop(self, status: str = COMPLETE) -> Summary:
        """Close open epochs and phases, stop the sampler, finish ``run.json``; returns :meth:`summary`.

        Segments still open are written as ``interrupted``. Calling it again returns the summary.

        Raises:
            ConfigurationError: ``status`` is neither ``"complete"`` nor ``"interrupted"``.
        """
        _status(status)
        if self._stopped or self._started_s is None:
            return self.summary()
        self._stopped = True
        if os.getpid() != self._pid:
            return self.summary()  # a forked child (a DataLoader worker) owns nothing of the parent's run
        self._stopped_s = self._clock()
        try:
            while len(self._stack) > 1:
                self._close_top(INTERRUPTED)
            self._flush_other(force=True)
        finally:
            self._sampler.stop()
            self._sampler.close_sensors()
            self._status = status
            self._write_info()
            if self._writer is not None:
                self._writer.close()
        summary = self.summary()
        if self._is_writer:
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
        when there is one, is the source of the totals (see :mod:`tracker.resume`).

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

    # ---- epochs and phases --------------------------------------------------------------------------------------

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

    @contextlib.contextmanager
    def _closing(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
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
        open_epoch = next((s for s in self._stack if s.phase == "train"), None)
        if open_epoch is not None:
            raise UsageError(f"epoch({index}) opened while {open_epoch.label} is still open; close it first")
        if index in self._epochs_seen:
            raise UsageError(f"epoch({index}) was already measured in this run; epoch indices must be unique")
        self._epochs_seen.add(index)
        self._push(Segment(index, "train", utc_now(), _samples(samples)))

    def begin_phase(self, name: str, samples: int | None = None) -> None:
        """Open a phase (for callbacks; prefer :meth:`phase`).

        Raises:
            ConfigurationError: ``name`` is empty, ``"other"`` or ``"train"``, or ``samples`` is invalid.
            UsageError: not started, or a phase of that name is already open.
        """
        if not isinstance(name, str) or not name or name in (OTHER_PHASE, "train"):
            raise ConfigurationError(
                f"phase name {name!r}: give a name such as 'validation', 'test' or 'inference' "
                "('train' is the epoch itself, 'other' is what lies outside epochs)"
            )
        self._require_started(f"phase({name!r})")
        if any(s.phase == name for s in self._stack):
            raise UsageError(f"phase({name!r}) opened inside itself; close the open {name!r} phase first")
        epoch = next((s.epoch for s in reversed(self._stack) if s.epoch is not None), None)
        self._push(Segment(epoch, name, utc_now(), _samples(samples)))

    def end(self, status: str = COMPLETE) -> None:
        """Close the innermost open epoch or phase and write its row.

        Raises:
            ConfigurationError: ``status`` is neither ``"complete"`` nor ``"interrupted"``.
            UsageError: nothing is open.
        """
        _status(status)
        if len(self._stack) < 2:
            raise UsageError("end() called with no epoch or phase open")
        self._close_top(status)

    def add_samples(self, count: int) -> None:
        """Count ``count`` more items (images, tokens, queries) in the innermost open epoch or phase."""
        _samples(count)
        if len(self._stack) > 1:
            self._stack[-1].add_samples(count)

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Add the user's metrics (loss, accuracy) to the innermost open epoch or phase's row.

        Raises:
            UsageError: no epoch or phase is open.
            ConfigurationError: ``metrics`` is not a mapping, or a name clashes with a tracker column.
        """
        if not isinstance(metrics, Mapping):
            raise ConfigurationError(f"log_metrics({metrics!r}): give a dict of metric names and values")
        if len(self._stack) < 2:
            raise UsageError("log_metrics() called outside an epoch or phase; call it inside `with energy.epoch(i):`")
        clash = [k for k in metrics if k in accounting_columns()]
        if clash:
            raise ConfigurationError(f"metric names {clash} are tracker columns; rename them (e.g. 'user_{clash[0]}')")
        self._stack[-1].metrics.update(metrics)

    # ---- results ------------------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        """The run's totals so far (or at the end) as a record; ``str()`` gives a short report."""
        return Summary.build(self, self._rows)

    @property
    def sensor_health(self) -> dict[str, Any]:
        """How each sensor has fared (status, failures, last error), by sensor name."""
        return self._sampler.health

    # ---- internals ----------------------------------------------------------------------------------------------

    @property
    def _is_writer(self) -> bool:
        return self.rank == 0

    def _require_started(self, what: str) -> None:
        if self._started_s is None or self._stopped:
            raise UsageError(f"{what} called on a tracker that is not running; use `with EnergyTracker() as energy:`")

    def _warn_unmeasured_gpus(self) -> None:
        # "no device" is the user's choice (CUDA_VISIBLE_DEVICES=""); a missing library or driver is not.
        absent = [a for a in self.discovery.absent if a.kind == GPU and a.reason != "no device"]
        if absent and GPU in self.config.measure:
            logger.warning(
                "energy-tracker: GPUs are not measured (%s: %s%s); to measure only CPU and RAM, and not see this, "
                "give measure=('cpu', 'ram')",
                absent[0].reason, absent[0].detail, f"; {absent[0].hint}" if absent[0].hint else "",
            )  # fmt: skip

    def _reopen(self) -> Path | None:
        saved = self._resume["run_dir"] if self._resume else None
        if saved is None:
            return None
        if Path(saved).is_dir():
            return Path(saved)
        logger.warning("energy-tracker: the run directory to resume, %s, is gone; starting a new one", saved)
        return None

    def _resumed_elapsed_s(self) -> float:
        if self._resume is None or self._rows is None:
            return 0.0
        on_disk = read_csv_rows(self.run_dir / EPOCHS_CSV) if self.run_dir is not None else []
        if on_disk:
            self._rows.totals, elapsed_s = resuming.totals_from_rows(on_disk)
            return elapsed_s
        self._rows.totals = resuming.totals_from_state(self._resume)
        return float(self._resume["elapsed_s"])

    def _on_readings(self, readings: list[Any]) -> None:
        with self._lock:
            self._meter.add_all(readings)
        if self._writer is not None and self.config.power_trace and os.getpid() == self._pid:
            self._writer.write_power(_power_rows(readings, self._started_s or 0.0, self.host, self.rank))

    def _boundary(self) -> tuple[Snapshot, float, dict[str, float]]:
        with self._lock:
            self._sampler.sample_now()
            return self._meter.snapshot(), self._clock(), self._meter.take_peaks_w()

    def _push(self, segment: Segment) -> None:
        snapshot, now_s, peaks = self._boundary()
        self._stack[-1].deactivate(snapshot, now_s, peaks, utc_now())
        if len(self._stack) == 1:
            self._flush_other(force=False)
        self._stack.append(segment)
        segment.activate(snapshot, now_s)

    def _close_top(self, status: str) -> None:
        snapshot, now_s, peaks = self._boundary()
        segment = self._stack.pop()
        segment.deactivate(snapshot, now_s, peaks, utc_now())
        self._stack[-1].activate(snapshot, now_s)
        if segment.phase == "train":
            self._last_epoch = segment.epoch
        self._emit(segment, status)

    def _flush_other(self, force: bool) -> None:
        other = self._stack[0]
        if force and other.since is not None:
            snapshot, now_s, peaks = self._boundary()
            other.deactivate(snapshot, now_s, peaks, utc_now())
        # With an exchange every rank must reach the same collectives, so whether a row is written
        # cannot depend on a rank's own timing: the "other" row is then flushed at every boundary.
        due = other.active_s >= MIN_OTHER_ROW_S or (force and other.active_s > 0)
        if due or self._exchange is not None:
            other.epoch = self._last_epoch
            self._emit(other, COMPLETE)
            fresh = Segment(None, OTHER_PHASE, utc_now())
            if other.since is not None:
                fresh.activate(other.since, other.since_s)
            self._stack[0] = fresh

    def _emit(self, segment: Segment, status: str) -> None:
        if os.getpid() != self._pid or self._rows is None:
            return  # a forked child writes nothing: the parent owns the run
        devices = self._device_usages(segment)
        if self._exchange is not None:
            devices = self._exchange(devices)
            if devices is None:
                return
        row, device_rows = self._rows.add(segment, status, devices, self._clock() - (self._started_s or 0.0))
        if self._writer is not None:
            self._writer.write_epoch(row, device_rows)

    def _device_usages(self, segment: Segment) -> list[DeviceUsage]:
        health = self._sampler.health
        return [
            DeviceUsage(
                sensor=s.name, kind=s.kind, method=s.method, device=str(s.info.get("name") or s.info.get("model", "")),
                uuid=str(s.info.get("uuid", "")), host=self.host, rank=self.rank, status=health[s.name].status,
                totals=segment.usage.sensors.get(s.name, _EMPTY), peak_w=segment.peaks_w.get(s.name),
            )  # fmt: skip
            for s in self.discovery.sensors
        ]

    def _write_info(self) -> None:
        if self._writer is not None:
            self._writer.write_info(run_info(self))


_EMPTY = SensorTotals()


def accounting_columns() -> set[str]:
    """Column names the tracker writes, which user metrics may not reuse."""
    from tracker.records import EPOCH_COLUMNS

    return set(EPOCH_COLUMNS)


def _default_interval(sensors: Sequence[Sensor]) -> float:
    # Counters lose nothing between reads, so 1 s suffices. Polled power on a bursty load errs by
    # about ΔP·h/√12 per transition (see tests/test_accuracy.py): 0.05 s keeps a 60 s epoch of a
    # 50↔350 W, 0.3 s square wave within ~2.5 % at 3σ, where MEASUREMENT §7.2's 0.1 s gives ~5 %.
    return 0.05 if any(s.kind == GPU and s.method == "power_polling" for s in sensors) else 1.0


def _status(value: Any) -> str:
    if value not in (COMPLETE, INTERRUPTED):
        raise ConfigurationError(f"status={value!r}: give {COMPLETE!r} or {INTERRUPTED!r}")
    return value


def _samples(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"samples={value!r}: give the number of items processed as a non-negative int")
    return value


def _power_rows(readings: list[Any], started_s: float, host: str, rank: int) -> list[tuple[Any, ...]]:
    now_utc = utc_now()
    return [
        (now_utc, r.time_s - started_s, host, rank, r.sensor, r.power_w, r.energy_j)
        for r in readings
        if r.power_w is not None or r.energy_j is not None
    ]

