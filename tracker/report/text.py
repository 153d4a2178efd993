"""The report as text or markdown: per experiment, a block per run, then the experiment's total and comparison.

Every number follows :mod:`tracker.units` (auto-scaled SI units, three significant figures); a table
column uses one unit for all its cells, named in its header, so the cells compare at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tracker.units as units
from tracker.energy import ABSENT, joined
from tracker.report.experiments import COMPONENTS, RATIOS, Experiment, comparison, group, methods_text
from tracker.sensors import methods as registry
from tracker.session.boundary import NOT_RECORDED, common

RunSummary = Any  # tracker.report.render.RunSummary (which imports this module)


def render_text(summaries: Sequence[RunSummary], markdown: bool = False) -> str:
    """Text (or markdown) for ``summaries``, grouped into experiments."""
    parts = []
    for experiment in group(summaries):
        count = len(experiment.runs)
        parts.append(_heading(f"Experiment {experiment.name} ({count} run{'s' if count != 1 else ''})", 1, markdown))
        parts += [_run_block(s, markdown) for s in experiment.runs]
        if count > 1:
            title = f"Experiment {experiment.name}: total and comparison (ratios to the first run)"
            parts.append(_heading(title, 2, markdown) + table(*_comparison_table(experiment), markdown))
            parts.append(f"Boundary: {shared_boundary_text(experiment.runs)}")
    return "\n\n".join(parts) + "\n"


def _heading(title: str, level: int, markdown: bool) -> str:
    if level == 1:
        return f"# {title}" if markdown else f"{title}\n{'=' * len(title)}"
    return f"## {title}\n\n" if markdown else f"{title}\n"


def place(grid: dict[str, Any]) -> str:
    """``USA/US-CA``, ``DEU``, or ``no country`` for the world average or an explicit figure."""
    return "/".join(str(p) for p in (grid.get("country"), grid.get("region")) if p) or "no country"


def grid_text(grid: dict[str, Any]) -> str:
    """``381 g CO2e/kWh for DEU [argument: <source>]``."""
    return (
        f"{units.number(grid.get('g_per_kwh'))} g CO2e/kWh for {place(grid)} "
        f"[{grid.get('method') or 'unknown'}: {grid.get('source') or 'unknown'}]"
    )


def _facts(s: RunSummary) -> list[tuple[str, str]]:
    t = s.totals
    tags = s.rows and getattr(s, "tags", None)
    facts = [
        ("status", s.status),
        *([("tags", ", ".join(tags))] if tags else []),
        ("epochs", f"{s.epochs} finished, {len(s.rows)} rows{_open_text(s.rows)}"),
        ("time", units.duration(t.duration_s)),
        ("energy", f"{units.energy(t.energy_kwh)} ({units.energy_band(t.energy_kwh_low, t.energy_kwh_high)})"),
        *((kind.upper(), _component(getattr(t, f"{kind}_kwh"), s.methods[kind])) for kind in COMPONENTS),
        *_node_fact(s),
        ("CO2e", f"{units.co2(t.co2_kg)} ({units.co2_band(t.co2_kg_low, t.co2_kg_high)})"),
        *([("embodied CO2e", embodied_text(s))] if t.embodied_co2_kg is not None else []),
        ("grid", grid_text(s.intensity)),
        ("PUE", units.number(s.pue)),
        *_boundary_facts(s),
    ]
    if s.water_terms or t.water_l is not None:
        facts.append(("water", water_fact(s)))
    if s.recosted:
        facts.append(("CO2e re-costed", recosted_text(s.recosted, s.pue)))
    if s.forecast:
        f = s.forecast
        facts.append(("forecast", f"{units.energy(f['forecast_total_kwh'])}, {units.co2(f['forecast_total_co2_kg'])} "
                      f"CO2e ({units.co2_band(f['forecast_total_co2_kg_low'], f['forecast_total_co2_kg_high'])}), "
                      f"{units.duration(f['forecast_total_s'])}"))  # fmt: skip
    if s.metrics:
        facts.append(("metrics", ", ".join(f"{k} {_cell(v)}" for k, v in s.metrics.items())))
    return facts


def _boundary_facts(s: RunSummary) -> list[tuple[str, str]]:
    """What the run counts, then on a line of its own what it leaves out, as the summary shows them."""
    if s.boundary is None:
        return [("boundary", NOT_RECORDED)]
    counts, left_out = s.boundary.parts()
    return [("boundary", counts), ("", left_out)]


def shared_boundary_text(runs: Sequence[RunSummary]) -> str:
    """Whether an experiment's runs count the same things: ``the same for every run`` or how they differ."""
    if common([s.boundary for s in runs]) is not None:
        return "the same for every run (see each run's)"
    unrecorded = [s.name for s in runs if s.boundary is None]
    if len(unrecorded) == len(runs):
        return "not recorded by these runs (written before the tracker declared it)"
    note = f"; not recorded by {', '.join(unrecorded)}" if unrecorded else ""
    return f"the runs differ in what they count (see each run's){note}: their total adds figures of unlike boundaries"


def water_fact(s: RunSummary) -> str:
    """The run's operational water with band and terms, and each term's figure and source (or why not counted)."""
    from tracker.carbon import water

    described = water.Water.from_dict(s.water_terms).described() if s.water_terms else "terms not recorded"
    return water.text(water.Litres(*s.totals.water().values()), described)


def node_method(rows: Sequence[dict[str, Any]]) -> str:
    """How the node's own meter was read over ``rows`` (``acpi_power_meter``), empty where none was."""
    method = joined(r.get("node_method") for r in rows)
    return "" if method == ABSENT else method


def _node_fact(s: RunSummary) -> list[tuple[str, str]]:
    """The node's meter beside the components and the share none explains (no line without a meter)."""
    t = s.totals
    line = units.node_beside(t.node_kwh, t.unexplained_kwh, t.unexplained_share, node_method(s.rows))
    return [("node meter", line)] if line else []


def _open_text(rows: Sequence[dict[str, Any]]) -> str:
    still = sum(r.get("status") == "running" for r in rows)
    return f" ({still} still open, counted so far)" if still else ""


def embodied_text(s: RunSummary) -> str:
    """The embodied emissions and band as the summary words them (``tracker.carbon.embodied.text``)."""
    from tracker.carbon import embodied

    t = s.totals
    return embodied.text(t.embodied_co2_kg, t.embodied_co2_kg_low, t.embodied_co2_kg_high, s.embodied_left_out)


def _component(kwh: float, method: str) -> str:
    return "not measured [absent]" if method == ABSENT else f"{units.energy(kwh)} [{registry.labelled(method)}]"


def recosted_text(r: dict[str, Any], recorded_pue: Any) -> str:
    """``12.3 g (11.0–13.9 g) at 56.0 g CO2e/kWh for FRA [argument: <source>], PUE 1.2``."""
    grid = grid_text(r) if r.get("g_per_kwh") is not None else "the recorded grid"
    pue = units.number(r["pue"] if r.get("pue") is not None else recorded_pue)
    return f"{units.co2(r['co2_kg'])} ({units.co2_band(r['co2_kg_low'], r['co2_kg_high'])}) at {grid}, PUE {pue}"


def _run_block(s: RunSummary, markdown: bool) -> str:
    head = f"## Run {s.name}\n\n`{s.path}`\n\n" if markdown else f"Run {s.name}  ({s.path})\n"
    facts = table(["", ""], [list(f) for f in _facts(s)], markdown, header=markdown)
    if not markdown:  # a long value (the boundary, the water's sources) goes on under itself
        indent = 4 + max(len(label) for label, _ in _facts(s))
        facts = "\n".join(units.wrap(line, indent) for line in facts.splitlines())
    return head + facts + "\n\n" + table(*_rows_table(s), markdown)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return units.number(value)
    return "" if value is None else str(value)  # an int (an epoch, a count) or text as written


def _column(values: Sequence[Any], scales: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    biggest = max((abs(float(v)) for v in values if isinstance(v, (int, float))), default=0.0)
    return units.unit_of(biggest, scales)


def _scaled(value: Any, factor: float) -> str:
    return "" if value is None else units.significant(float(value) / factor)


def _rows_table(s: RunSummary) -> tuple[list[str], list[list[str]]]:
    t, rows, metrics, recosted = s.totals, s.rows, s.metric_names, s.recosted
    time_f, time_u = _column([t.duration_s], units.DURATION_S)
    e_f, e_u = _column([t.energy_kwh], units.ENERGY_KWH)
    c_f, c_u = _column([t.co2_kg, *([recosted["co2_kg"]] if recosted else [])], units.MASS_KG)
    m_f, m_u = _column([t.embodied_co2_kg], units.MASS_KG)
    made = [f"embodied CO2e ({m_u})"] if t.embodied_co2_kg is not None else []  # apart from the CO2e, never in it
    node = ["node"] if node_method(rows) else []  # the node's meter: beside energy, not part of it
    headers = ["epoch", "phase", "status", f"time ({time_u})", *(f"{k.upper()} ({e_u})" for k in COMPONENTS),
               f"energy ({e_u})", *(f"node meter ({e_u})" for _ in node), f"CO2e ({c_u})", f"CO2e band ({c_u})",
               *made,
               *([f"CO2e re-costed ({c_u})"] if recosted else []), *metrics]  # fmt: skip

    def line(r: dict[str, Any], label: tuple[str, str, str]) -> list[str]:
        energies = [_scaled(r.get(f"{k}_kwh"), e_f) for k in (*COMPONENTS, "energy", *node)]
        band = f"{_scaled(r.get('co2_kg_low'), c_f)}–{_scaled(r.get('co2_kg_high'), c_f)}"
        again = [_scaled(r.get("recosted_co2_kg"), c_f)] if recosted else []
        embodied = [_scaled(r.get("embodied_co2_kg"), m_f)] if made else []
        return [*label, _scaled(r.get("duration_s"), time_f), *energies, _scaled(r.get("co2_kg"), c_f), band,
                *embodied, *again]  # fmt: skip

    body = [line(r, (_cell(r.get("epoch")), str(r.get("phase")), str(r.get("status")))) + [_cell(r.get(m))
            for m in metrics] for r in rows]  # fmt: skip
    total = {**t.sums(), **t.embodied(), "node_kwh": t.node_kwh,
             "recosted_co2_kg": recosted["co2_kg"] if recosted else None}  # fmt: skip
    return headers, [*body, line(total, ("total", "", "")) + [""] * len(metrics)]


def _comparison_table(experiment: Experiment) -> tuple[list[str], list[list[str]]]:
    lines = comparison(experiment.runs)
    t = experiment.totals
    time_f, time_u = _column([t.duration_s], units.DURATION_S)
    e_f, e_u = _column([t.energy_kwh], units.ENERGY_KWH)
    p_f, p_u = _column([x["kwh_per_epoch"] for x in lines], units.ENERGY_KWH)
    c_f, c_u = _column([t.co2_kg], units.MASS_KG)
    recost = experiment.recosted is not None
    headers = ["run", "epochs", f"time ({time_u})", f"energy ({e_u})", f"energy per epoch ({p_u})", f"CO2e ({c_u})",
               f"CO2e band ({c_u})", *([f"CO2e re-costed ({c_u})"] if recost else []), "methods",
               *(f"{name} ratio" for name in ("time", "energy", "energy per epoch", "CO2e"))]  # fmt: skip
    body = []
    for x, s in zip(lines, experiment.runs, strict=True):
        body.append([x["run"], str(x["epochs"]), _scaled(x["duration_s"], time_f), _scaled(x["energy_kwh"], e_f),
                     _scaled(x["kwh_per_epoch"], p_f), _scaled(x["co2_kg"], c_f),
                     f"{_scaled(x['co2_kg_low'], c_f)}–{_scaled(x['co2_kg_high'], c_f)}",
                     *([_scaled(s.recosted["co2_kg"], c_f)] if recost else []), x["methods"],
                     *(units.number(x[f"{name}_ratio"]) for name in RATIOS)])  # fmt: skip
    total = ["total", str(t.epochs), _scaled(t.duration_s, time_f), _scaled(t.energy_kwh, e_f),
             _scaled(t.kwh_per_epoch, p_f), _scaled(t.co2_kg, c_f),
             f"{_scaled(t.co2_kg_low, c_f)}–{_scaled(t.co2_kg_high, c_f)}",
             *([_scaled(experiment.recosted["co2_kg"], c_f)] if recost else []),
             methods_text({k: joined(r.methods[k] for r in experiment.runs) for k in COMPONENTS}),
             "", "", "", ""]  # fmt: skip
    return headers, [*body, total]


def table(headers: list[str], body: list[list[str]], markdown: bool, header: bool = True) -> str:
    """Cells as a pipe table (``markdown``) or aligned plain text; ``header=False`` leaves the headers out of text."""
    if markdown:
        lines = [headers, ["---"] * len(headers), *body]
        return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)
    lines = [headers, *body] if header else body
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
