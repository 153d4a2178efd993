"""Plots of runs read back: energy per epoch by component and cumulative CO2 with its band.

Needs matplotlib (the ``plot`` extra), imported only when a plot is drawn, with the ``Agg``
backend so that it works on machines without a display. Up to :data:`MAX_PANELS` runs get a
row of panels each (stacked bars of GPU, CPU and RAM energy per training epoch; cumulative CO2e
over the run's measured time, shaded between its low and high bounds); more runs share one
row (total energy per epoch and cumulative CO2e, one line per run).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.errors import TrackerError
from tracker.logs.schema import TRAIN
from tracker.report.render import COMPONENTS, RunSummary
from tracker.sensors.methods import ABSENT

MAX_PANELS = 4
INSTALL_HINT = "pip install 'training-energy-tracker[plot]'"
COLOURS = {"gpu": "#4c72b0", "cpu": "#dd8452", "ram": "#55a868"}


class PlotUnavailable(TrackerError):
    """matplotlib is not installed (the ``plot`` extra)."""


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend.

    Raises:
        PlotUnavailable: matplotlib is not installed; the message says how to install it.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _scale(values: Sequence[float], units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The first unit in which the largest value is at least 1 (else the last), and its divisor."""
    top = max((abs(v) for v in values), default=0.0)
    return next(((name, div) for name, div in units if top / div >= 1), units[-1])


def _energy_rows(s: RunSummary) -> tuple[list[dict[str, Any]], list[str]]:
    train = [r for r in s.rows if r.get("phase") == TRAIN]
    if train:
        return train, [str(r.get("epoch")) for r in train]
    return list(s.rows), [str(r.get("phase")) for r in s.rows]


def _cumulative(s: RunSummary, column: str) -> list[float]:
    return [0.0, *itertools.accumulate(float(r.get(column) or 0.0) for r in s.rows)]


def plot_runs(summaries: Sequence[RunSummary], out: str | os.PathLike[str]) -> Path:
    """Draw ``summaries`` to the image file ``out`` (format from its suffix, e.g. ``.png``).

    Raises:
        PlotUnavailable: matplotlib is not installed.
        OSError: the file cannot be written.
    """
    plt = pyplot()
    rows = [r for s in summaries for r in _energy_rows(s)[0]]
    energy_unit = _scale([float(r.get("energy_kwh") or 0.0) for r in rows], [("kWh", 1.0), ("Wh", 1e-3)])
    co2_unit = _scale([s.totals["co2_kg_high"] for s in summaries], [("kg", 1.0), ("g", 1e-3)])
    time_unit = _scale([s.totals["duration_s"] for s in summaries], [("h", 3600.0), ("min", 60.0), ("s", 1.0)])
    grouped = len(summaries) > MAX_PANELS
    n = 1 if grouped else len(summaries)
    fig, axes = plt.subplots(n, 2, figsize=(12, 3.6 * n), squeeze=False)
    try:
        if grouped:
            _grouped(axes[0], summaries, energy_unit, co2_unit, time_unit)
        else:
            for ax_row, s in zip(axes, summaries, strict=False):
                _bars(ax_row[0], s, energy_unit)
                _co2(ax_row[1], s, co2_unit, time_unit, colour="#c44e52", label="CO2e")
        fig.tight_layout()
        path = Path(out)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _bars(ax: Any, s: RunSummary, unit: tuple[str, float]) -> None:
    rows, labels = _energy_rows(s)
    positions = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for kind in COMPONENTS:
        if s.methods[kind] == ABSENT:
            continue
        heights = [float(r.get(f"{kind}_kwh") or 0.0) / unit[1] for r in rows]
        ax.bar(positions, heights, bottom=bottom, color=COLOURS[kind], label=f"{kind.upper()} ({s.methods[kind]})")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(positions, labels)
    ax.set_xlabel("epoch" if any(r.get("phase") == TRAIN for r in rows) else "phase")
    ax.set_ylabel(f"energy ({unit[0]})")
    ax.set_title(f"{s.name}: energy per epoch")
    ax.margins(y=0.2)  # room above the bars for the legend
    if rows:
        ax.legend(fontsize="small", loc="upper left", ncol=3)


def _co2(ax: Any, s: RunSummary, co2_unit: tuple[str, float], time_unit: tuple[str, float], **style: Any) -> None:
    x = [t / time_unit[1] for t in _cumulative(s, "duration_s")]
    low, mid, high = ([v / co2_unit[1] for v in _cumulative(s, c)] for c in ("co2_kg_low", "co2_kg", "co2_kg_high"))
    ax.fill_between(x, low, high, color=style["colour"], alpha=0.2, linewidth=0)
    ax.plot(x, mid, color=style["colour"], marker=".", label=style["label"])
    ax.set_xlabel(f"measured time ({time_unit[0]})")
    ax.set_ylabel(f"cumulative CO2e ({co2_unit[0]})")
    ax.set_title(f"{s.name}: cumulative CO2e (band: low–high)" if style["label"] == "CO2e" else "cumulative CO2e")
    ax.legend(fontsize="small")


def _grouped(
    axes: Any,
    summaries: Sequence[RunSummary],
    energy_unit: tuple[str, float],
    co2_unit: tuple[str, float],
    time_unit: tuple[str, float],
) -> None:
    colours = itertools.cycle(plt_colours())
    for s, colour in zip(summaries, colours, strict=False):
        rows, labels = _energy_rows(s)
        axes[0].plot(
            labels,
            [float(r.get("energy_kwh") or 0.0) / energy_unit[1] for r in rows],
            marker="o",
            color=colour,
            label=s.name,
        )
        _co2(axes[1], s, co2_unit, time_unit, colour=colour, label=s.name)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(f"energy per epoch ({energy_unit[0]})")
    axes[0].set_title("energy per epoch (GPU + CPU + RAM)")
    axes[0].legend(fontsize="small")


def plt_colours() -> list[str]:
    """The colours of matplotlib's default cycle."""
    import matplotlib

    return list(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
