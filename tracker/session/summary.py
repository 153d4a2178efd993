"""The run's totals as a record, and the contents of ``run.json``, both made from a :class:`RunState`.

The session hands over an immutable :class:`RunState` (what the run is at one moment); nothing here
reads the tracker itself.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from tracker.logs.totals import Totals
from tracker.sensors import CPU, GPU, RAM, Absent
from tracker.session.accounting import Forecast
from tracker.session.config import Config
from tracker.session.placement import Launch


@dataclass(frozen=True)
class RunState:
    """A run at one moment: everything :class:`Summary` and ``run.json`` are made of.

    Attributes:
        config: the run's options; run: its name; run_dir: its directory (``None``: nothing written).
        status: ``running``, ``complete`` or ``interrupted``.
        started_utc, stopped_utc: ISO 8601 UTC times of start and stop (``None`` while running).
        duration_s: seconds measured, s (a resumed run's earlier seconds included).
        host: the machine; launch: where this process sits in its job; interval_s: seconds between readings.
        sensors: each sensor's name, kind, method and info; absent: the sources not found, and why.
        health: how each sensor has fared, by name.
        totals: the cumulative totals (``None`` before start); rows: rows written.
        methods: how each kind is measured, ``+``-joined, or ``absent``.
        forecast: the whole run extrapolated, once known; break_even: inference queries to equal training.
        process: who writes the run (host, pid, kernel start time), for telling a killed run from a running one.
    """

    config: Config
    run: str
    run_dir: str | None
    status: str
    started_utc: str
    stopped_utc: str | None
    duration_s: float
    host: str
    launch: Launch
    interval_s: float
    sensors: tuple[dict[str, Any], ...]
    absent: tuple[Absent, ...]
    health: dict[str, Any]
    totals: Totals | None
    rows: int
    methods: dict[str, str]
    forecast: Forecast | None
    break_even: float | None
    process: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """A run's totals.

    Attributes:
        run: the run's name; run_dir: its directory (``None`` when nothing is written).
        status: ``running``, ``complete`` or ``interrupted``.
        epochs: epochs finished; rows: rows written.
        duration_s: seconds since start, s.
        gpu_kwh, cpu_kwh, ram_kwh, energy_kwh: IT energy by component and in all, kWh.
        energy_kwh_low, energy_kwh_high: the band of ``energy_kwh``.
        co2_kg, co2_kg_low, co2_kg_high: emissions and band, kg CO2e.
        pue: the PUE applied; carbon_intensity_g_per_kwh, intensity_method, intensity_source: the grid.
        gpu_method, cpu_method, ram_method: how each component was obtained.
        forecast_total_kwh, forecast_total_co2_kg: the whole run, when the number of epochs is known.
        break_even_queries: inference queries to equal the training energy, when measured.
    """

    run: str
    run_dir: str | None
    status: str
    epochs: int
    rows: int
    duration_s: float
    gpu_kwh: float
    cpu_kwh: float
    ram_kwh: float
    energy_kwh: float
    energy_kwh_low: float
    energy_kwh_high: float
    co2_kg: float
    co2_kg_low: float
    co2_kg_high: float
    pue: float
    carbon_intensity_g_per_kwh: float
    intensity_method: str
    intensity_source: str
    gpu_method: str
    cpu_method: str
    ram_method: str
    forecast_total_kwh: float | None = None
    forecast_total_co2_kg: float | None = None
    break_even_queries: float | None = None

    @classmethod
    def build(cls, state: RunState) -> Summary:
        """The summary of a run's state."""
        intensity, forecast, methods = state.config.intensity, state.forecast, state.methods
        totals = state.totals or Totals()
        return cls(
            run=state.run,
            run_dir=state.run_dir,
            status=state.status,
            epochs=totals.epochs,
            rows=state.rows,
            duration_s=state.duration_s,
            gpu_kwh=totals.gpu_kwh,
            cpu_kwh=totals.cpu_kwh,
            ram_kwh=totals.ram_kwh,
            energy_kwh=totals.energy_kwh,
            energy_kwh_low=totals.energy_kwh_low,
            energy_kwh_high=totals.energy_kwh_high,
            co2_kg=totals.co2_kg,
            co2_kg_low=totals.co2_kg_low,
            co2_kg_high=totals.co2_kg_high,
            pue=state.config.pue,
            carbon_intensity_g_per_kwh=intensity.g_per_kwh,
            intensity_method=intensity.method,
            intensity_source=intensity.source,
            gpu_method=methods[GPU],
            cpu_method=methods[CPU],
            ram_method=methods[RAM],
            forecast_total_kwh=forecast.total_kwh if forecast else None,
            forecast_total_co2_kg=forecast.total_co2_kg if forecast else None,
            break_even_queries=state.break_even,
        )

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain dict (JSON-ready)."""
        return asdict(self)

    def one_line(self) -> str:
        """One log line: energy, CO2 with band, and where the figures came from."""
        return (
            f"{self.run or 'run'}: {self.energy_kwh:.4g} kWh, {self.co2_kg:.3g} kg CO2e "
            f"({self.co2_kg_low:.3g}–{self.co2_kg_high:.3g}) over {self.epochs} epochs in {self.duration_s:.1f} s; "
            f"gpu {self.gpu_method}, cpu {self.cpu_method}, ram {self.ram_method}"
        )

    def __str__(self) -> str:
        lines = [
            f"Energy tracker — {self.run or 'run'} ({self.status})",
            f"  epochs finished   {self.epochs}   ({self.duration_s:.1f} s)",
            f"  energy            {self.energy_kwh:.6g} kWh  ({self.energy_kwh_low:.3g}–{self.energy_kwh_high:.3g})",
            f"    gpu             {self.gpu_kwh:.6g} kWh  [{self.gpu_method}]",
            f"    cpu             {self.cpu_kwh:.6g} kWh  [{self.cpu_method}]",
            f"    ram             {self.ram_kwh:.6g} kWh  [{self.ram_method}]",
            f"  CO2e              {self.co2_kg:.6g} kg  ({self.co2_kg_low:.3g}–{self.co2_kg_high:.3g})",
            f"  grid              {self.carbon_intensity_g_per_kwh:.4g} g/kWh [{self.intensity_method}: "
            f"{self.intensity_source}], PUE {self.pue:g}",
        ]
        if self.forecast_total_kwh is not None:
            kwh, co2 = self.forecast_total_kwh, self.forecast_total_co2_kg
            lines.append(f"  forecast          {kwh:.4g} kWh, {co2:.3g} kg CO2e")
        if self.break_even_queries is not None:
            lines.append(f"  break-even        {self.break_even_queries:.4g} queries to equal the training energy")
        if self.run_dir:
            lines.append(f"  logs              {self.run_dir}")
        return "\n".join(lines)


def run_info(state: RunState) -> dict[str, Any]:
    """What ``run.json`` holds: hardware, sensors and methods, grid, PUE, versions, times, totals."""
    from tracker._version import __version__

    cfg, intensity = state.config, state.config.intensity
    return {
        "run": state.run,
        "status": state.status,
        "start_utc": state.started_utc,
        "end_utc": state.stopped_utc,
        "host": state.host,
        "job_id": state.launch.job_id,
        "launch": {
            "rank": state.launch.rank,
            "local_rank": state.launch.local_rank,
            "world_size": state.launch.world_size,
            "local_world_size": state.launch.local_world_size,
            "job_source": state.launch.job_source,
        },
        "process": state.process,
        "platform": _platform(),
        "versions": {"training-energy-tracker": __version__, "python": sys.version.split()[0]},
        "interval_s": state.interval_s,
        "jitter": cfg.jitter,
        "epochs_planned": cfg.epochs,
        "pue": cfg.pue,
        "carbon_intensity": {
            "g_per_kwh": intensity.g_per_kwh,
            "method": intensity.method,
            "source": intensity.source,
            "country": intensity.country,
            "region": intensity.region,
        },
        "sensors": [dict(s) for s in state.sensors],
        "absent": [asdict(a) for a in state.absent],
        "sensor_health": {name: asdict(h) for name, h in state.health.items()},
        "totals": Summary.build(state).as_dict(),
    }


def _platform() -> str:
    """The OS, kernel release, machine and C library, like ``platform.platform()`` without its costs.

    ``platform.platform()`` runs ``uname -p`` in a subprocess and ``libc_ver()`` scans the Python
    binary; ``os.uname`` and ``confstr`` ask the kernel and the C library directly.
    """
    system = os.uname()
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    parts = (system.sysname, system.release, system.machine, (libc or "").replace(" ", ""))
    return "-".join(p for p in parts if p)
