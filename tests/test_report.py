"""Reading runs back: totals, comparison, formats, the paragraph for papers, plots, device survey.

Runs are real run directories written by ``EnergyTracker`` with fake sensors of known power
driven by a fake clock, so every figure is known exactly.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest

import tracker
from tracker import EnergyTracker
from tracker.report import paper
from tracker.report import render as report
from tracker.report.devices import describe, power_w, survey
from tracker.sensors import Reading
from tracker.testing import FakeClock, FakeGpu, FakeNvml, FakeSensor, build_powercap_tree, steady

GPU_W, CPU_W, RAM_W = 250.0, 50.0, 6.0
EPOCH_S, VALIDATION_S = 36.0, 4.0
J_PER_KWH = 3_600_000


def make_run(
    log_dir: Path,
    name: str,
    *,
    epochs: int = 3,
    gpu: bool = True,
    g_per_kwh: float = 400.0,
    pue: float = 1.2,
    fail_in: int | None = None,
) -> Path:
    """A run of ``epochs`` epochs of 36 s, each followed by a 4 s validation; raises in epoch ``fail_in``."""
    clock = FakeClock()
    sensors = [
        FakeSensor(
            "cpu",
            "cpu",
            steady(CPU_W),
            clock,
            method="tdp_estimate",
            info={"model": "Intel Xeon Gold 6248", "tdp_w": 150.0, "tdp_source": "codecarbon cpu_power.csv"},
        ),
        FakeSensor(
            "ram",
            "ram",
            steady(RAM_W),
            clock,
            method="ram_model",
            info={"model": "0.375 W/GiB x memory size", "w_per_gib": 0.375},
        ),
    ]
    if gpu:
        sensors.insert(0, FakeSensor("gpu:0", "gpu", steady(GPU_W), clock, info={"name": "NVIDIA A100-SXM4-40GB"}))
    options = {"sensors": sensors, "clock": clock, "carbon_intensity_g_per_kwh": g_per_kwh, "pue": pue}
    with EnergyTracker(log_dir, run_name=name, epochs=epochs, **options) as energy:
        for i in range(epochs):
            with energy.epoch(i, samples=1000):
                clock.advance(EPOCH_S)
                energy.log_metrics({"loss": 1.0 / (i + 1), "accuracy": 0.5 + 0.1 * i})
                if i == fail_in:
                    raise KeyboardInterrupt
            with energy.phase("validation"):
                clock.advance(VALIDATION_S)
    return log_dir / name


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    make_run(tmp_path, "a")
    make_run(tmp_path, "b", epochs=2, gpu=False, g_per_kwh=500.0, pue=1.0)
    return tmp_path


# Run a: 3 × (36 + 4) s at 306 W; run b: 2 × 40 s at 56 W.
A_J, B_J = 3 * 40 * (GPU_W + CPU_W + RAM_W), 2 * 40 * (CPU_W + RAM_W)
A_LOW_J = 120 * (0.95 * GPU_W + 0.6 * CPU_W + 0.5 * RAM_W)
A_HIGH_J = 120 * (1.05 * GPU_W + 1.4 * CPU_W + 2.0 * RAM_W)


def test_totals_are_the_sums_of_the_rows(two_runs: Path) -> None:
    a, b = report.load_summaries([str(two_runs)])
    assert (a.name, a.epochs, len(a.rows), a.status) == ("a", 3, 6, "complete")
    assert a.totals["duration_s"] == 120.0
    assert a.totals["energy_kwh"] == pytest.approx(A_J / J_PER_KWH, rel=1e-12)
    assert a.totals["gpu_kwh"] == pytest.approx(120 * GPU_W / J_PER_KWH, rel=1e-12)
    assert a.totals["energy_kwh_low"] == pytest.approx(A_LOW_J / J_PER_KWH, rel=1e-12)
    assert a.totals["co2_kg"] == pytest.approx(A_J / J_PER_KWH * 1.2 * 400 / 1000, rel=1e-12)
    assert a.totals["co2_kg"] == math.fsum(r["co2_kg"] for r in a.rows)
    assert a.intensity["g_per_kwh"] == pytest.approx(400.0, rel=1e-12)
    assert a.methods == {"gpu": "energy_counter", "cpu": "tdp_estimate", "ram": "ram_model"}
    assert a.metrics == {"loss": 1 / 3, "accuracy": 0.7}
    assert a.forecast["forecast_total_kwh"] == pytest.approx(A_J / J_PER_KWH, rel=1e-12)
    assert b.methods["gpu"] == "absent"
    assert b.totals["energy_kwh"] == pytest.approx(B_J / J_PER_KWH, rel=1e-12)


def test_comparison_ratios_to_the_first_run(two_runs: Path) -> None:
    first, second = report.comparison(report.load_summaries([str(two_runs / "a"), str(two_runs / "b")]))
    assert first["energy_kwh_ratio"] == 1.0 and first["kwh_per_epoch"] == pytest.approx(A_J / 3 / J_PER_KWH)
    assert second["energy_kwh_ratio"] == pytest.approx(B_J / A_J, rel=1e-12)
    assert second["kwh_per_epoch_ratio"] == pytest.approx((B_J / 2) / (A_J / 3), rel=1e-12)
    assert second["duration_s_ratio"] == pytest.approx(80 / 120)
    assert second["co2_kg_ratio"] == pytest.approx((B_J * 500) / (A_J * 1.2 * 400), rel=1e-12)
    assert second["methods"] == "cpu:tdp_estimate ram:ram_model"


def test_same_run_given_twice_is_reported_once(two_runs: Path) -> None:
    assert [s.name for s in report.load_summaries([str(two_runs / "a"), str(two_runs)])] == ["a", "b"]


def test_csv_rows_equal_the_logged_rows(two_runs: Path) -> None:
    table = pd.read_csv(io.StringIO(report.render(report.load_summaries([str(two_runs)]), "csv")))
    assert table["run"].tolist() == ["a"] * 6 + ["b"] * 4
    for name in ("a", "b"):
        logged = pd.read_csv(two_runs / name / "epochs.csv")
        mine = table[table["run"] == name].reset_index(drop=True)
        for column in ("duration_s", "gpu_kwh", "cpu_kwh", "ram_kwh", "energy_kwh", "co2_kg", "co2_kg_high", "loss"):
            pd.testing.assert_series_equal(mine[column], logged[column], check_names=False)


def test_json_holds_runs_rows_and_comparison(two_runs: Path) -> None:
    document = json.loads(report.render(report.load_summaries([str(two_runs)]), "json"))
    a = document["runs"][0]
    assert len(a["rows"]) == 6 and a["kwh_per_epoch"] == pytest.approx(A_J / 3 / J_PER_KWH)
    assert [e["unit"] for e in a["equivalents"]] == ["charges", "km", "passenger-km"]
    assert [line["run"] for line in document["comparison"]] == ["a", "b"]


def test_text_and_markdown_tables(two_runs: Path) -> None:
    summaries = report.load_summaries([str(two_runs)])
    text = report.render(summaries, "text")
    assert "Run a" in text and "Run b" in text and "Comparison (ratios to the first run)" in text
    total = next(line for line in text.splitlines() if line.strip().startswith("total"))
    assert total.split()[1:4] == ["120", "0.008333", "0.001667"]  # s, GPU kWh (30 kJ), CPU kWh (6 kJ)
    markdown = report.render(summaries, "markdown")
    assert "## Run a" in markdown and "## Comparison (ratios to the first run)" in markdown
    assert "| epoch | phase | status | duration_s |" in markdown


def test_paper_paragraph_states_figures_methods_and_sources(two_runs: Path) -> None:
    a, b = report.load_summaries([str(two_runs)])
    text = paper.paragraph(a)
    assert text.startswith("Training took 2.00 min on 1 × NVIDIA A100-SXM4-40GB GPU and an Intel Xeon Gold 6248 CPU, ")
    assert "consuming 0.0102 kWh (range 0.00902–0.0115 kWh; GPU measured with NVML energy counters, " in text
    assert "CPU estimated from CPU utilisation and a TDP of 150 W (codecarbon cpu_power.csv)" in text
    assert "RAM estimated with a RAM power model (0.375 W/GiB of memory)" in text
    assert "grid carbon intensity of 400 g CO2e/kWh (given by the user) and a PUE of 1.2 amounts to 0.00490 kg" in text
    assert "0.0455 km driven by a new car (EU fleet average; 107.5 gCO2/km, EEA" in text
    assert text.endswith(f"Measured with training-energy-tracker {tracker.__version__}.")
    cpu_only = paper.paragraph(b)
    assert "on a CPU-only machine (an Intel Xeon Gold 6248 CPU), consuming an estimated 0.00124 kWh" in cpu_only
    assert "measured" not in cpu_only.replace("Measured with", "")


def test_interrupted_run_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        make_run(tmp_path, "cut", fail_in=1)
    (summary,) = report.load_summaries([str(tmp_path)])
    assert summary.status == "interrupted" and summary.epochs == 1
    assert [r["status"] for r in summary.rows] == ["complete", "complete", "interrupted"]
    assert "The run did not finish (status interrupted); the figures cover the 3 rows it logged." in (
        paper.paragraph(summary)
    )


def test_figures_in_fixed_notation() -> None:
    values = (0.000123456, 0.0102, 1.0, 1234.5, 0.0)
    assert [paper.fig(v) for v in values] == ["0.000123", "0.0102", "1.00", "1234", "0"]
    assert [paper.duration_text(s) for s in (30.0, 120.0, 9000.0)] == ["30.0 s", "2.00 min", "2.50 h"]


def test_counter_power_handles_wraparound() -> None:
    before = Reading("cpu:package-0", "cpu", 10.0, energy_j=990.0, counter_range_j=1000.0)
    after = Reading("cpu:package-0", "cpu", 10.5, energy_j=30.0, counter_range_j=1000.0)
    assert power_w(before, after) == 80.0
    assert power_w(Reading("g", "gpu", 1.0, power_w=7.0), Reading("g", "gpu", 1.5, power_w=9.0)) == 9.0


def test_survey_reads_counters_half_a_second_apart(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = build_powercap_tree(tmp_path / "powercap")
    nvml = FakeNvml([FakeGpu(name="NVIDIA H100", trace=steady(250.0))], clock=clock)

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        tree.add_energy_j("package-0", 40.0)
        tree.add_energy_j("dram-0", 2.0)

    found = survey(sleep=sleep, nvml=nvml, powercap_root=tree.root, clock=clock, visible_devices="0")
    assert {s["name"]: s["power_w"] for s in found["sensors"]} == {
        "gpu:0": 250.0,
        "cpu:package-0": 80.0,
        "ram:dram-0": 4.0,
    }
    assert found["absent"] == [] and found["verdict"] == "Measured by hardware counters: cpu, gpu, ram."


def test_survey_without_gpu_or_rapl_says_everything_is_estimated(tmp_path: Path) -> None:
    (tmp_path / "powercap").mkdir()
    found = survey(wait_s=0.0, nvml=FakeNvml(library_missing=True), powercap_root=tmp_path / "powercap", cpu_tdp_w=95.0)
    assert [(a["source"], a["kind"]) for a in found["absent"]] == [("nvml", "gpu"), ("rapl", "cpu")]
    text = describe(found)
    assert "No GPU and no readable RAPL here" in text and "Every figure on this machine is an estimate." in text
    assert "utilisation x TDP (tdp_user: 95.0 W, user (tdp_w))" in text
    assert f"rapl (cpu): not supported: no intel-rapl:N package zone in {tmp_path / 'powercap'}" in text
