"""Model cards and notebooks: ``report --model-card``, ``_repr_html_`` of a summary and a run, one frame of runs."""

import pytest
import yaml

from tracker import EnergyTracker, load_run, load_runs
from tracker.cli import main
from tracker.testing import FakeClock, FakeSensor, steady


def make_run(log_dir, name, **options):
    """Two epochs of 36 s at 250 W of GPU (counter) and 50 W of CPU (estimated): 21.6 kJ."""
    clock = FakeClock()
    sensors = [
        FakeSensor("gpu:0", "gpu", steady(250.0), clock, info={"name": "NVIDIA A100-SXM4-40GB"}),
        FakeSensor("cpu", "cpu", steady(50.0), clock, method="tdp_estimate", info={"model": "Intel Xeon Gold 6248"}),
    ]
    options = {"pue": 1.2, **options}
    if "country" not in options:
        options["carbon_intensity_g_per_kwh"] = 400.0
    with EnergyTracker(log_dir, run_name=name, sensors=sensors, clock=clock, **options) as energy:
        for i in range(2):
            with energy.epoch(i, samples=1000):
                clock.advance(36.0)
                energy.log_metrics({"loss": 1.0 / (i + 1)})
    return energy


def test_model_card_block_for_a_run(tmp_path, capsys):
    make_run(tmp_path, "lr-0.1", country="FRA")
    assert main(["report", str(tmp_path / "lr-0.1"), "--model-card", "--training-type", "fine-tuning"]) == 0
    text = capsys.readouterr().out
    card = yaml.safe_load(text)["co2_eq_emissions"]
    intensity = load_run(tmp_path / "lr-0.1").epochs[0]["carbon_intensity_g_per_kwh"]
    assert card["emissions"] == pytest.approx(21_600 / 3.6e6 * 1.2 * intensity, rel=1e-5)  # grams
    assert card["training_type"] == "fine-tuning" and card["geographical_location"] == "France"
    assert card["hardware_used"].startswith("1 × NVIDIA A100-SXM4-40GB GPU")
    assert card["source"].startswith("training-energy-tracker") and "gpu:energy_counter" in card["source"]


def test_model_card_per_experiment_recosted(tmp_path, capsys):
    for name in ("a", "b"):
        make_run(tmp_path / "sweep", name)
    make_run(tmp_path / "other", "c", experiment="other-exp")
    assert main(["report", str(tmp_path / "sweep"), "--model-card", "--intensity", "100"]) == 0
    card = yaml.safe_load(capsys.readouterr().out)["co2_eq_emissions"]
    assert card["emissions"] == pytest.approx(2 * 21_600 / 3.6e6 * 1.2 * 100, rel=1e-5)
    assert card["training_type"] == "pre-training"
    assert main(["report", str(tmp_path), "--recursive", "--model-card"]) == 0
    text = capsys.readouterr().out
    assert text.count("co2_eq_emissions:") == 2 and "# experiment: other-exp" in text


def test_summary_and_run_show_a_compact_table_in_jupyter(tmp_path):
    energy = make_run(tmp_path, "run-<1>")
    html = energy.summary()._repr_html_()
    assert html.startswith("<table>") and len(html) < 2000 and "run-&lt;1&gt;" in html
    assert "6.00 Wh" in html and "2.88 g" in html and "energy_counter" in html
    run_html = load_run(energy.run_dir)._repr_html_()
    assert run_html.startswith("<table>") and "6.00 Wh" in run_html and "2 epochs finished" in run_html


def test_a_run_s_table_says_a_component_not_measured_and_each_method_as_the_summary_does(tmp_path, capsys):
    clock = FakeClock()
    sensors = [FakeSensor("cpu", "cpu", steady(50.0), clock, method="tdp_estimate")]
    with EnergyTracker(tmp_path, run_name="cpu", sensors=sensors, clock=clock, epochs=1,
                       carbon_intensity_g_per_kwh=400.0) as energy:  # fmt: skip
        with energy.epoch(0):
            clock.advance(36.0)
    run_html = load_run(energy.run_dir)._repr_html_()
    assert "gpu</th><td>not measured</td>" in run_html and "0 kWh" not in run_html
    assert "cpu</th><td>500 mWh [tdp_estimate, estimated]</td>" in run_html  # never read as a measurement
    for html in (run_html, energy.summary()._repr_html_()):
        assert "energy</th><td>500 mWh (" in html and "[tdp_estimate, estimated]" in html
    assert "    cpu             500 mWh  [tdp_estimate, estimated]" in str(energy.summary())
    assert main(["report", str(energy.run_dir)]) == 0
    assert "200 mg CO2e (" in energy.summary()._repr_html_()  # the forecast with its band
    assert "  CPU       500 mWh [tdp_estimate, estimated]" in capsys.readouterr().out


def test_one_frame_across_runs(tmp_path):
    pytest.importorskip("pandas")
    for name in ("a", "b"):
        make_run(tmp_path, name)
    frame = load_runs(tmp_path).frame()
    train = frame[frame.phase == "train"]
    assert sorted(set(frame.run)) == ["a", "b"] and len(train) == 4
    assert train.groupby("run")["energy_kwh"].sum().tolist() == pytest.approx([0.006, 0.006])
    assert list(frame.columns[:2]) == ["run", "job_id"] and "loss" in frame.columns


def test_whole_number_columns_stay_whole_numbers_with_empty_cells(tmp_path):
    pytest.importorskip("pandas")
    clock = FakeClock()
    with EnergyTracker(tmp_path, run_name="a", sensors=[FakeSensor("cpu", "cpu", steady(50.0), clock)], clock=clock,
                       carbon_intensity_g_per_kwh=400.0) as energy:  # fmt: skip
        clock.advance(5.0)  # an `other` row: no epoch, no samples
        with energy.epoch(0, samples=1000):
            clock.advance(36.0)
    for frame in (load_runs(tmp_path).frame(), load_run(energy.run_dir).epochs_frame()):
        assert frame["epoch"].isna().any() and frame["samples"].isna().any()
        assert str(frame["epoch"].dtype) == str(frame["samples"].dtype) == "Int64"
        assert frame["samples"].max() == 1000 and str(frame["energy_kwh"].dtype) == "float64"
