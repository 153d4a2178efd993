"""The paper figure: rendered at 3 and 300 epochs and with 4 runs, no text element outside the figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_report import make_run
from tracker.report import render

plot = pytest.importorskip("tracker.report.plot")
pytest.importorskip("matplotlib")


def figure_of(path: Path):
    return plot.figure(render.load_summaries([str(path)]))


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
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert labels[:3] == ["GPU (measured)", "CPU (estimated)", "RAM (estimated)"]
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
    finally:
        plot.pyplot().close(fig)
