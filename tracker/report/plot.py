"""A figure for a paper, single-column wide: energy per epoch by component, and cumulative CO2e with its band.

Needs matplotlib (the ``plot`` extra), imported only when a figure is drawn, on the ``Agg`` backend.

- One panel per run (up to :data:`MAX_ENERGY_PANELS`, all on the same y scale): the energy of
  each epoch as stacked bars of GPU, CPU and RAM. "The energy of an epoch" is the sum of the
  ``epochs.csv`` rows carrying its number (training and the validation inside it), as the
  Lightning callback logs it; energy outside every epoch (setup, between epochs) is not in the
  bars, it is in the cumulative CO2e. More runs share one panel: each run's total per epoch.
- One panel for every run overlaid: cumulative CO2e at the end of each epoch, shaded between its
  low and high bounds.

Units follow :mod:`tracker.units` (one scaled unit per axis, the one the text uses); legends use
plain words ("GPU (measured)", "CPU (estimated)"); ticks are thinned so 3 and 300 epochs both read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tracker.units as units
from tracker.errors import TrackerError
from tracker.report.render import COMPONENTS, RunSummary
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT

INSTALL_HINT = "pip install 'training-energy-tracker[plot]'"
WIDTH_IN = 3.5  # one column of a two-column paper
ENERGY_PANEL_IN, CO2_PANEL_IN, LEGENDS_IN = 1.15, 1.6, 0.75
MAX_ENERGY_PANELS = 4
FONT_PT = 7.5
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


def epoch_energy(s: RunSummary) -> tuple[list[int], dict[str, list[float]]]:
    """The epochs of a run and, per component, each epoch's energy in kWh (every row with that epoch number)."""
    epochs = sorted({int(r["epoch"]) for r in s.rows if isinstance(r.get("epoch"), (int, float))})
    index = {e: i for i, e in enumerate(epochs)}
    energy = {kind: [0.0] * len(epochs) for kind in COMPONENTS}
    for row in s.rows:
        if isinstance(row.get("epoch"), (int, float)):
            for kind in COMPONENTS:
                energy[kind][index[int(row["epoch"])]] += float(row.get(f"{kind}_kwh") or 0.0)
    return epochs, energy


def cumulative_co2(s: RunSummary) -> tuple[list[int], list[tuple[float, float, float]]]:
    """The run's CO2e (kg, low, high) up to the end of each epoch, every row before it included."""
    points: dict[int, tuple[float, float, float]] = {}
    total = [0.0, 0.0, 0.0]
    for row in s.rows:
        for i, name in enumerate(("co2_kg", "co2_kg_low", "co2_kg_high")):
            total[i] += float(row.get(name) or 0.0)
        if isinstance(row.get("epoch"), (int, float)):
            points[int(row["epoch"])] = (total[0], total[1], total[2])
    epochs = sorted(points)
    return epochs, [points[e] for e in epochs]


def component_label(s: Sequence[RunSummary], kind: str) -> str:
    """``GPU (measured)``, ``CPU (estimated)``, or ``RAM (measured and estimated)`` over the runs."""
    methods = {m for run in s for m in run.methods[kind].split("+") if m != ABSENT}
    how = {"measured" if registry.is_measured(m) else "estimated" for m in methods}
    return f"{kind.upper()} ({' and '.join(sorted(how, reverse=True))})" if how else kind.upper()


def figure(summaries: Sequence[RunSummary]) -> Any:
    """The figure of ``summaries`` (a matplotlib ``Figure``; the caller closes it)."""
    plt = pyplot()
    plt.rcParams.update({"font.size": FONT_PT, "axes.titlesize": FONT_PT, "legend.fontsize": FONT_PT - 0.5})
    panels = len(summaries) if len(summaries) <= MAX_ENERGY_PANELS else 1
    heights = [ENERGY_PANEL_IN] * panels + [CO2_PANEL_IN]
    fig, axes = plt.subplots(
        panels + 1,
        1,
        figsize=(WIDTH_IN, sum(heights) + LEGENDS_IN),
        height_ratios=heights,
        layout="constrained",
        sharex=True,
    )
    for ax in axes[1:panels]:
        ax.sharey(axes[0])  # every run's energy on one scale
    data = [epoch_energy(s) for s in summaries]
    top = max((sum(e[k][i] for k in COMPONENTS) for _, e in data for i in range(len(e["gpu"]))), default=0.0)
    factor, unit = units.unit_of(top, units.ENERGY_KWH)
    if panels == len(summaries):
        for i, (ax, s, (epochs, energy)) in enumerate(zip(axes, summaries, data, strict=False)):
            colour = f"C{i}" if len(summaries) > 1 else "black"  # the run's colour in the CO2e panel
            _stacked(ax, s, epochs, energy, (factor, unit, colour))
        handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in COMPONENTS]
        labels = [component_label(summaries, k) for k in COMPONENTS]
        fig.legend(handles, labels, loc="outside upper center", ncol=3, frameon=False, handlelength=1.0)
    else:
        _totals(axes[0], data, factor, unit)
    _co2(axes[-1], summaries)
    for ax in axes:
        _thin_ticks(ax)
    return fig


def _short(name: str, limit: int = 48) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _stacked(ax: Any, s: RunSummary, epochs: list[int], energy: dict[str, list[float]], style: tuple) -> None:
    factor, unit, colour = style
    bottom = [0.0] * len(epochs)
    width = 0.8 if len(epochs) <= 60 else 1.0
    for kind in COMPONENTS:
        heights = [v / factor for v in energy[kind]]
        if any(heights):
            ax.bar(epochs, heights, width, bottom=bottom, color=COLOURS[kind], linewidth=0)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title(_short(f"Run {s.name}"), loc="left", color=colour)
    ax.set_ylabel(f"Energy ({unit})")


def _totals(ax: Any, data: list, factor: float, unit: str) -> None:
    for i, (epochs, energy) in enumerate(data):
        totals = [sum(energy[k][j] for k in COMPONENTS) / factor for j in range(len(epochs))]
        ax.plot(epochs, totals, color=f"C{i}", linewidth=1.0, marker="o" if len(epochs) <= 30 else None, ms=2.5)
    ax.set_title("Energy per epoch, all components", loc="left")
    ax.set_ylabel(f"Energy ({unit})")
    ax.set_ylim(bottom=0)


def _co2(ax: Any, summaries: Sequence[RunSummary]) -> None:
    curves = [cumulative_co2(s) for s in summaries]
    top = max((p[2] for _, points in curves for p in points), default=0.0)
    factor, unit = units.unit_of(top, units.MASS_KG)
    for i, (s, (epochs, points)) in enumerate(zip(summaries, curves, strict=True)):
        value, low, high = ([p[j] / factor for p in points] for j in range(3))
        marker = "o" if len(epochs) <= 30 else None
        ax.plot(epochs, value, color=f"C{i}", linewidth=1.2, marker=marker, ms=2.5, label=_short(s.name, 28))
        ax.fill_between(epochs, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.set_title("Cumulative CO2e, shaded: range", loc="left")
    ax.set_ylabel(f"CO2e ({unit})")
    ax.set_xlabel("Epoch")
    ax.set_ylim(bottom=0)
    ax.figure.legend(
        *ax.get_legend_handles_labels(), loc="outside lower center", ncol=min(len(summaries), 2), frameon=False
    )


def _thin_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.spines[["top", "right"]].set_visible(False)


def drawn_texts(fig: Any) -> list[Any]:
    """Every text matplotlib draws in ``fig``: titles, axis labels, tick labels inside the view, legends."""
    texts = [*fig.texts, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            texts += [t.label1 for t in axis.get_major_ticks() if low - 1e-9 <= t.get_loc() <= high + 1e-9]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def clipped_texts(fig: Any) -> list[str]:
    """The drawn text elements of ``fig`` that do not lie entirely inside it (none, for a good figure)."""
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    found = []
    for text in drawn_texts(fig):
        e = text.get_window_extent(renderer)
        if e.x0 < box.x0 - 0.5 or e.y0 < box.y0 - 0.5 or e.x1 > box.x1 + 0.5 or e.y1 > box.y1 + 0.5:
            found.append(text.get_text())
    return found


def plot_runs(summaries: Sequence[RunSummary], out: str | os.PathLike[str], dpi: int = 300) -> Path:
    """Draw ``summaries`` to the image file ``out`` (format from its suffix: ``.png``, ``.pdf``, ``.svg``).

    Raises:
        PlotUnavailable: matplotlib is not installed.
        OSError: the file cannot be written.
    """
    plt = pyplot()
    fig = figure(summaries)
    try:
        path = Path(out)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path
