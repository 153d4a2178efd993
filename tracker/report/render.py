"""Reading run directories back: a table per run, a comparison of runs, and a paragraph for papers.

A run's totals are the sums of its ``epochs.csv`` rows (epochs, phases and the ``other`` rows
between them), so a run killed in epoch 5 reports epochs 1–4 as written. Formats:

- ``text``: aligned plain text; ``markdown``: headings and pipe tables;
- ``csv``: the rows of every run in one table (``run`` column first, user metrics last), numbers
  written exactly as read (``repr``), so ``pandas.read_csv`` gives back the logged values; a text
  cell (a run or metric name, a text metric) that starts with ``=``, ``+``, ``-``, ``@``, tab or
  CR gets a ``'`` before it, so that a spreadsheet shows it as text and runs no formula (OWASP's
  advice on CSV injection); numbers, negative ones included, are never changed; re-costed runs
  add :data:`~tracker.report.experiments.RECOSTED_COLUMNS` (CO2e with band and the factors used);
- ``json``: every run (totals, methods, intensity, forecast, metrics, hardware, rows) and the comparison.

The paragraph for papers lives in :mod:`tracker.report.paper`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tracker.energy import joined
from tracker.errors import ConfigurationError
from tracker.logs.reader import Run, embodied_left_out, load_runs, merge_jobs
from tracker.logs.schema import EMBODIED, EPOCH_COLUMNS, FORMULA_STARTS, WATER
from tracker.logs.totals import SUMMED, Totals
from tracker.report.experiments import COMPONENTS, RECOSTED_COLUMNS, comparison, experiment_of
from tracker.session.boundary import Boundary

FORMATS = ("text", "markdown", "csv", "json")
CSV_COLUMNS = (
    "run",
    "epoch",
    "phase",
    "status",
    "start_utc",
    "duration_s",
    "samples",
    *SUMMED[1:],  # energy by component, with band, and CO2 with band
    *EMBODIED,  # beside the CO2, never in it
    "node_kwh",  # the node's own meter, beside them (never in energy_kwh)
    *WATER,  # operational water with band and each term, L (empty when not counted)
    "water_source",
    "pue",
    "carbon_intensity_g_per_kwh",
    "intensity_method",
    "gpu_method",
    "cpu_method",
    "ram_method",
    "node_method",
)
FORECAST = (
    "forecast_total_kwh",
    "forecast_total_co2_kg",
    "forecast_total_co2_kg_low",
    "forecast_total_co2_kg_high",
    "forecast_total_s",
)


class RunSummary(NamedTuple):
    """One run read back: its :class:`~tracker.logs.totals.Totals` and what the report shows beside them.

    Attributes:
        name, path: the run directory's name and path.
        status: ``complete``, ``interrupted``, ``running`` (its open rows so far are counted) or
            ``killed`` (the process is gone without an end).
        totals: the sums of the rows (s, kWh, kg CO2e) and the training epochs finished.
        pue: the PUE applied; intensity: ``g_per_kwh`` (effective: CO2 / (energy × PUE)), ``method``,
            ``source``, ``country``, ``region``.
        methods: how each component (gpu, cpu, ram) was obtained, ``+``-joined, or ``absent``.
        forecast: the last row's forecast of the whole run (``FORECAST`` columns), if any.
        metrics: the last value of each user metric (loss, accuracy, ...).
        sensors: ``run.json``'s sensors (name, kind, method, info); devices: ``(kind, device)`` of each
            device in ``devices.csv`` (all hosts and ranks), once each.
        version: the training-energy-tracker version that wrote the run.
        rows: the rows of ``epochs.csv``, then (a run going on) its open rows so far, status ``running``.
        experiment: the experiment it belongs to (:func:`~tracker.report.experiments.experiment_of`).
        recosted: the CO2e with another grid or PUE (:mod:`tracker.report.experiments`), when asked.
        tags: the labels given at start.
        boundary: what the run's figures count and leave out (``run.json``'s ``boundary``); ``None`` for a
            run written before the tracker declared it.
        water_terms: ``run.json``'s ``water``: each water term's figure (L/kWh), band and source, and the
            terms not counted; ``None`` when the run did not count water.
        embodied: ``run.json``'s account of embodied emissions (``counted``, ``lifetime_years``,
            ``utilisation``, ``sources``); ``None`` for a run that does not record one.
    """

    name: str
    path: str
    status: str
    totals: Totals
    pue: float | None
    intensity: dict[str, Any]
    methods: dict[str, str]
    forecast: dict[str, float] | None
    metrics: dict[str, Any]
    sensors: list[dict[str, Any]]
    devices: list[tuple[str, str]]
    version: str
    rows: list[dict[str, Any]]
    experiment: str
    recosted: dict[str, Any] | None
    tags: list[str]
    boundary: Boundary | None = None
    water_terms: dict[str, Any] | None = None
    embodied: dict[str, Any] | None = None

    def __repr__(self) -> str:
        # A named tuple's repr less the rows: a run has one per epoch and phase, thousands in long runs.
        return f"RunSummary({', '.join(f'{k}={v!r}' for k, v in self._asdict().items() if k != 'rows')})"

    @property
    def embodied_left_out(self) -> bool:
        """Whether a row left a device out of its embodied share (its model not in the table: ``notes`` say so)."""
        return embodied_left_out(self.rows)

    @property
    def epochs(self) -> int:
        """Training epochs finished (``train`` rows with status ``complete``)."""
        return self.totals.epochs

    @property
    def kwh_per_epoch(self) -> float | None:
        """All the run's energy per finished epoch, kWh (``None`` without a finished epoch)."""
        return self.totals.kwh_per_epoch

    @property
    def metric_names(self) -> list[str]:
        """The user metric columns, in the order of ``epochs.csv``."""
        return metric_columns(self.rows)


def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Columns of ``rows`` that the tracker does not write: the user's metrics."""
    known = {*EPOCH_COLUMNS, *RECOSTED_COLUMNS}
    return list(dict.fromkeys(k for row in rows for k in row if k not in known))


def summarize(run: Run) -> RunSummary:
    """Read one :class:`~tracker.logs.reader.Run` into a :class:`RunSummary`.

    A run still going on counts its open epochs and phases so far (``heartbeat.json``): rows of
    status ``running`` after those written.
    """
    rows, info = [*run.epochs, *run.open], run.info
    totals = Totals.of(rows)
    grid = info.get("carbon_intensity") or {}
    pue = info.get("pue", rows[0].get("pue") if rows else None)
    return RunSummary(
        name=run.name,
        path=str(run.path),
        status=str(info.get("status") or "unknown"),
        totals=totals,
        pue=pue,
        intensity=_intensity(rows, grid, totals, pue),
        methods=_methods(rows, info.get("sensors") or []),
        forecast=_forecast(rows),
        metrics=_last_metrics(rows),
        sensors=list(info.get("sensors") or []),
        devices=_devices(run),
        version=str((info.get("versions") or {}).get("training-energy-tracker", "")),
        rows=rows,
        experiment=experiment_of(str(run.path), info),
        recosted=None,
        tags=[str(t) for t in info.get("tags") or []],
        boundary=Boundary.from_dict(info.get("boundary")),
        water_terms=info.get("water") or None,
        embodied=info.get("embodied") if isinstance(info.get("embodied"), dict) else None,
    )


def _intensity(rows: list[dict], grid: dict, totals: Totals, pue: Any) -> dict[str, Any]:
    # An hourly series gives each row its own figure; the energy-weighted mean is what the total used.
    effective = totals.g_per_kwh(float(pue or 1.0))
    first = rows[0] if rows else {}
    return {
        "g_per_kwh": effective
        if effective is not None
        else grid.get("g_per_kwh", first.get("carbon_intensity_g_per_kwh")),
        "method": grid.get("method") or first.get("intensity_method") or "unknown",
        "source": grid.get("source") or first.get("intensity_source") or "unknown",
        "country": grid.get("country") or first.get("country") or None,
        "region": grid.get("region") or first.get("region") or None,
    }


def _methods(rows: list[dict], sensors: list[dict]) -> dict[str, str]:
    if not rows:  # nothing measured into a row yet: what run.json says is measured
        rows = [{f"{s.get('kind')}_method": s.get("method")} for s in sensors if isinstance(s, dict)]
    return {kind: joined(r.get(f"{kind}_method") for r in rows) for kind in COMPONENTS}


def _forecast(rows: list[dict]) -> dict[str, float] | None:
    last = next((r for r in reversed(rows) if r.get("forecast_total_kwh") is not None), None)
    return {name: last.get(name) for name in FORECAST} if last else None


def _last_metrics(rows: list[dict]) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for row in rows:
        last.update({k: row[k] for k in metric_columns([row]) if row[k] is not None})
    return last


def _devices(run: Run) -> list[tuple[str, str]]:
    seen = {(d.get("host"), d.get("rank"), d.get("sensor")): (d.get("kind"), d.get("model", d.get("device")))
            for d in run.devices}  # fmt: skip
    if not seen:
        seen = {s.get("name"): (s.get("kind"), _device_name(s)) for s in run.info.get("sensors") or []}
    return [(str(kind), str(device or "")) for kind, device in seen.values()]


def _device_name(sensor: dict[str, Any]) -> str:
    info = sensor.get("info") or {}
    return str(info.get("name") or info.get("model") or "")


def load_summaries(
    paths: Iterable[str], skipped: list[tuple[Path, str]] | None = None, recursive: bool = True
) -> list[RunSummary]:
    """Every readable run under each path (a run directory, its ``epochs.csv``, or a directory of runs), each once.

    Args:
        paths: run directories (or their ``epochs.csv``) or directories of runs.
        skipped: if given, receives ``(path, reason)`` for each run that could not be read or summarised.
        recursive: look in every directory below each path; ``False`` reads only the runs directly in
            each directory given (``report``'s default).

    Runs of separate processes that share a job id are one job (:func:`~tracker.logs.reader.merge_jobs`).

    Raises:
        ConfigurationError: a path holds no run.
    """
    runs: dict[str, Run] = {}
    for path in paths:
        if not Path(path).exists():
            raise ConfigurationError(f"{str(path)!r} does not exist: give a run directory or a log_dir that holds runs")
        found = load_runs(path, recursive=recursive)
        if skipped is not None:
            skipped.extend(found.skipped)
        for run in found:
            runs.setdefault(str(run.path.resolve()), run)
    summaries = (_summary_or_none(run, skipped) for run in merge_jobs(list(runs.values())))
    return [s for s in summaries if s is not None]


def _summary_or_none(run: Run, skipped: list[tuple[Path, str]] | None) -> RunSummary | None:
    try:
        return summarize(run)
    except (TypeError, ValueError, KeyError, ArithmeticError) as exc:  # rows of the wrong shape: this run only
        if skipped is None:
            raise
        skipped.append((run.path, f"{type(exc).__name__}: {exc}"))
        return None


# ---- rendering ----------------------------------------------------------------------------------------------------


def render(summaries: Sequence[RunSummary], fmt: str = "text") -> str:
    """The report of ``summaries`` in ``fmt`` (one of :data:`FORMATS`)."""
    from tracker.report import text

    if fmt == "json":
        return to_json(summaries)
    if fmt == "csv":
        return to_csv(summaries)
    return text.render_text(summaries, markdown=fmt == "markdown")


def to_json(summaries: Sequence[RunSummary]) -> str:
    """Every run, the experiments' totals and the comparison as a JSON document (fixed units: s, kWh, kg)."""
    from tracker.carbon.intensity import equivalents
    from tracker.report.experiments import group

    runs = []
    for s in summaries:
        record = {"name": s.name, "path": s.path, "status": s.status, "epochs": s.epochs, **s._asdict()}
        record["totals"] = _sums(s.totals)
        record["boundary"] = s.boundary.as_dict() if s.boundary else None
        record["water"] = s.totals.water()
        record["kwh_per_epoch"] = s.kwh_per_epoch
        record["node"] = node_record(s)
        record["equivalents"] = [e._asdict() for e in equivalents(s.totals.co2_kg, s.totals.energy_kwh)]
        runs.append(record)
    experiments = [
        {"experiment": e.name, "runs": [r.name for r in e.runs], "epochs": e.epochs, "totals": _sums(e.totals),
         "water": e.totals.water(), "recosted": e.recosted}
        for e in group(summaries)
    ]  # fmt: skip
    document = {"runs": runs, "experiments": experiments, "comparison": comparison(summaries)}
    return json.dumps(document, indent=2, default=str) + "\n"


def _sums(totals: Totals) -> dict[str, float | None]:
    """The summed columns and the embodied ones (``None`` where no row counted them), by name."""
    return {**totals.sums(), **totals.embodied()}


def node_record(s: RunSummary) -> dict[str, Any] | None:
    """The node's own meter beside the components (kWh, and the unexplained share 0 to 1); ``None`` without one."""
    from tracker.report.text import node_method

    method, t = node_method(s.rows), s.totals
    if not method:
        return None
    return {"method": method, "node_kwh": t.node_kwh, "components_kwh": t.node_components_kwh,
            "unexplained_kwh": t.unexplained_kwh, "unexplained_share": t.unexplained_share,
            "counted": "beside the components, never added to energy_kwh or co2_kg"}  # fmt: skip


def to_csv(summaries: Sequence[RunSummary]) -> str:
    """The rows of every run in one CSV table, numbers written exactly (re-costed: :data:`RECOSTED_COLUMNS` too)."""
    metrics = list(dict.fromkeys(m for s in summaries for m in s.metric_names))
    recosted = RECOSTED_COLUMNS if any(s.recosted for s in summaries) else ()
    columns = (*CSV_COLUMNS, *recosted, *metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_inert(c) for c in columns])
    for s in summaries:
        for row in s.rows:
            writer.writerow([_exact(row.get(c)) for c in columns])
    return buffer.getvalue()


def _exact(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value) if isinstance(value, int) else _inert(str(value))


def _inert(text: str) -> str:
    """A text cell a spreadsheet shows as text: ``'`` before a leading ``=``, ``+``, ``-``, ``@``, tab or CR (OWASP)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text
