"""Runs grouped into experiments and totalled, and finished runs re-costed with another grid or PUE.

An experiment is the name given at start (``run.json``'s ``experiment``, like codecarbon's
``project_name``), else the directory that holds the runs. Re-costing multiplies each row's recorded
IT energy (and its band) by the new PUE and intensity: nothing is measured again, and the recorded
CO2e stays beside the re-costed one.

Example:
    >>> cost = Recost.build(g_per_kwh=100.0, pue=1.5)
    >>> round(cost.co2_kg(2.0, 400.0, 1.0), 6)
    0.3
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tracker.carbon.intensity import resolve_intensity, validate_pue
from tracker.energy import co2_kg
from tracker.logs.totals import Totals
from tracker.sensors.methods import ABSENT
from tracker.session.boundary import pue_term

COMPONENTS = ("gpu", "cpu", "ram")
RATIOS = ("duration_s", "energy_kwh", "kwh_per_epoch", "co2_kg")
# Each re-costed row's CO2e (kg, with band) and the factors it used: the intensity (g CO2e/kWh), how it was
# chosen, and the PUE. The report's CSV and JSON carry them beside the recorded columns.
RECOSTED_COLUMNS = (
    "recosted_co2_kg",
    "recosted_co2_kg_low",
    "recosted_co2_kg_high",
    "recosted_g_per_kwh",
    "recosted_intensity_method",
    "recosted_pue",
)


class Recost(NamedTuple):
    """A new grid and/or PUE for finished runs; ``None`` keeps what each run recorded.

    Attributes:
        g_per_kwh: the new intensity, g CO2e/kWh; method, source, country, region: where it came from.
        pue: the new PUE.
    """

    g_per_kwh: float | None = None
    method: str = ""
    source: str = ""
    country: str | None = None
    region: str | None = None
    pue: float | None = None

    @classmethod
    def build(
        cls,
        country: str | None = None,
        region: str | None = None,
        g_per_kwh: float | None = None,
        pue: float | None = None,
    ) -> Recost | None:
        """Resolve the options of ``report --country/--region/--intensity/--pue`` (None: nothing to re-cost).

        Raises:
            ConfigurationError: an invalid country, region, intensity or PUE (the tracker's messages).
        """
        if country is None and region is None and g_per_kwh is None and pue is None:
            return None
        new_pue = None if pue is None else validate_pue(pue)
        if country is None and region is None and g_per_kwh is None:
            return cls(pue=new_pue)
        # An empty environment: a re-cost names its grid, it never falls back to the time zone.
        grid = resolve_intensity(country=country, region=region, g_per_kwh=g_per_kwh, environ={})
        return cls(grid.g_per_kwh, grid.method, grid.source, grid.country, grid.region, new_pue)

    def co2_kg(self, energy_kwh: float, recorded_g_per_kwh: float, recorded_pue: float) -> float:
        """CO2e in kg of ``energy_kwh`` of IT energy, with this grid and PUE where given, else the recorded ones."""
        g = self.g_per_kwh if self.g_per_kwh is not None else recorded_g_per_kwh
        return co2_kg(energy_kwh, self.pue if self.pue is not None else recorded_pue, g)

    def row(self, row: dict[str, Any], pue: Any) -> dict[str, Any]:
        """The :data:`RECOSTED_COLUMNS` of one recorded row (``pue``: the run's, for a row without its own)."""
        g = self.g_per_kwh if self.g_per_kwh is not None else float(row.get("carbon_intensity_g_per_kwh") or 0.0)
        p = self.pue if self.pue is not None else float(row.get("pue") or pue or 1.0)
        energies = (row.get("energy_kwh"), row.get("energy_kwh_low"), row.get("energy_kwh_high"))
        co2 = [co2_kg(float(e or 0.0), p, g) for e in energies]
        method = self.method or row.get("intensity_method")
        return dict(zip(RECOSTED_COLUMNS, (*co2, g, method, p), strict=True))

    def apply(self, rows: Sequence[dict[str, Any]], pue: Any) -> dict[str, Any]:
        """The re-costed CO2e of ``rows`` (kg, with band), the intensity and PUE used."""
        each = [self.row(row, pue) for row in rows]
        sums = {
            name: math.fsum(r[f"recosted_{name}"] for r in each) for name in ("co2_kg", "co2_kg_low", "co2_kg_high")
        }
        return {
            **sums, "g_per_kwh": self.g_per_kwh, "method": self.method, "source": self.source,
            "country": self.country, "region": self.region, "pue": self.pue,
        }  # fmt: skip


class Experiment(NamedTuple):
    """Runs that belong together, and their totals (s, kWh, kg CO2e, epochs; re-costed CO2e too, when asked)."""

    name: str
    runs: list[Any]
    totals: Totals
    recosted: dict[str, float] | None

    @property
    def epochs(self) -> int:
        """Training epochs finished over every run."""
        return self.totals.epochs


def experiment_of(path: str, info: dict[str, Any]) -> str:
    """The experiment a run belongs to: the name given at start, else its directory's parent's name."""
    given = info.get("experiment")
    return str(given) if given else Path(path).parent.name or str(Path(path).parent)


def group(summaries: Sequence[Any]) -> list[Experiment]:
    """``summaries`` grouped by :attr:`experiment`, in first-seen order, each with its totals."""
    named: dict[str, list[Any]] = {}
    for summary in summaries:
        named.setdefault(summary.experiment, []).append(summary)
    return [_experiment(name, runs) for name, runs in named.items()]


def _experiment(name: str, runs: list[Any]) -> Experiment:
    totals = Totals.combined(run.totals for run in runs)
    recosted = None
    if all(run.recosted for run in runs):
        recosted = {k: math.fsum(run.recosted[k] for run in runs) for k in ("co2_kg", "co2_kg_low", "co2_kg_high")}
    return Experiment(name, runs, totals, recosted)


def recost(summaries: Sequence[Any], cost: Recost | None) -> list[Any]:
    """``summaries`` with ``recosted`` filled in by ``cost``, each row with its :data:`RECOSTED_COLUMNS`.

    A new PUE changes the boundary's facility term too. Unchanged when ``cost`` is None.
    """
    if cost is None:
        return list(summaries)
    return [
        s._replace(
            rows=[{**row, **cost.row(row, s.pue)} for row in s.rows],
            recosted=cost.apply(s.rows, s.pue),
            boundary=_recosted_boundary(s.boundary, cost),
        )
        for s in summaries
    ]


def _recosted_boundary(boundary: Any, cost: Recost) -> Any:
    # A new PUE is a new facility term; a new grid leaves the boundary as it was.
    return boundary.replaced(pue_term(cost.pue, "re-costed")) if boundary and cost.pue is not None else boundary


def comparison(summaries: Sequence[Any]) -> list[dict[str, Any]]:
    """One record per run: epochs, duration, kWh, kWh per epoch, CO2 with band, methods, and ratios to the first run."""
    lines = [
        {
            "run": s.name,
            "epochs": s.epochs,
            "duration_s": s.totals.duration_s,
            "energy_kwh": s.totals.energy_kwh,
            "kwh_per_epoch": s.kwh_per_epoch,
            "co2_kg": s.totals.co2_kg,
            "co2_kg_low": s.totals.co2_kg_low,
            "co2_kg_high": s.totals.co2_kg_high,
            "methods": methods_text(s.methods),
        }
        for s in summaries
    ]
    for line in lines:
        for name in RATIOS:
            line[f"{name}_ratio"] = _ratio(line[name], lines[0][name])
    return lines


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def methods_text(methods: dict[str, str]) -> str:
    """``gpu:energy_counter cpu:tdp_estimate ram:ram_model`` (absent components left out)."""
    return " ".join(f"{kind}:{m}" for kind, m in methods.items() if m != ABSENT) or "none"
