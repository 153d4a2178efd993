"""``energy-tracker watch``: a live view of a run while training writes its rows.

Every ``interval_s`` it reads the run directory again (only files: it works on a run written by
another process or machine over a shared filesystem) and shows a compact table, one line per row
(epoch, phase, time, energy, CO2e), the totals and the forecast of the whole run. The terms the run counts
besides (embodied emissions and water, both estimated, and the node's own meter) have a line each
under the totals. The open epoch
or phase is shown with its energy so far (from ``heartbeat.json``, rewritten every 10 s), and the
totals count it. It ends when ``run.json`` says the run has ended (``complete`` or ``interrupted``),
or when the reader finds the process that writes it gone (``killed``: its pid gone on this machine,
or its heartbeat standing still for a minute when it runs on another, :mod:`tracker.logs.liveness`);
then no row will come. A run that has not started writing yet is waited for. On a terminal the
table is redrawn in place; otherwise (a pipe, a log file) only new lines are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import tracker.units as units
from tracker.errors import ConfigurationError
from tracker.logs.liveness import KILLED
from tracker.logs.reader import RUN_JSON, embodied_text, is_run_dir, load_run
from tracker.logs.schema import COMPLETE, INTERRUPTED
from tracker.logs.totals import Totals
from tracker.report.text import node_method

ENDED = (COMPLETE, INTERRUPTED, KILLED)
GONE_LINE = "  the process writing this run is gone (killed): its open epoch is shown up to its last heartbeat"
CLEAR = "\x1b[H\x1b[2J"


def find_run(path: str | Path) -> Path:
    """``path`` itself when it is a run directory, else the run in it whose ``run.json`` changed last.

    Raises:
        ConfigurationError: there is no run there.
    """
    root = Path(path)
    if root.is_file():
        root = root.parent
    if is_run_dir(root):
        return root
    runs = [p for p in root.iterdir() if p.is_dir() and is_run_dir(p)] if root.is_dir() else []
    if not runs:
        raise ConfigurationError(f"no run in {str(path)!r}: give a run directory, or the log_dir a run writes into")
    return max(runs, key=lambda p: (p / RUN_JSON).stat().st_mtime if (p / RUN_JSON).exists() else 0.0)


def wait_for_run(path: str | Path, out: TextIO, interval_s: float, sleep: Callable[[float], None]) -> Path:
    """The run at ``path`` (:func:`find_run`), waiting for one to start writing there, with a message once."""
    said = False
    while True:
        try:
            return find_run(path)
        except ConfigurationError:
            if not said:
                out.write(f"waiting for a run to start writing in {path} (Ctrl-C to stop) ...\n")
                out.flush()
                said = True
        sleep(interval_s)


def row_line(row: dict[str, Any]) -> str:
    """One row: ``epoch 3  train  12.0 s  1.23 Wh  456 mg CO2e``; steps ``1-100`` when counted."""
    epoch = "" if row.get("epoch") is None else f"epoch {row['epoch']}"
    if row.get("first_step") is not None:
        epoch += f" [{row['first_step']}-{row.get('last_step')}]"
    time_text = units.duration(row.get("duration_s"))
    return (
        f"  {epoch:<10} {row.get('phase', ''):<12} {row.get('status', ''):<11} {time_text:>9}"
        f"  {units.energy(row.get('energy_kwh')):>9}  {units.co2(row.get('co2_kg')):>8} CO2e"
    )


def summary_lines(rows: list[dict[str, Any]], status: str, info: dict[str, Any] | None = None) -> list[str]:
    """The totals so far (open rows included, as they stand), the counted terms and, once known, the forecast.

    ``info``: the run's ``run.json`` (the water terms' figures and sources).
    """
    if not rows:
        return [f"  ({status}: no row written yet)"]
    totals = Totals.of(rows)
    still = [r for r in rows if r.get("status") == "running"]
    lines = [f"  so far: {units.energy(totals.energy_kwh)}, {units.co2(totals.co2_kg)} CO2e ({status}"
             f"{'; the open row counted as it stands' if still else ''})"]  # fmt: skip
    lines += counted_lines(rows, totals, info or {})
    forecast = next((r for r in reversed(rows) if r.get("forecast_total_kwh") is not None), None)
    if forecast is not None:
        band = units.co2_band(forecast.get("forecast_total_co2_kg_low"), forecast.get("forecast_total_co2_kg_high"))
        lines.append(
            f"  forecast for the whole run: {units.energy(forecast['forecast_total_kwh'])}, "
            f"{units.co2(forecast.get('forecast_total_co2_kg'))} CO2e ({band}), "
            f"{units.duration(forecast.get('forecast_total_s'))}"
        )
    return lines


def counted_lines(rows: list[dict[str, Any]], totals: Totals, info: dict[str, Any]) -> list[str]:
    """A line for each term the rows count beside the energy: the node's meter, embodied CO2e, water (none if not)."""
    from tracker.carbon import water

    lines = []
    node = units.node_beside(totals.node_kwh, totals.unexplained_kwh, totals.unexplained_share, node_method(rows))
    if node:
        lines.append(f"  node meter: {node}")
    if totals.embodied_co2_kg is not None:
        lines.append(units.wrap(f"  embodied CO2e: {embodied_text(rows, totals)}", 17))
    if totals.water_l is not None:
        terms = info.get("water")
        described = water.Water.from_dict(terms).described() if terms else "terms not recorded"
        lines.append(
            units.wrap(f"  water (estimated): {water.text(water.Litres(*totals.water().values()), described)}", 21)
        )
    return lines


def watch(
    path: str | Path,
    out: TextIO,
    interval_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    redraw: bool = False,
) -> str:
    """Show the run at ``path`` until it ends; returns its final status (``killed``: its writer is gone).

    Args:
        path: a run directory, or a log_dir (its most recently changed run); waited for until a run
            starts writing there.
        out: where to write.
        interval_s: seconds between reads.
        sleep: waits ``interval_s`` (tests pass their own).
        redraw: redraw the whole view each time (a terminal) instead of writing only new lines.
    """
    run_dir = wait_for_run(path, out, interval_s, sleep)
    view = _View(out, redraw)
    while True:
        run = load_run(run_dir)
        status = str(run.info.get("status") or "running")
        view.show(f"Run {run.name} ({run_dir})", run.epochs, status, run.open, run.info)
        if status in ENDED:
            if status == KILLED:
                view.out.write(GONE_LINE + "\n")
                view.out.flush()
            return status
        sleep(interval_s)


class _View:
    """Writes the view: redrawn whole, or only what is new since the last time (rows, changed totals)."""

    def __init__(self, out: TextIO, redraw: bool) -> None:
        self.out, self.redraw = out, redraw
        self.rows_shown = -1  # the title line not shown yet either
        self.totals: list[str] = []

    def show(
        self, title: str, rows: list[dict[str, Any]], status: str, still: list[dict[str, Any]], info: dict[str, Any]
    ) -> None:
        totals = summary_lines([*rows, *still], status, info)
        if self.redraw:
            lines = [title, *map(row_line, [*rows, *still]), *totals]
            self.out.write(CLEAR + "\n".join(lines) + "\n")
        else:  # open rows change at every heartbeat: they are in the totals, not written line by line
            lines = [title] if self.rows_shown < 0 else []
            lines += [row_line(r) for r in rows[max(self.rows_shown, 0) :]]
            lines += totals if totals != self.totals else []
            self.out.write("".join(f"{line}\n" for line in lines))
            self.rows_shown, self.totals = len(rows), totals
        self.out.flush()
