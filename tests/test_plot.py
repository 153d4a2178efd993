"""The paper figure: 1 to 8 runs with the tracker's default names, no text element outside the figure.

Each figure is drawn by real matplotlib (Agg) from real run directories; ``plot.clipped_texts``
compares every drawn text's window extent with the figure's box.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.test_report import make_run
from tracker import EnergyTracker
from tracker.report import render
from tracker.testing import FakeClock, FakeSensor, steady

plot = pytest.importorskip("tracker.report.plot")
pytest.importorskip("matplotlib")


def figure_of(path: Path):
    return plot.figure(render.load_summaries([str(path)]))


def default_named_runs(log_dir: Path, count: int, epochs: int = 2, gpu: bool = True) -> None:
    """``count`` runs named as the tracker names them (``<UTC time>-<host>-<pid>``), on two grids, alternately."""
    for i in range(count):
        clock = FakeClock()
        sensors = [FakeSensor("cpu", "cpu", steady(50.0), clock, method="tdp_estimate", info={"tdp_w": 150.0})]
        if gpu:
            sensors.append(FakeSensor("gpu:0", "gpu", steady(250.0 + 10 * i), clock))
        grid = {"carbon_intensity_g_per_kwh": 400.0 if i % 2 == 0 else 56.0}
        name = f"20261206T13{i:02d}00Z-vm-{12737 + i}"
        with EnergyTracker(log_dir, run_name=name, sensors=sensors, clock=clock, **grid) as energy:
            for k in range(epochs):
                with energy.epoch(k):
                    clock.advance(30.0)


@pytest.mark.parametrize("epochs", [3, 300])
def test_one_run_renders_without_clipped_text_at_any_length(tmp_path: Path, epochs: int) -> None:
    make_run(tmp_path, "run", epochs=epochs)
    fig = figure_of(tmp_path)
    try:
        assert plot.clipped_texts(fig) == []
        width, height = fig.get_size_inches()
        assert width == plot.WIDTH_IN  # single column
        energy_ax, co2_ax = fig.axes
        ticks = [t for t in energy_ax.get_xticks() if 0 <= t <= epochs - 1]
        assert 2 <= len(ticks) <= 7  # thinned: readable at 300 epochs
        assert energy_ax.get_ylabel() == "Energy (Wh)" and co2_ax.get_ylabel() == "CO2e (g)"  # the text's units
        labels = [t.get_text() for legend in fig.subfigs[0].legends for t in legend.get_texts()]
        assert labels == ["GPU (measured)", "CPU (estimated)", "RAM (estimated)"]
    finally:
        plot.pyplot().close(fig)


def test_every_phase_of_an_epoch_is_in_its_bar(tmp_path: Path) -> None:
    make_run(tmp_path, "run", epochs=2)
    (summary,) = render.load_summaries([str(tmp_path)])
    epochs, energy = plot.epoch_energy(summary)
    train_and_validation = sum(r["gpu_kwh"] for r in summary.rows if r["epoch"] == 0)
    assert epochs == [0, 1] and energy["gpu"][0] == pytest.approx(train_and_validation)


def test_four_runs_share_one_scale_without_clipped_text(tmp_path: Path) -> None:
    for i in range(4):
        make_run(tmp_path, f"learning-rate-{i}", epochs=3 + 4 * i, gpu=i % 2 == 0)
    fig = figure_of(tmp_path)
    try:
        assert plot.clipped_texts(fig) == []
        energy_axes, co2_ax = fig.axes[:4], fig.axes[4]
        assert len({ax.get_ylim() for ax in energy_axes}) == 1  # one energy scale
        assert len({ax.get_xlim() for ax in fig.axes}) == 1  # one epoch scale
        assert len(co2_ax.get_lines()) == 4  # overlaid
        assert [ax.get_title(loc="left") for ax in energy_axes] == [f"learning-rate-{i}" for i in range(4)]
    finally:
        plot.pyplot().close(fig)


@pytest.mark.parametrize("count", range(1, 9))
def test_one_to_eight_default_named_runs_fit_one_column_with_their_components(tmp_path: Path, count: int) -> None:
    default_named_runs(tmp_path, count)
    summaries = render.load_summaries([str(tmp_path)])
    assert len(summaries) == count and all(s.name.startswith("20261206T13") for s in summaries)
    fig = plot.figure(summaries)
    try:
        assert plot.clipped_texts(fig) == []  # the legend and every title inside the canvas
        assert tuple(fig.get_size_inches()) == (plot.WIDTH_IN, plot.HEIGHT_IN)  # one size at any count
        energy_axes = [ax for ax in fig.subfigs[0].axes if ax.get_visible()]
        assert len(energy_axes) == count  # a panel per run: the components stay visible
        assert all(len(ax.patches) == 2 * 2 for ax in energy_axes)  # 2 epochs x (GPU, CPU) bars in each
        if count > 1:  # the shared start of the names is dropped: 20261206T130000Z-vm-12737 -> 130000Z-vm-12737
            titles = [ax.get_title(loc="left") for ax in energy_axes]
            assert titles == [f"13{i:02d}00Z-vm-{12737 + i}" for i in range(count)]
    finally:
        plot.pyplot().close(fig)


def test_the_legend_names_only_what_was_measured_and_says_when_grids_differ(tmp_path: Path) -> None:
    default_named_runs(tmp_path, 2, gpu=False)
    fig = figure_of(tmp_path)
    try:
        components = [t.get_text() for legend in fig.subfigs[0].legends for t in legend.get_texts()]
        assert components == ["CPU (estimated)"]  # no GPU entry when no GPU was measured
        co2_ax = fig.subfigs[1].axes[0]
        assert "different grids" in co2_ax.get_title(loc="left")
        runs = [t.get_text() for legend in fig.subfigs[1].legends for t in legend.get_texts()]
        assert runs == ["130000Z-vm-12737", "130100Z-vm-12738", "grid 400 g/kWh", "grid 56.0 g/kWh"]
        assert [line.get_linestyle() for line in co2_ax.get_lines()[:2]] == ["-", "--"]  # a style per grid
    finally:
        plot.pyplot().close(fig)


def test_a_one_epoch_run_has_whole_epoch_ticks(tmp_path: Path) -> None:
    make_run(tmp_path, "once", epochs=1)
    fig = figure_of(tmp_path)
    try:
        for ax in fig.axes:
            low, high = ax.get_xlim()
            shown = [t for t in ax.get_xticks() if low <= t <= high]
            assert shown == [0.0] and all(math.isclose(t, round(t)) for t in shown)
    finally:
        plot.pyplot().close(fig)


def test_eight_default_named_runs_png(tmp_path: Path) -> None:
    default_named_runs(tmp_path / "logs", 8, epochs=3)
    out = plot.plot_runs(render.load_summaries([str(tmp_path / "logs")]), tmp_path / "eight.png", dpi=150)
    assert out.stat().st_size > 0


def test_a_run_cut_into_rows_by_steps_is_drawn_against_the_step(tmp_path: Path) -> None:
    clock = FakeClock()
    sensors = [FakeSensor("gpu:0", "gpu", steady(250.0), clock)]
    options = {"sensors": sensors, "clock": clock, "carbon_intensity_g_per_kwh": 400.0, "row_every_n_steps": 10}
    with EnergyTracker(tmp_path, run_name="long-epoch", **options) as energy:
        with energy.epoch(0):
            for _ in range(40):
                clock.advance(1.0)
                energy.step()
    fig = figure_of(tmp_path)
    try:
        assert plot.clipped_texts(fig) == []
        energy_ax, co2_ax = fig.axes
        assert co2_ax.get_xlabel() == "Optimizer step" and energy_ax.get_title(loc="left").startswith("Energy per row")
        assert len(energy_ax.patches) >= 4  # a bar per row of 10 steps, not one bar for the one epoch
        assert list(co2_ax.get_lines()[0].get_xdata())[-1] == 40
    finally:
        plot.pyplot().close(fig)
