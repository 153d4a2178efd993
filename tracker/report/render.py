"""Reading run directories back: a table per run, a comparison of runs, and a paragraph for papers.

A run's totals are the sums of its ``epochs.csv`` rows (epochs, phases and the ``other`` rows
between them), so a run killed in epoch 5 reports epochs 1–4 as written. Formats:

- ``text``: aligned plain text; ``markdown``: headings and pipe tables;
- ``csv``: the rows of every run in one table (``run`` column first, user metrics last), numbers
  written exactly as read (``repr``), so ``pandas.read_csv`` gives back the logged values;
- ``json``: every run (totals, methods, intensity, forecast, metrics, hardware, rows) and the comparison.

The paragraph for papers lives in :mod:`tracker.report.paper`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracker.errors import ConfigurationError
from tracker.logs.reader import Run, load_runs, merge_jobs
from tracker.logs.schema import EPOCH_COLUMNS
from tracker.logs.totals import SUMMED, Totals
from tracker.sensors.methods import ABSENT, joined

FORMATS = ("text", "markdown", "csv", "json")
COMPONENTS = ("gpu", "cpu", "ram")
CSV_COLUMNS = (
    "run",
    "epoch",
    "phase",
    "status",
    "start_utc",
    "duration_s",
    "samples",
    *SUMMED[1:],  # energy by component, with band, and CO2 with band
    "pue",
    "carbon_intensity_g_per_kwh",
    "intensity_method",
    "gpu_method",
    "cpu_method",
    "ram_method",
)
ROW_TABLE = ("epoch", "phase", "status", "duration_s", "gpu_kwh", "cpu_kwh", "ram_kwh", "energy_kwh", "co2_kg")
FORECAST = (
    "forecast_total_kwh",
    "forecast_total_co2_kg",
    "forecast_total_co2_kg_low",
    "forecast_total_co2_kg_high",
    "forecast_total_s",
)
RATIOS = ("duration_s", "energy_kwh", "kwh_per_epoch", "co2_kg")


@dataclass(frozen=True)
class RunSummary:
    """One run read back.

    Attributes:
        name, path: the run directory's name and path.
        status: ``complete``, ``interrupted``, or ``running`` when the process never stopped (killed).
        epochs: training epochs finished (``train`` rows with status ``complete``).
        totals: the sums of the rows' ``SUMMED`` columns (s, kWh, kg CO2e).
        pue: the PUE applied; intensity: ``g_per_kwh`` (effective: CO2 / (energy × PUE)), ``method``,
            ``source``, ``country``, ``region``.
        methods: how each component (gpu, cpu, ram) was obtained, ``+``-joined, or ``absent``.
        forecast: the last row's forecast of the whole run (``FORECAST`` columns), if any.
        metrics: the last value of each user metric (loss, accuracy, ...).
        sensors: ``run.json``'s sensors (name, kind, method, info); devices: ``(kind, device)`` of each
            device in ``devices.csv`` (all hosts and ranks), once each.
        version: the training-energy-tracker version that wrote the run.
        rows: the rows of ``epochs.csv``.
    """

    name: str
    path: str
    status: str
    epochs: int
    totals: dict[str, float]
    pue: float | None
    intensity: dict[str, Any]
    methods: dict[str, str]
    forecast: dict[str, float] | None
    metrics: dict[str, Any]
    sensors: list[dict[str, Any]] = field(default_factory=list)
    devices: list[tuple[str, str]] = field(default_factory=list)
    version: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def kwh_per_epoch(self) -> float | None:
        """All the run's energy per finished epoch, kWh (``None`` without a finished epoch)."""
        return self.totals["energy_kwh"] / self.epochs if self.epochs else None

    @property
    def metric_names(self) -> list[str]:
        """The user metric columns, in the order of ``epochs.csv``."""
        return metric_columns(self.rows)


def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Columns of ``rows`` that the tracker does not write: the user's metrics."""
    known = set(EPOCH_COLUMNS)
    return list(dict.fromkeys(k for row in rows for k in row if k not in known))


def summarize(run: Run) -> RunSummary:
    """Read one :class:`~tracker.logs.reader.Run` into a :class:`RunSummary`."""
    rows, info = run.epochs, run.info
    summed = Totals.of(rows)
    totals = summed.sums()
    grid = info.get("carbon_intensity") or {}
    pue = info.get("pue", rows[0].get("pue") if rows else None)
    return RunSummary(
        name=run.name,
        path=str(run.path),
        status=str(info.get("status") or "unknown"),
        epochs=summed.epochs,
        totals=totals,
        pue=pue,
        intensity=_intensity(rows, grid, totals, pue),
        methods=_methods(rows),
        forecast=_forecast(rows),
        metrics=_last_metrics(rows),
        sensors=list(info.get("sensors") or []),
        devices=_devices(run),
        version=str((info.get("versions") or {}).get("training-energy-tracker", "")),
        rows=rows,
    )


def _intensity(rows: list[dict], grid: dict, totals: dict[str, float], pue: Any) -> dict[str, Any]:
    energy = totals["energy_kwh"] * float(pue or 1.0)
    # An hourly series gives each row its own figure; the energy-weighted mean is what the total used.
    effective = totals["co2_kg"] * 1000 / energy if energy > 0 else None
    first = rows[0] if rows else {}
    return {
        "g_per_kwh": effective
        if effective is not None
        else grid.get("g_per_kwh", first.get("carbon_intensity_g_per_kwh")),
        "method": grid.get("method") or first.get("intensity_method") or "unknown",
        "source": grid.get("source") or first.get("intensity_source") or "unknown",
        "country": grid.get("country"),
        "region": grid.get("region"),
    }


def _methods(rows: list[dict]) -> dict[str, str]:
    return {
        kind: joined([m for r in rows for m in str(r.get(f"{kind}_method") or ABSENT).split("+")])
        for kind in COMPONENTS
    }


def _forecast(rows: list[dict]) -> dict[str, float] | None:
    last = next((r for r in reversed(rows) if r.get("forecast_total_kwh") is not None), None)
    return {name: last.get(name) for name in FORECAST} if last else None


def _last_metrics(rows: list[dict]) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for row in rows:
        last.update({k: row[k] for k in metric_columns([row]) if row[k] is not None})
    return last


def _devices(run: Run) -> list[tuple[str, str]]:
    seen = {(d.get("host"), d.get("rank"), d.get("sensor")): (d.get("kind"), d.get("device")) for d in run.devices}
    if not seen:
        seen = {s.get("name"): (s.get("kind"), _device_name(s)) for s in run.info.get("sensors") or []}
    return [(str(kind), str(device or "")) for kind, device in seen.values()]


def _device_name(sensor: dict[str, Any]) -> str:
    info = sensor.get("info") or {}
    return str(info.get("name") or info.get("model") or "")


def load_summaries(paths: Iterable[str], skipped: list[tuple[Path, str]] | None = None) -> list[RunSummary]:
    """Every readable run under each path (a run directory or a directory of runs), each once, in the order given.

    Args:
        paths: run directories or directories of runs.
        skipped: if given, receives ``(path, reason)`` for each run that could not be read or summarised.

    Runs of separate processes that share a job id are one job (:func:`~tracker.logs.reader.merge_jobs`).

    Raises:
        ConfigurationError: a path holds no run.
    """
    runs: dict[str, Run] = {}
    for path in paths:
        if not Path(path).exists():
            raise ConfigurationError(f"{str(path)!r} does not exist: give a run directory or a log_dir that holds runs")
        found = load_runs(path)
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


def comparison(summaries: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """One record per run: epochs, duration, kWh, kWh per epoch, CO2 with band, methods, and ratios to the first run."""
    lines = [
        {
            "run": s.name,
            "epochs": s.epochs,
            "duration_s": s.totals["duration_s"],
            "energy_kwh": s.totals["energy_kwh"],
            "kwh_per_epoch": s.kwh_per_epoch,
            **{k: s.totals[k] for k in ("co2_kg", "co2_kg_low", "co2_kg_high")},
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


# ---- rendering ----------------------------------------------------------------------------------------------------


def num(value: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant figures (``""`` for missing; text passes through)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def band(low: Any, high: Any) -> str:
    """``low–high`` with three significant figures."""
    return f"{num(low, 3)}–{num(high, 3)}"


def render(summaries: Sequence[RunSummary], fmt: str = "text") -> str:
    """The report of ``summaries`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return to_json(summaries)
    if fmt == "csv":
        return to_csv(summaries)
    markdown = fmt == "markdown"
    parts = [_run_block(s, markdown) for s in summaries]
    if len(summaries) > 1:
        title = "Comparison (ratios to the first run)"
        parts.append(
            (f"## {title}\n\n" if markdown else f"{title}\n") + _table(*_comparison_table(summaries), markdown)
        )
    return "\n\n".join(parts) + "\n"


def to_json(summaries: Sequence[RunSummary]) -> str:
    """Every run and the comparison as a JSON document."""
    from tracker.carbon.intensity import equivalents

    runs = []
    for s in summaries:
        record = asdict(s)
        record["kwh_per_epoch"] = s.kwh_per_epoch
        record["equivalents"] = [asdict(e) for e in equivalents(s.totals["co2_kg"], s.totals["energy_kwh"])]
        runs.append(record)
    return json.dumps({"runs": runs, "comparison": comparison(summaries)}, indent=2, default=str) + "\n"


def to_csv(summaries: Sequence[RunSummary]) -> str:
    """The rows of every run in one CSV table, numbers written exactly."""
    metrics = list(dict.fromkeys(m for s in summaries for m in s.metric_names))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *metrics])
    for s in summaries:
        for row in s.rows:
            writer.writerow([_exact(row.get(c)) for c in (*CSV_COLUMNS, *metrics)])
    return buffer.getvalue()


def _exact(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _run_block(s: RunSummary, markdown: bool) -> str:
    t = s.totals
    facts = [
        ("status", s.status),
        ("epochs", f"{s.epochs} finished, {len(s.rows)} rows"),
        ("time", f"{num(t['duration_s'])} s ({num(t['duration_s'] / 3600, 3)} h)"),
        ("energy", f"{num(t['energy_kwh'])} kWh ({band(t['energy_kwh_low'], t['energy_kwh_high'])})"),
        *((kind, f"{num(t[f'{kind}_kwh'])} kWh [{s.methods[kind]}]") for kind in COMPONENTS),
        ("CO2e", f"{num(t['co2_kg'])} kg ({band(t['co2_kg_low'], t['co2_kg_high'])})"),
        ("intensity", f"{num(s.intensity['g_per_kwh'])} g/kWh [{s.intensity['method']}: {s.intensity['source']}]"),
        ("PUE", num(s.pue)),
    ]
    if s.forecast:
        f = s.forecast
        facts.append(
            (
                "forecast",
                f"{num(f['forecast_total_kwh'])} kWh, {num(f['forecast_total_co2_kg'])} kg CO2e "
                f"({band(f['forecast_total_co2_kg_low'], f['forecast_total_co2_kg_high'])}), "
                f"{num(f['forecast_total_s'])} s",
            )
        )
    if s.metrics:
        facts.append(("metrics", ", ".join(f"{k} {num(v)}" for k, v in s.metrics.items())))
    head = f"## Run {s.name}\n\n`{s.path}`\n\n" if markdown else f"Run {s.name}  ({s.path})\n"
    facts_text = _table(["", ""], [list(f) for f in facts], markdown, header=markdown)
    return head + facts_text + ("\n\n" if markdown else "\n\n") + _table(*_rows_table(s), markdown)


def _rows_table(s: RunSummary) -> tuple[list[str], list[list[str]]]:
    metrics = s.metric_names
    headers = [*ROW_TABLE, "co2_kg_band", *metrics]
    body = [
        [num(r.get(c)) for c in ROW_TABLE]
        + [band(r.get("co2_kg_low"), r.get("co2_kg_high"))]
        + [num(r.get(m)) for m in metrics]
        for r in s.rows
    ]
    t = s.totals
    total = ["total", "", "", *(num(t[c]) for c in ROW_TABLE[3:]), band(t["co2_kg_low"], t["co2_kg_high"])]
    return headers, [*body, total + [""] * len(metrics)]


def _comparison_table(summaries: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "run",
        "epochs",
        "duration_s",
        "energy_kwh",
        "kwh_per_epoch",
        "co2_kg",
        "co2_kg_band",
        "methods",
        *(f"{name}_ratio" for name in RATIOS),
    ]
    body = [
        [
            line["run"],
            num(line["epochs"]),
            *(num(line[c]) for c in ("duration_s", "energy_kwh", "kwh_per_epoch", "co2_kg")),
            band(line["co2_kg_low"], line["co2_kg_high"]),
            line["methods"],
            *(num(line[f"{name}_ratio"], 3) for name in RATIOS),
        ]
        for line in comparison(summaries)
    ]
    return headers, body


def _table(headers: list[str], body: list[list[str]], markdown: bool, header: bool = True) -> str:
    if markdown:
        lines = [headers, ["---"] * len(headers), *body]
        return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)
    lines = [headers, *body] if header else body
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
