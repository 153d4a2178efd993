"""A figure for a paper, single-column wide and of one size whatever the run count.

Needs matplotlib (the ``plot`` extra), imported only when a figure is drawn, on the ``Agg`` backend.

- Energy per epoch, stacked by component (GPU, CPU, RAM), one small panel per run in a grid of
  up to two columns (1 to 8 runs and more), every panel on the same y and x scales, so the
  components stay visible at any run count. "The energy of an epoch" is the sum of the
  ``epochs.csv`` rows carrying its number (training and the validation inside it, an epoch cut
  into rows by steps), as the Lightning callback logs it; energy outside every epoch (setup,
  between epochs) is not in the bars, it is in the cumulative CO2e.
- One panel for every run overlaid: cumulative CO2e at the end of each epoch, shaded between its
  low and high bounds. Runs on different grids are drawn with one line style per grid, each named
  in the legend with its intensity, and the panel's title says the grids differ.

Run names are shortened for the panels and the legend: the part every name shares is dropped
(``20261206T130100Z-vm-12737`` and ``20261206T130412Z-vm-12811`` become ``0100Z-vm-12737`` and
``0412Z-vm-12811``) and what is left is cut to :data:`NAME_CHARS` characters. The legend of
components lists only those measured (or estimated) in some run. An epoch axis shows whole epochs
(a one-epoch run: the tick ``0``, not ``-0.3 ... 0.3``). Runs whose epochs were cut into rows by
optimizer steps (``row_every_n_steps``, ``row_every_s``) are drawn against the step instead: a bar
per row, ending at its last step, and the cumulative CO2e at each row's last step.

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
from tracker.logs.schema import PARTIAL
from tracker.report.render import COMPONENTS, RunSummary
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT

INSTALL_HINT = "pip install 'training-energy-tracker[plot]'"
WIDTH_IN, HEIGHT_IN = 3.5, 4.2  # one column of a two-column paper, whatever the run count
ENERGY_SHARE = 0.55  # of the height, for the energy panels
NAME_CHARS = 16  # a run's name in a panel title or the legend
LINE_STYLES = ("-", "--", ":", "-.")  # one per grid, when the runs differ in grid
SEPARATORS = "-_.T "  # where a shared part of run names may be cut (T: an ISO 8601 date and time)
FONT_PT = 7.0
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


def is_step_based(s: RunSummary) -> bool:
    """Whether a run's epochs were cut into rows by optimizer steps (``partial`` rows with ``last_step``)."""
    return any(r.get("status") == PARTIAL and isinstance(r.get("last_step"), int) for r in s.rows)


def step_energy(s: RunSummary) -> tuple[list[int], dict[str, list[float]], list[float]]:
    """Each training row's last optimizer step, its energy per component (kWh) and its span in steps."""
    rows = [r for r in s.rows if r.get("phase") == "train" and isinstance(r.get("last_step"), int)]
    steps = [int(r["last_step"]) for r in rows]
    spans = [max(1.0, float(r["last_step"] - (r.get("first_step") or r["last_step"]) + 1)) for r in rows]
    return steps, {kind: [float(r.get(f"{kind}_kwh") or 0.0) for r in rows] for kind in COMPONENTS}, spans


def cumulative_co2(s: RunSummary, by: str = "epoch") -> tuple[list[int], list[tuple[float, float, float]]]:
    """The run's CO2e (kg, low, high) up to the end of each epoch (or row: ``by="last_step"``), all rows before."""
    points: dict[int, tuple[float, float, float]] = {}
    total = [0.0, 0.0, 0.0]
    for row in s.rows:
        for i, name in enumerate(("co2_kg", "co2_kg_low", "co2_kg_high")):
            total[i] += float(row.get(name) or 0.0)
        if isinstance(row.get(by), (int, float)):
            points[int(row[by])] = (total[0], total[1], total[2])
    epochs = sorted(points)
    return epochs, [points[e] for e in epochs]


def component_label(s: Sequence[RunSummary], kind: str) -> str:
    """``GPU (measured)``, ``CPU (estimated)``, or ``RAM (measured and estimated)`` over the runs."""
    methods = {m for run in s for m in run.methods[kind].split("+") if m != ABSENT}
    how = {"measured" if registry.is_measured(m) else "estimated" for m in methods}
    return f"{kind.upper()} ({' and '.join(sorted(how, reverse=True))})" if how else kind.upper()


def short_names(names: Sequence[str], limit: int = 0) -> list[str]:
    """``names`` without the start and end they all share (cut at a ``-``, ``_``, ``.`` or ``T``), each ``limit`` chars.

    ``20261206T130100Z-vm-12737`` and ``20261206T130412Z-vm-12737`` become ``130100Z`` and ``130412Z``.
    """
    limit = limit or NAME_CHARS
    if len(names) > 1 and max(len(n) for n in names) > limit:
        start = _at_separator(os.path.commonprefix(list(names)), from_end=False)
        end = _at_separator(os.path.commonprefix([n[::-1] for n in names])[::-1], from_end=True)
        cut = [n[len(start) : len(n) - len(end)] for n in names]
        names = cut if all(cut) and len(set(cut)) == len(cut) else names
    return [n if len(n) <= limit else n[: limit - 1] + "…" for n in names]


def _at_separator(shared: str, from_end: bool) -> str:
    """The part of a shared start (or end) up to its last (or from its first) separator, separator included."""
    marks = [i for i, c in enumerate(shared) if c in SEPARATORS]
    if not marks:
        return ""
    return shared[marks[0] :] if from_end else shared[: marks[-1] + 1]


def measured_kinds(summaries: Sequence[RunSummary]) -> list[str]:
    """The components some run measured or estimated (``absent`` in every run: left out of the legend)."""
    return [k for k in COMPONENTS if any(m != ABSENT for s in summaries for m in s.methods[k].split("+"))]


def grids_differ(summaries: Sequence[RunSummary]) -> bool:
    """Whether the runs used different grids (intensity compared as printed, or another place)."""
    return len({_grid_label(s) for s in summaries}) > 1


def _grid_label(s: RunSummary) -> str:
    grid = s.recosted if s.recosted and s.recosted.get("g_per_kwh") is not None else s.intensity
    return f"{units.number(grid.get('g_per_kwh'))} g/kWh"


def figure(summaries: Sequence[RunSummary]) -> Any:
    """The figure of ``summaries`` (a matplotlib ``Figure``; the caller closes it)."""
    plt = pyplot()
    plt.rcParams.update({"font.size": FONT_PT, "axes.titlesize": FONT_PT, "legend.fontsize": FONT_PT - 0.5})
    n = max(len(summaries), 1)
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    fig = plt.figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[ENERGY_SHARE, 1 - ENERGY_SHARE])
    axes = top.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    by_step = bool(summaries) and all(is_step_based(s) for s in summaries)
    data = [step_energy(s) if by_step else (*epoch_energy(s), None) for s in summaries]
    peak = max((sum(e[k][i] for k in COMPONENTS) for _, e, _ in data for i in range(len(e["gpu"]))), default=0.0)
    factor, unit = units.unit_of(peak, units.ENERGY_KWH)
    names = short_names([s.name for s in summaries])
    for i, (ax, (where, energy, spans)) in enumerate(zip(axes, data, strict=False)):
        _stacked(ax, where, energy, factor, spans)
        title = "Energy per row (optimizer steps)" if by_step else "Energy per epoch"
        ax.set_title(names[i] if n > 1 else title, loc="left", color=f"C{i}" if n > 1 else "black")
    for ax in axes[n:]:
        ax.set_visible(False)
        axes[n - cols].xaxis.set_tick_params(labelbottom=True)  # the panel above an empty place: its own epochs
    if n == 1:
        axes[0].set_ylabel(f"Energy ({unit})")
    else:
        top.supylabel(f"Energy ({unit})", fontsize=FONT_PT)
    kinds = measured_kinds(summaries)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in kinds]
    top.legend(handles, [component_label(summaries, k) for k in kinds], loc="outside upper center",
               ncol=len(kinds) or 1, frameon=False, handlelength=1.0)  # fmt: skip
    co2_ax = bottom.subplots()
    _co2(co2_ax, summaries, names, "last_step" if by_step else "epoch")
    for ax in [*axes[:n], co2_ax]:
        _ticks(ax, [x for where, _, _ in data for x in where], 2 if rows > 2 and ax is not co2_ax else 3, by_step)
    co2_ax.set_xlim(axes[0].get_xlim())
    return fig


def _stacked(ax: Any, epochs: list[int], energy: dict[str, list[float]], factor: float, spans: Any) -> None:
    bottom = [0.0] * len(epochs)
    width = [-0.9 * w for w in spans] if spans else 0.8 if len(epochs) <= 60 else 1.0  # a row's bar ends at its step
    align = "edge" if spans else "center"
    for kind in COMPONENTS:
        heights = [v / factor for v in energy[kind]]
        if any(heights):
            ax.bar(epochs, heights, width, bottom=bottom, color=COLOURS[kind], linewidth=0, align=align)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]


def _co2(ax: Any, summaries: Sequence[RunSummary], names: list[str], by: str) -> None:
    curves = [cumulative_co2(s, by) for s in summaries]
    top = max((p[2] for _, points in curves for p in points), default=0.0)
    factor, unit = units.unit_of(top, units.MASS_KG)
    grids = list(dict.fromkeys(_grid_label(s) for s in summaries))
    for i, (s, (epochs, points)) in enumerate(zip(summaries, curves, strict=True)):
        value, low, high = ([p[j] / factor for p in points] for j in range(3))
        marker = "o" if len(epochs) <= 30 else None
        style = LINE_STYLES[grids.index(_grid_label(s)) % len(LINE_STYLES)]
        ax.plot(epochs, value, style, color=f"C{i}", linewidth=1.2, marker=marker, ms=2.5, label=names[i])
        ax.fill_between(epochs, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
    handles, labels = ax.get_legend_handles_labels()
    if len(grids) > 1:  # one line style per grid, named after the runs
        for j, grid in enumerate(grids):
            handles.append(ax.plot([], [], LINE_STYLES[j % len(LINE_STYLES)], color="black", linewidth=1.0)[0])
            labels.append(f"grid {grid}")
    title = "Cumulative CO2e, shaded: range" + ("; runs on different grids" if len(grids) > 1 else "")
    ax.set_title(title, loc="left")
    ax.set_ylabel(f"CO2e ({unit})")
    ax.set_xlabel("Optimizer step" if by == "last_step" else "Epoch")
    ax.set_ylim(bottom=0)
    if len(handles) > 1:
        _legend(ax.figure, handles, labels)


def _legend(fig: Any, handles: list[Any], labels: list[str]) -> None:
    """The runs' legend under the figure, in as many columns (3, 2, 1) as fit its width."""
    root = fig.get_figure(root=True)
    style = {"loc": "outside lower center", "frameon": False, "handlelength": 1.5, "columnspacing": 1.0}
    for ncol in (3, 2, 1):
        legend = fig.legend(handles, labels, ncol=min(ncol, len(labels)), **style)
        root.canvas.draw()
        if legend.get_window_extent().width <= root.bbox.width * 0.98 or ncol == 1:
            return
        legend.remove()


def _ticks(ax: Any, where: list[int], y_bins: int, by_step: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    low, high = (min(where), max(where)) if where else (0, 1)
    if by_step:
        ax.set_xlim(0, high * 1.02 + 1)  # steps from the first
    else:
        ax.set_xlim(low - 0.6, high + 0.6)  # whole epochs: one epoch is the tick 0, not -0.3 ... 0.3
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=y_bins))
    ax.spines[["top", "right"]].set_visible(False)


def drawn_texts(fig: Any) -> list[Any]:
    """Every text matplotlib draws in ``fig``: titles, axis labels, tick labels inside the view, legends."""
    figures, texts = [fig], []
    while figures:  # the figure and its subfigures (the energy grid, the CO2e panel), each with its own texts
        f = figures.pop()
        figures += getattr(f, "subfigs", [])
        texts += [*f.texts, *(t for legend in f.legends for t in legend.get_texts())]
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
