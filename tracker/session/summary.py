"""The run's totals as a record, and the contents of ``run.json``, both made from a :class:`RunState`.

The session hands over an immutable :class:`RunState` (what the run is at one moment); nothing here
reads the tracker itself.
"""

import functools
import logging
import os
import re
import sys
from typing import Any, NamedTuple

import tracker.units as units
from tracker.job.placement import Launch
from tracker.logs.schema import WATER
from tracker.logs.totals import Totals
from tracker.sensors import CPU, GPU, NODE, RAM, Absent
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT
from tracker.session.accounting import Forecast
from tracker.session.boundary import Boundary, Facts, gpu_models
from tracker.session.config import Config


class RunState(NamedTuple):
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
        steps: optimizer steps counted (the last step's number).
        so_far: the rows of the segments still open (``other`` first), as they stand, status ``running``.
        open: how users name the open epochs and phases (``epoch 3``, ``validation of epoch 3``).
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
    process: dict[str, Any]
    steps: int = 0
    so_far: tuple[dict[str, Any], ...] = ()
    open: tuple[str, ...] = ()


class Summary(NamedTuple):
    """A run's totals: a view of its :class:`~tracker.logs.totals.Totals` (the figures of ``FIGURES``) and state.

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
        forecast_total_kwh, forecast_total_co2_kg: the whole run, when the number of epochs (or of
            steps, ``total_steps``) is known; forecast_total_co2_kg_low, forecast_total_co2_kg_high its
            band, forecast_total_s its time, s; forecast_basis what it is extrapolated to
            (``10 epochs``, ``200000 steps``).
        break_even_queries: inference queries to equal the training energy, when measured.
        open: the epochs and phases still open (``epoch 3``), whose energy so far the figures include;
            empty when none is.
        grid_place: the grid's country and region (``USA/US-CA``), empty when unknown.
        embodied_co2_kg, embodied_co2_kg_low, embodied_co2_kg_high: embodied emissions (the GPUs' and
            host's manufacturing, amortised) and band, kg CO2e, apart from ``co2_kg``; ``None`` when
            ``embodied`` is off.
        water_l, water_l_low, water_l_high: operational water consumed and its band, L; water_onsite_l,
            water_offsite_l: each term (cooling on site, generation off site); ``None`` when not counted.
        water_source: each counted term's figure and source, then why a term is not counted; empty when
            water is not asked for.
        boundary: what the figures count and how, and what they leave out
            (:class:`~tracker.session.boundary.Boundary`; ``summary.boundary.text()`` in words).
        node_kwh: the whole machine's energy by its own meter, kWh (``None`` without one), never in ``energy_kwh``;
            node_components_kwh: the components' energy over the same rows, kWh; node_method: how it was
            read (``acpi_power_meter``), empty without a meter. :attr:`unexplained_kwh` and
            :attr:`unexplained_share` are what no component explains.
        embodied_left_out: a GPU's model has no footprint in the table, so the embodied figure leaves it out.
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
    grid_place: str = ""
    forecast_total_co2_kg_low: float | None = None
    forecast_total_co2_kg_high: float | None = None
    forecast_total_s: float | None = None
    forecast_basis: str = ""
    steps: int = 0
    open: str = ""
    embodied_co2_kg: float | None = None
    embodied_co2_kg_low: float | None = None
    embodied_co2_kg_high: float | None = None
    water_l: float | None = None
    water_l_low: float | None = None
    water_l_high: float | None = None
    water_onsite_l: float | None = None
    water_offsite_l: float | None = None
    water_source: str = ""
    boundary: Boundary | None = None
    node_kwh: float | None = None
    node_components_kwh: float | None = None
    node_method: str = ""
    embodied_left_out: bool = False

    @property
    def unexplained_kwh(self) -> float | None:
        """What the node's meter read beyond the components of the same rows, kWh; ``None`` without a meter."""
        return self._node_totals().unexplained_kwh

    @property
    def unexplained_share(self) -> float | None:
        """:attr:`unexplained_kwh` as a share of ``node_kwh``, 0 to 1; ``None`` without a meter reading."""
        return self._node_totals().unexplained_share

    def _node_totals(self) -> Totals:
        return Totals(node_kwh=self.node_kwh, node_components_kwh=self.node_components_kwh)

    def node_line(self) -> str | None:
        """The node's meter beside the components, and the share none explains; ``None`` without a meter."""
        return units.node_beside(self.node_kwh, self.unexplained_kwh, self.unexplained_share, self.node_method)

    @classmethod
    def build(cls, state: RunState) -> "Summary":
        """The summary of a run's state: its rows written and, while it runs, the open ones so far."""
        intensity, forecast, methods = state.config.intensity, state.forecast, state.methods
        totals = state.totals or Totals()
        for row in state.so_far:
            totals = totals.plus(row)
        return cls(
            run=state.run,
            run_dir=state.run_dir,
            status=state.status,
            rows=state.rows,
            duration_s=state.duration_s,
            **totals.figures(),
            pue=state.config.pue,
            carbon_intensity_g_per_kwh=intensity.g_per_kwh,
            intensity_method=intensity.method,
            intensity_source=intensity.source,
            grid_place="/".join(p for p in (intensity.country, intensity.region) if p),
            gpu_method=methods[GPU],
            cpu_method=methods[CPU],
            ram_method=methods[RAM],
            node_method=methods.get(NODE, "") if methods.get(NODE, ABSENT) != ABSENT else "",
            forecast_total_kwh=forecast.total_kwh if forecast else None,
            forecast_total_co2_kg=forecast.total_co2_kg if forecast else None,
            forecast_total_co2_kg_low=forecast.total_co2_kg_low if forecast else None,
            forecast_total_co2_kg_high=forecast.total_co2_kg_high if forecast else None,
            forecast_total_s=forecast.total_s if forecast else None,
            forecast_basis=forecast.basis if forecast else "",
            break_even_queries=state.break_even,
            steps=state.steps,
            open=", ".join(state.open),
            water_source=_water_source(state.config.water_terms),
            boundary=boundary_of(state),
            embodied_left_out=_embodied_left_out(state),
        )

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain dict (JSON-ready; ``boundary`` in ``run.json``'s shape)."""
        return {**self._asdict(), "boundary": self.boundary.as_dict() if self.boundary else None}

    def co2_text(self) -> str:
        """The CO2e so far in scaled units, ``12.3 g`` (what Lightning's progress bar shows)."""
        return units.co2(self.co2_kg)

    def one_line(self) -> str:
        """One log line: energy, CO2 with band, and where the figures came from (units scaled to read)."""
        return (
            f"{self.run or 'run'}: {units.energy(self.energy_kwh)}, {units.co2(self.co2_kg)} CO2e "
            f"({units.co2_band(self.co2_kg_low, self.co2_kg_high)}) over {self.epochs} epochs in "
            f"{units.duration(self.duration_s)}; gpu {self.gpu_method}, cpu {self.cpu_method}, ram {self.ram_method}"
        )

    def water_text(self) -> str:
        """The water consumed with its band and each term, and the terms' figures and sources (or why not counted)."""
        from tracker.carbon import water

        return water.text(water.Litres(*(getattr(self, column) for column in WATER)), self.water_source)

    def embodied_text(self) -> str:
        """The embodied emissions and band as the report words them (``tracker.carbon.embodied.text``)."""
        from tracker.carbon import embodied

        kg, low, high = self.embodied_co2_kg, self.embodied_co2_kg_low, self.embodied_co2_kg_high
        return embodied.text(kg, low, high, self.embodied_left_out)

    def _repr_html_(self) -> str:
        """A compact table for Jupyter: energy by component and how it was obtained, CO2e with band, the grid."""
        kinds = (("gpu", self.gpu_kwh, self.gpu_method), ("cpu", self.cpu_kwh, self.cpu_method),
                 ("ram", self.ram_kwh, self.ram_method))  # fmt: skip
        energy = f"{units.energy(self.energy_kwh)} ({units.energy_band(self.energy_kwh_low, self.energy_kwh_high)})"
        grid = f"{units.significant(self.carbon_intensity_g_per_kwh)} g CO2e/kWh, {self.grid_place or 'no country'}"
        rows = [
            ("status", f"{self.status}{f' ({self.open} open)' if self.open else ''}"),
            ("epochs", f"{self.epochs} in {units.duration(self.duration_s)}"),
            ("energy", energy),
            *(
                (f"  {k}", "not measured" if m == ABSENT else f"{units.energy(v)} [{registry.labelled(m)}]")
                for k, v, m in kinds
            ),
            *((("node meter", node),) if (node := self.node_line()) else ()),
            ("CO2e", f"{units.co2(self.co2_kg)} ({units.co2_band(self.co2_kg_low, self.co2_kg_high)})"),
            *([("embodied CO2e", self.embodied_text())] if self.embodied_co2_kg is not None else []),
            ("grid", f"{grid} [{self.intensity_method}], PUE {self.pue:g}"),
            *([("water", self.water_text())] if self.water_source else []),
            ("boundary", self.boundary.text() if self.boundary else "not recorded"),
        ]
        if self.forecast_total_kwh is not None:
            band = units.co2_band(self.forecast_total_co2_kg_low, self.forecast_total_co2_kg_high)
            forecast = f"{units.energy(self.forecast_total_kwh)}, {units.co2(self.forecast_total_co2_kg)} CO2e ({band})"
            rows.append(("forecast", forecast))
        return units.html_table(f"Energy tracker — {self.run or 'run'}", rows)

    def __str__(self) -> str:
        lines = [
            f"Energy tracker — {self.run or 'run'} ({self.status}"
            f"{f'; {self.open} open, its energy so far included' if self.open else ''})",
            f"  epochs finished   {self.epochs}   ({units.duration(self.duration_s)})",
            f"  energy            {units.energy(self.energy_kwh)}  "
            f"({units.energy_band(self.energy_kwh_low, self.energy_kwh_high)})",
            *(
                f"    {kind}             {'not measured' if method == ABSENT else units.energy(value)}  "
                f"[{method if method == ABSENT else registry.labelled(method)}]"
                for kind, value, method in (
                    ("gpu", self.gpu_kwh, self.gpu_method),
                    ("cpu", self.cpu_kwh, self.cpu_method),
                    ("ram", self.ram_kwh, self.ram_method),
                )
            ),
            f"  CO2e              {units.co2(self.co2_kg)}  ({units.co2_band(self.co2_kg_low, self.co2_kg_high)})",
            f"  grid              {units.significant(self.carbon_intensity_g_per_kwh)} g CO2e/kWh for "
            f"{self.grid_place or 'no country'} "
            f"[{self.intensity_method}: {self.intensity_source}], PUE {self.pue:g}",
        ]
        if self.node_line():
            lines.insert(-2, f"  node meter        {self.node_line()}")
        if self.embodied_co2_kg is not None:
            lines.insert(len(lines) - 1, f"  embodied CO2e     {self.embodied_text()}")
        if self.steps:
            lines.insert(2, f"  steps             {self.steps}")
        if self.water_source:
            lines.append(f"  water             {self.water_text()}")
        if self.forecast_total_kwh is not None:
            lines.append(
                f"  forecast          {units.energy(self.forecast_total_kwh)}, "
                f"{units.co2(self.forecast_total_co2_kg)} CO2e "
                f"({units.co2_band(self.forecast_total_co2_kg_low, self.forecast_total_co2_kg_high)}), "
                f"{units.duration(self.forecast_total_s)} for {self.forecast_basis or 'the whole run'}"
            )
        if self.break_even_queries is not None:
            lines.append(
                f"  break-even        {units.significant(self.break_even_queries)} queries to equal the training energy"
            )
        if self.boundary:
            counts, left_out = self.boundary.parts()
            lines += [f"  boundary          {counts}", f"                    {left_out}"]
        if self.run_dir:
            lines.append(f"  logs              {self.run_dir}")
        return "\n".join(units.wrap(line, indent=20) for line in lines)


def _water_source(water: Any) -> str:
    """Each counted term's figure and source, then the terms not counted; empty when water is not asked for."""
    return "" if water is None else water.described()


def _embodied_left_out(state: RunState) -> bool:
    """Whether embodied emissions are counted and a GPU's model has no footprint in the table (the notes say so)."""
    if not state.config.embodied:
        return False
    from tracker.carbon import embodied

    return any(embodied.footprint(embodied.GPU, model) is None for model in gpu_models(state.sensors))


def boundary_of(state: RunState) -> Boundary:
    """What the run's figures count and leave out, from its options and sensors (reads nothing)."""
    return Boundary.build(Facts(state.config, state.methods, state.sensors, state.absent, state.launch))


def embodied_info(config: Config) -> dict[str, Any]:
    """``run.json``'s account of embodied emissions: whether counted, the amortisation, the table's sources."""
    if not config.embodied:
        return {"counted": False}
    from tracker.carbon import embodied  # the table is read only by a run that counts embodied emissions

    return {
        "counted": True,
        "lifetime_years": config.embodied_lifetime_years,
        "utilisation": config.embodied_utilisation,
        "rule": "footprint x hours / (lifetime_years x 8760 x utilisation), per GPU and once per host",
        "sources": list(embodied.sources()),
    }


LOUD_GRIDS = ("world_average",)


def start_line(state: RunState) -> tuple[int, str]:
    """The run's first log line and its level: what is measured and how, and the grid with its origin.

    WARNING when the grid is the world average (the CO2 is then a placeholder the user should
    replace by giving ``country=``); INFO otherwise.
    """
    measured = ", ".join(
        f"{kind.upper()} ({' + '.join(registry.short(m) for m in method.split('+'))})"
        for kind, method in state.methods.items()
        if method != "absent"
    )
    grid = state.config.intensity
    place = "/".join(p for p in (grid.country, grid.region) if p) or "no country"
    if state.methods.get("cpu", "absent") != "absent":
        measured += "; CPU scope {} ({})".format(*state.config.cpu_scope_choice)
    measured += _fast_lane(state)
    line = (
        f"measuring {measured or 'nothing'}; grid {units.significant(grid.g_per_kwh)} g CO2e/kWh for {place} "
        f"[{grid.method}: {grid.detail or 'default'}; {grid.source}], PUE {state.config.pue:g}{_asked_terms(state)}"
    )
    if grid.method in LOUD_GRIDS:
        line += "; THE WORLD AVERAGE IS A PLACEHOLDER: give country= (or ENERGY_TRACKER_COUNTRY) for your grid"
    elif grid.method == "timezone":
        line += "; the country is guessed from the time zone: give country= to be sure"
    return (logging.WARNING if grid.method in LOUD_GRIDS else logging.INFO), line


def _asked_terms(state: RunState) -> str:
    """Embodied emissions and water when asked for: each term counted and from what, or why not (the boundary's)."""
    asked = {"embodied"} if state.config.embodied else set()
    if state.config.water_terms is not None:
        asked |= {"water_onsite", "water_offsite"}
    if not asked:
        return ""
    boundary = boundary_of(state)
    said = [f"{c.what} ({c.how}: {c.source})" for c in boundary.counted if c.term in asked]
    said += [f"{n.what} not counted ({n.why})" for n in boundary.not_counted if n.term in asked]
    return "".join(f"; {text}" for text in said)


def _fast_lane(state: RunState) -> str:
    """How often polled GPU power is read: from the floor, then half the driver's refresh period once inferred."""
    polls = [info["poll_interval_s"] for s in state.sensors if (info := s.get("info") or {}).get("poll_interval_s")]
    if not polls:
        return ""
    first = min(min(polls), state.interval_s)
    return f"; GPU power polled every {first:g} s, then at half the driver's refresh period as it is inferred"


def run_info(state: RunState) -> dict[str, Any]:
    """What ``run.json`` holds: hardware, sensors and methods, grid, PUE, the boundary, versions, times, totals."""
    from tracker._version import __version__

    cfg, intensity = state.config, state.config.intensity
    totals = Summary.build(state).as_dict()
    return {
        "run": state.run,
        "experiment": state.config.experiment,
        "tags": list(state.config.tags),
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
            "restart": state.launch.restart,
            "node_known": state.launch.node_known,
            "launcher": state.launch.launcher,
        },
        "process": state.process,
        "platform": _platform(),
        "versions": versions(state, __version__),
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
        "embodied": embodied_info(cfg),
        "water": None if cfg.water_terms is None else cfg.water_terms.as_dict(),
        "sensors": [dict(s) for s in state.sensors],
        "absent": [a._asdict() for a in state.absent],
        "sensor_health": {name: h._asdict() for name, h in state.health.items()},
        "boundary": totals.pop("boundary"),
        "totals": totals,
    }


VERSIONED = ("torch", "lightning", "pytorch-lightning", "transformers", "codecarbon", "nvidia-ml-py")


def versions(state: RunState, own: str) -> dict[str, str]:
    """Versions of this package, Python, the frameworks, the carbon data and the GPU driver.

    Read from the installed distributions' metadata, so nothing (torch included) is imported.
    ``codecarbon`` is the carbon data's version (its bundled files); ``nvidia-driver`` comes from NVML.
    """
    found = {"training-energy-tracker": own, "python": sys.version.split()[0]}
    found.update(installed_versions(VERSIONED, tuple(sys.path)))
    infos = [s.get("info") or {} for s in state.sensors]
    drivers = {str(info["driver_version"]) for info in infos if info.get("driver_version")}
    if drivers:
        found["nvidia-driver"] = "+".join(sorted(drivers))
    return found


@functools.lru_cache(maxsize=4)
def installed_versions(names: tuple[str, ...], path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The version of each distribution in ``names`` installed on ``path``, once per process.

    What ``importlib.metadata.version`` answers (the first ``*.dist-info``/``*.egg-info`` directory
    of that name along ``sys.path``, its ``Version`` header) without importing ``importlib.metadata``:
    after ``import torch`` both cost ~1 ms, but in an interpreter that has not imported it (a script
    without torch, the bench's worker) its import costs ~22 ms of CPU, which took construct + start +
    stop from ~23 to ~45 ms, past the 30 ms goal (bench/README.md, 2026-12-06). Distributions not found
    are left out; the others come in the order of ``names``, as ``(name, version)`` pairs.
    """
    wanted = {_normalise(name): name for name in names}
    found: dict[str, str] = {}
    for root in path:
        for entry in _listdir(root or "."):
            stem, dot, suffix = entry.rpartition(".")
            if not dot or suffix.lower() not in ("dist-info", "egg-info"):
                continue
            name = wanted.get(_normalise(stem.partition("-")[0]))
            if name and name not in found:
                version = _version_header(os.path.join(root or ".", entry), suffix.lower())
                if version is not None:
                    found[name] = version
    return tuple((name, found[name]) for name in names if name in found)


def _normalise(name: str) -> str:
    # As importlib.metadata's Prepared.normalize: runs of '-', '_', '.' are one '_', case folded.
    return re.sub(r"[-_.]+", "_", name).lower()


def _listdir(root: str) -> list[str]:
    try:
        return sorted(os.listdir(root)) if os.path.isdir(root) else []
    except OSError:
        return []


def _version_header(directory: str, suffix: str) -> str | None:
    """The ``Version:`` header of a ``METADATA`` (``dist-info``) or ``PKG-INFO`` (``egg-info``) file."""
    try:
        with open(os.path.join(directory, "METADATA" if suffix == "dist-info" else "PKG-INFO"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                if key.strip().lower() == "version":
                    return value.strip()
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _platform() -> str:
    """The OS, kernel release, machine and C library, like ``platform.platform()`` without its costs.

    ``platform.platform()`` runs ``uname -p`` in a subprocess and ``libc_ver()`` scans the Python
    binary; ``os.uname`` and ``confstr`` ask the kernel and the C library directly.
    """
    system = os.uname()
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    parts = (system.sysname, system.release, system.machine, (libc or "").replace(" ", ""))
    return "-".join(p for p in parts if p)
