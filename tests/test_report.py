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
from tests.helpers import PATIENT, gpu_tracker
from tracker import EnergyTracker, load_run
from tracker.report import paper
from tracker.report import render as report
from tracker.report.devices import describe, power_w, survey
from tracker.report.experiments import group
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
    with EnergyTracker(log_dir, run_name=name, epochs=epochs, **options, **PATIENT) as energy:
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
    assert a.totals.duration_s == 120.0
    assert a.totals.energy_kwh == pytest.approx(A_J / J_PER_KWH, rel=1e-12)
    assert a.totals.gpu_kwh == pytest.approx(120 * GPU_W / J_PER_KWH, rel=1e-12)
    assert a.totals.energy_kwh_low == pytest.approx(A_LOW_J / J_PER_KWH, rel=1e-12)
    assert a.totals.co2_kg == pytest.approx(A_J / J_PER_KWH * 1.2 * 400 / 1000, rel=1e-12)
    assert a.totals.co2_kg == math.fsum(r["co2_kg"] for r in a.rows)
    assert a.intensity["g_per_kwh"] == pytest.approx(400.0, rel=1e-12)
    assert a.methods == {"gpu": "energy_counter", "cpu": "tdp_estimate", "ram": "ram_model"}
    assert a.metrics == {"loss": 1 / 3, "accuracy": 0.7}
    assert a.forecast["forecast_total_kwh"] == pytest.approx(A_J / J_PER_KWH, rel=1e-12)
    assert b.methods["gpu"] == "absent"
    assert b.totals.energy_kwh == pytest.approx(B_J / J_PER_KWH, rel=1e-12)
    assert repr(a).startswith("RunSummary(name='a', path=") and "rows=" not in repr(a)


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
    assert "Run a" in text and "Run b" in text and "total and comparison (ratios to the first run)" in text
    assert "2.45432e-06" not in text and "e+0" not in text and "e-0" not in text  # never scientific notation
    total = next(line for line in text.splitlines() if line.strip().startswith("total"))
    assert total.split()[1:4] == ["2.00", "8.33", "1.67"]  # min, GPU Wh (30 kJ), CPU Wh (6 kJ)
    markdown = report.render(summaries, "markdown")
    assert "## Run a" in markdown and "## Experiment " in markdown
    assert "| epoch | phase | status | time (min) | GPU (Wh) |" in markdown


def test_runs_group_into_experiments_by_directory_or_the_name_given(tmp_path: Path) -> None:
    make_run(tmp_path / "sweep", "a")
    make_run(tmp_path / "sweep", "b", epochs=2)
    make_run(tmp_path / "other", "c", epochs=1)
    info = json.loads((tmp_path / "other" / "c" / "run.json").read_text())
    (tmp_path / "other" / "c" / "run.json").write_text(json.dumps({**info, "experiment": "sweep"}))
    summaries = report.load_summaries([str(tmp_path / "sweep"), str(tmp_path / "other")])
    (experiment,) = group(summaries)
    assert experiment.name == "sweep" and [s.name for s in experiment.runs] == ["a", "b", "c"]
    assert experiment.epochs == 6
    assert experiment.totals.energy_kwh == pytest.approx(sum(s.totals.energy_kwh for s in summaries))


def test_paper_paragraph_states_figures_methods_and_sources(two_runs: Path) -> None:
    a, b = report.load_summaries([str(two_runs)])
    text = paper.paragraph(a)
    assert text.startswith("Training took 2.00 min on 1 × NVIDIA A100-SXM4-40GB GPU and an Intel Xeon Gold 6248 CPU ")
    assert "used 10.2 Wh of electricity (range 9.02–11.5 Wh). GPU energy was measured with the GPU's built-in " in text
    assert "CPU energy was estimated from CPU utilisation and a thermal design power of 150 W" in text
    assert "RAM energy was estimated at 0.375 W per GiB of memory" in text
    assert "400 g CO2e/kWh, a figure given by the authors, and a PUE of 1.20, this amounts to 4.90 g CO2e" in text
    assert "0.0000" not in text and "((" not in text and "http" not in text and ".json" not in text
    assert f"Energy was recorded per epoch with training-energy-tracker {tracker.__version__}." in text
    cpu_only = paper.paragraph(b)
    assert "on a CPU-only machine with an Intel Xeon Gold 6248 CPU and used an estimated 1.24 Wh" in cpu_only
    assert "measured" not in cpu_only


@pytest.mark.parametrize(
    ("co2_kg", "energy_kwh", "phrase"),
    [(3.0e-8, 1e-7, None), (0.005, 0.012, "1.00 smartphone charges"), (50.0, 1000.0, "465 km")],
)
def test_at_most_one_equivalent_and_only_at_a_meaningful_scale(co2_kg, energy_kwh, phrase) -> None:
    text = paper.equivalent_text(co2_kg, energy_kwh, paper.References())
    assert (text == "") if phrase is None else (phrase in text and text.count("about as much as") == 1)


def test_a_region_is_named_and_its_source_cited_by_name_and_year() -> None:
    refs = paper.References()
    grid = {"g_per_kwh": 179.06, "method": "argument", "country": "USA", "region": "US-CA",
            "source": "codecarbon usa_emissions.json (EPA eGRID2023, annual CO2e, converted), 2023"}  # fmt: skip
    assert paper.intensity_text([grid], refs) == "179 g CO2e/kWh for region US-CA, from EPA eGRID2023 (2023) [1]"
    assert refs.items[0].startswith("EPA eGRID2023 (2023).")


def test_each_grid_is_stated_with_its_own_place_and_source_and_each_figure_once() -> None:
    fra = {"g_per_kwh": 56.04, "method": "argument", "country": "FRA", "region": None,
           "source": "codecarbon global_energy_mix.json (Our World in Data / Ember), 2023"}  # fmt: skip
    world = {
        "g_per_kwh": 475.00000000000006,
        "method": "world_average",
        "country": None,
        "region": None,
        "source": "codecarbon carbon_intensity_per_source.json world_average (IEA 2019: https://www.iea.org/x)",
    }
    refs = paper.References()
    text = paper.intensity_text([fra, world, {**world, "g_per_kwh": 475.0}, world], refs)
    assert text == (
        "56.0 g CO2e/kWh for France (1 run), from Our World in Data / Ember (2023) [1]; 475 g CO2e/kWh (the world "
        "average, a placeholder as the location was not known; 3 runs), from IEA (2019) [2]"
    )
    assert refs.items[1].startswith("IEA (2019). Global Energy & CO2 Status Report 2019")
    alone = paper.intensity_text([world, {**world, "g_per_kwh": 475.0}], paper.References())
    assert alone.startswith("475 g CO2e/kWh (the world average, ") and alone.count("475") == 1


def test_interrupted_run_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        make_run(tmp_path, "cut", fail_in=1)
    (summary,) = report.load_summaries([str(tmp_path)])
    assert summary.status == "interrupted" and summary.epochs == 1
    assert [r["status"] for r in summary.rows] == ["complete", "complete", "interrupted"]
    assert "The run cut did not finish (interrupted); the figures cover the 3 rows it logged." in (
        paper.paragraph(summary)
    )


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

    found = survey(sleep=sleep, nvml=nvml, powercap_root=tree.root, clock=clock, visible_devices="0", node=False)
    assert {s["name"]: s["power_w"] for s in found["sensors"]} == {
        "gpu:0": 250.0,
        "cpu:package-0": 80.0,
        "ram:dram-0": 4.0,
    }
    assert found["absent"] == [] and found["verdict"] == "Measured by hardware counters: cpu, gpu, ram."


def test_survey_without_gpu_or_rapl_says_everything_is_estimated(tmp_path: Path) -> None:
    (tmp_path / "powercap").mkdir()
    found = survey(
        wait_s=0.0, nvml=FakeNvml(library_missing=True), powercap_root=tmp_path / "powercap", cpu_tdp_w=95.0, node=False
    )
    assert [(a["source"], a["kind"]) for a in found["absent"]] == [("nvml", "gpu"), ("rapl", "cpu")]
    text = describe(found)
    assert (
        "No GPU and no readable RAPL here" in text
        and "Every component's figure on this machine is an estimate." in text
    )
    assert "utilisation x TDP (tdp_user: 95.0 W, user (tdp_w))" in text
    assert f"rapl (cpu): not supported: no intel-rapl:N package zone in {tmp_path / 'powercap'}" in text


def test_a_run_s_gpus_of_one_model_are_all_counted_in_the_hardware(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name="NVIDIA A100-SXM4-80GB", trace=steady(300.0)) for _ in range(2)], clock=clock)
    runs = []
    for name in ("a", "b"):  # two runs of one experiment on the same two GPUs: still two GPUs
        with gpu_tracker(tmp_path, nvml, clock=clock, sampling="manual", run_name=name) as energy:
            with energy.epoch(0):
                clock.advance(60.0)
        runs.append(report.summarize(load_run(energy.run_dir)))
    assert paper.hardware_text(runs) == "2 × NVIDIA A100-SXM4-80GB GPUs"
