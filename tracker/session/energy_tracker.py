"""``EnergyTracker``: start/stop, per-epoch rows, totals, forecast, summary, resume.

The session connects the parts: :class:`~tracker.session.timeline.Timeline` (sampler and meter, the stack
of open segments) hands each closed segment to :meth:`EnergyTracker._emit`, which turns it into
rows (:mod:`tracker.session.rows`) and writes them (:mod:`tracker.logs.writer`). The epoch and phase methods come
from :class:`~tracker.session.phases.EpochsAndPhases`, resuming from :mod:`tracker.session.resume`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracker.errors import UsageError
from tracker.logs.schema import COMPLETE, INTERRUPTED
from tracker.logs.writer import RunWriter, check_log_dir, new_run_dir
from tracker.measure.sampler import default_interval_s
from tracker.sensors import CPU, GPU, RAM, Discovery, Reading, discover
from tracker.session import resume as resuming
from tracker.session.accounting import DeviceUsage
from tracker.session.config import Config, Hardware, options_doc, resolve_config, split_options
from tracker.session.phases import EpochsAndPhases
from tracker.session.rows import RowBuilder
from tracker.session.segments import Segment
from tracker.session.summary import Summary, run_info
from tracker.session.timeline import Timeline, check_status, power_rows

logger = logging.getLogger(__name__)

Exchange = Callable[[list[DeviceUsage]], "list[DeviceUsage] | None"]
_NOT_GIVEN: Any = object()


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
        self.config = resolve_config(config, given)
        clock = hardware.clock
        cfg = self.config
        self._log_dir = None if cfg.log_dir is None else check_log_dir(cfg.log_dir)
        self._clock = clock
        sensors, exchange = hardware.sensors, hardware.exchange
        self.discovery = Discovery(list(sensors)) if sensors is not None else self._discover(hardware)
        self.interval_s = cfg.interval_s or default_interval_s(self.discovery.sensors)
        self.rank, self.host = hardware.rank, hardware.host or os.uname().nodename
        self._exchange = exchange
        self._pid = os.getpid()
        self._timeline = Timeline(
            self.discovery.sensors, self.interval_s, clock=clock, jitter=cfg.jitter, now_utc=utc_now,
            on_close=self._emit, on_readings=self._trace, every_boundary=exchange is not None,
        )  # fmt: skip
        self.run_dir: Path | None = None
        self._writer: RunWriter | None = None
        self._rows: RowBuilder | None = None
        self._started_s: float | None = None
        self._started_utc = ""
        self._stopped = False
        self._stopped_s: float | None = None
        self._stopped_utc: str | None = None
        self._status = "running"
        self._resume: Mapping[str, Any] | None = None

    def _discover(self, hardware: Hardware) -> Discovery:
        cfg = self.config
        return discover(
            nvml=hardware.nvml,
            gpu_devices=cfg.gpu_devices,
            powercap_root=hardware.powercap_root,
            cpu_tdp_w=cfg.cpu_tdp_w,
            ram_w=cfg.ram_w,
            gpus=GPU in cfg.measure,
            cpu=CPU in cfg.measure,
            ram=RAM in cfg.measure,
            clock=self._clock,
        )

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> EnergyTracker:
        """Create the run directory, take the first readings and start the background sampler."""
        if self._started_s is not None:
            raise UsageError("start() called twice; one EnergyTracker measures one run")
        self._started_utc = utc_now()
        if self._log_dir is not None and self._is_writer:
            self.run_dir = resuming.reopen(self._resume) or new_run_dir(self._log_dir, self.config.run_name)
            self._writer = RunWriter(self.run_dir, power_trace=self.config.power_trace)
        self._rows = RowBuilder(self.config, self.run_dir.name if self.run_dir else self.config.run_name or "")
        self._started_s = self._clock() - self._resumed_elapsed_s()  # the first readings' power.csv rows use it
        now_s = self._timeline.open(self._started_utc)
        self._started_s = now_s - self._resumed_elapsed_s()
        self._write_info()
        self._timeline.sampler.start()
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
        return self._timeline.sampler.health

    # ---- internals ----------------------------------------------------------------------------------------------

    # Tests and tools reach into these (``energy._sampler.tick()``); they live in the timeline.
    _sampler = property(lambda self: self._timeline.sampler)
    _meter = property(lambda self: self._timeline.meter)
    _stack = property(lambda self: self._timeline.stack)

    @property
    def _is_writer(self) -> bool:
        return self.rank == 0

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
        if self._writer is not None and self.config.power_trace and os.getpid() == self._pid:
            started_s = self._started_s or 0.0
            self._writer.write_power(power_rows(readings, started_s, self.host, self.rank, utc_now()))

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


# The options' help, from their one declaration in tracker.session.config.
EnergyTracker.__doc__ = (
    (EnergyTracker.__doc__ or "")
    .replace("{log_dir}", Config.__dataclass_fields__["log_dir"].metadata["help"])
    .replace("    {options}", options_doc(indent=" " * 12))
)
