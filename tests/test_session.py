import csv
import json
import logging

import pandas as pd
import pytest

from tests.helpers import PATIENT, run_for
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError, UsageError
from tracker.logs.schema import EPOCH_COLUMNS
from tracker.testing import FakeSensor, piecewise, steady


@pytest.fixture
def sensors(clock):
    return [
        FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": "Fake A100", "uuid": "GPU-1"}),
        FakeSensor("cpu", "cpu", steady(30.0), clock, method="tdp_estimate"),
        FakeSensor("ram", "ram", steady(6.0), clock, method="ram_model"),
    ]


def tracker_for(tmp_path, clock, sensors, **options):
    options.setdefault("carbon_intensity_g_per_kwh", 400.0)
    return EnergyTracker(tmp_path, sensors=sensors, clock=clock, **options, **PATIENT)


def rows(tracker):
    return load_run(tracker.run_dir).epochs


def test_rows_per_epoch_and_phase_with_exact_energy(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, pue=1.5) as energy:
        for epoch in range(2):
            with energy.epoch(epoch, samples=1000):
                run_for(energy, clock, 10.0)
                with energy.phase("validation"):
                    run_for(energy, clock, 2.0)
                run_for(energy, clock, 10.0)
    got = rows(energy)
    assert [(r["epoch"], r["phase"], r["status"]) for r in got] == [
        (0, "validation", "complete"),
        (0, "train", "complete"),
        (1, "validation", "complete"),
        (1, "train", "complete"),
    ]
    train, val = got[1], got[0]
    assert train["duration_s"] == 20.0 and val["duration_s"] == 2.0
    assert train["gpu_kwh"] == pytest.approx(300 * 20 / J_PER_KWH)
    assert train["cpu_kwh"] == pytest.approx(30 * 20 / J_PER_KWH)
    assert train["ram_kwh"] == pytest.approx(6 * 20 / J_PER_KWH)
    assert train["energy_kwh"] == pytest.approx(336 * 20 / J_PER_KWH)
    assert train["co2_kg"] == pytest.approx(336 * 20 / J_PER_KWH * 1.5 * 0.4)
    assert train["energy_per_sample_j"] == pytest.approx(336 * 20 / 1000)
    methods = (train["gpu_method"], train["cpu_method"], train["ram_method"])
    assert methods == ("energy_counter", "tdp_estimate", "ram_model")
    assert train["pue"] == 1.5 and train["carbon_intensity_g_per_kwh"] == 400.0
    assert train["co2_kg_low"] < train["co2_kg"] < train["co2_kg_high"]
    assert train["gpu_power_mean_w"] == pytest.approx(300.0)


def test_totals_equal_the_sum_of_rows_including_time_between_epochs(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        run_for(energy, clock, 3.0)  # setup before the first epoch
        for epoch in range(3):
            with energy.epoch(epoch):
                run_for(energy, clock, 5.0)
            run_for(energy, clock, 2.0)  # checkpointing between epochs
    got = rows(energy)
    assert [r["phase"] for r in got] == ["other", "train", "other", "train", "other", "train", "other"]
    assert sum(r["duration_s"] for r in got) == pytest.approx(3 + 3 * 7)
    assert sum(r["energy_kwh"] for r in got) == pytest.approx(got[-1]["cumulative_energy_kwh"])
    assert got[-1]["cumulative_energy_kwh"] == pytest.approx(336 * 24 / J_PER_KWH)
    summary = energy.summary()
    assert summary.energy_kwh == pytest.approx(336 * 24 / J_PER_KWH)
    assert summary.epochs == 3 and summary.status == "complete"


def test_user_metrics_become_columns_and_header_is_rewritten(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 1.0)
            energy.log_metrics({"loss": 0.9})
        with energy.epoch(1):
            run_for(energy, clock, 1.0)
            energy.log_metrics({"loss": 0.5, "accuracy": 0.75})
    path = energy.run_dir / "epochs.csv"
    header = next(csv.reader(open(path)))
    assert header[: len(EPOCH_COLUMNS)] == list(EPOCH_COLUMNS)
    assert header[len(EPOCH_COLUMNS) :] == ["loss", "accuracy"]
    frame = pd.read_csv(path)
    assert list(frame["loss"]) == [0.9, 0.5]
    assert frame["accuracy"].isna().tolist() == [True, False]
    assert not list(energy.run_dir.glob("*.bak")) and not list(energy.run_dir.glob(".*tmp"))


def test_exception_in_epoch_writes_interrupted_row_and_reraises(tmp_path, clock, sensors):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with tracker_for(tmp_path, clock, sensors) as energy:
            with energy.epoch(0):
                run_for(energy, clock, 2.0)
            with energy.epoch(1):
                run_for(energy, clock, 1.0)
                raise Boom()
    got = rows(energy)
    assert [(r["epoch"], r["status"]) for r in got] == [(0, "complete"), (1, "interrupted")]
    info = json.loads((energy.run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["end_utc"]


def test_forecast_after_first_epoch_and_one_log_line(tmp_path, clock, sensors, caplog):
    with caplog.at_level(logging.INFO, logger="tracker"):
        with tracker_for(tmp_path, clock, sensors, epochs=4) as energy:
            for epoch in range(2):
                with energy.epoch(epoch):
                    run_for(energy, clock, 10.0)
    got = rows(energy)
    assert got[0]["forecast_total_kwh"] == pytest.approx(4 * 336 * 10 / J_PER_KWH)
    assert got[0]["forecast_total_s"] == pytest.approx(40.0)
    assert got[0]["forecast_total_co2_kg"] == pytest.approx(4 * got[0]["co2_kg"])
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 2  # what is measured and the grid, then the forecast
    assert "measuring GPU (NVML energy counter), CPU (ESTIMATE: utilisation x TDP)" in lines[0]
    assert "grid 400 g CO2e/kWh for no country [explicit: g_per_kwh argument; given by the user]" in lines[0]
    assert lines[1] == (
        "energy-tracker: forecast for the whole run of 4 epochs: 3.73 Wh, 1.49 g CO2e (1.36–1.64 g), 40.0 s"
    )


def test_the_world_average_is_said_loudly_at_start(tmp_path, clock, sensors, caplog, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("ENERGY_TRACKER_COUNTRY", raising=False)
    with caplog.at_level(logging.INFO, logger="tracker"):
        EnergyTracker(tmp_path, sensors=sensors, clock=clock, **PATIENT).start().stop()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "[world_average: " in record.getMessage()
    assert "THE WORLD AVERAGE IS A PLACEHOLDER: give country=" in record.getMessage()


def test_validation_after_an_epoch_block_belongs_to_that_epoch_and_other_rows_to_none(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        for epoch in range(2):
            with energy.epoch(epoch):
                run_for(energy, clock, 2.0)
            with energy.phase("validation"):
                run_for(energy, clock, 1.0)
            run_for(energy, clock, 2.0)
    got = [(r["epoch"], r["phase"]) for r in rows(energy)]
    assert got == [
        (0, "train"), (0, "validation"), (None, "other"),
        (1, "train"), (1, "validation"), (None, "other"),
    ]  # fmt: skip


def test_inference_phase_gives_energy_per_query_and_break_even(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 100.0)
        with energy.phase("inference", samples=500):
            run_for(energy, clock, 1.0)
    inference = rows(energy)[-1]
    assert inference["phase"] == "inference" and inference["epoch"] is None  # outside any epoch
    per_query = 336 * 1.0 / 500
    assert inference["energy_per_sample_j"] == pytest.approx(per_query)
    assert inference["break_even_queries"] == pytest.approx(336 * 100 / per_query)
    assert energy.summary().break_even_queries == pytest.approx(50_000)


def test_bursty_power_between_boundaries_is_attributed_exactly(tmp_path, clock):
    gpu = FakeSensor("gpu:0", "gpu", piecewise([(0, 100), (1.5, 500), (2.25, 50)]), clock)
    with tracker_for(tmp_path, clock, [gpu], interval_s=60.0) as energy:  # no background ticks at all
        with energy.epoch(0):
            clock.advance(2.0)
        with energy.epoch(1):
            clock.advance(1.0)
    got = [r for r in rows(energy) if r["phase"] == "train"]
    assert got[0]["gpu_kwh"] * J_PER_KWH == pytest.approx(100 * 1.5 + 500 * 0.5)
    assert got[1]["gpu_kwh"] * J_PER_KWH == pytest.approx(500 * 0.25 + 50 * 0.75)


@pytest.mark.parametrize("index", [-1, 1.5, "3", True])
def test_bad_epoch_index(tmp_path, clock, sensors, index):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with pytest.raises(ConfigurationError, match="epoch index"):
            energy.begin_epoch(index)


def test_misuse_is_a_usage_error_before_the_epoch_starts(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            with pytest.raises(UsageError, match="still open"):
                energy.begin_epoch(1)
            with energy.phase("validation"):
                with pytest.raises(UsageError, match="inside itself"):
                    energy.begin_phase("validation")
        with pytest.raises(UsageError, match="already measured"):
            energy.begin_epoch(0)
        with pytest.raises(UsageError, match="outside an epoch"):
            energy.log_metrics({"loss": 1})
        with pytest.raises(UsageError, match="no epoch or phase open"):
            energy.end()
    with pytest.raises(UsageError, match="not running"):
        energy.begin_epoch(5)


@pytest.mark.parametrize(
    "options, value",
    [
        ({"pue": 0.9}, "0.9"),
        ({"epochs": 0}, "epochs=0"),
        ({"interval_s": -1}, "-1"),
        ({"country": "Germny"}, "Germny"),
        ({"carbon_intensity_g_per_kwh": -5}, "-5"),
        ({"cpu_tdp_w": "a lot"}, "a lot"),
        ({"measure": ("gpu", "disk")}, "disk"),
        ({"run_name": "a/b"}, "a/b"),
    ],
)
def test_bad_options_fail_at_construction(tmp_path, clock, sensors, options, value):
    with pytest.raises(ConfigurationError, match=value):
        EnergyTracker(tmp_path, sensors=sensors, clock=clock, **options)
    assert not any(tmp_path.iterdir())  # nothing was written


def test_log_dir_that_is_a_file_fails_at_construction(tmp_path, clock, sensors):
    target = tmp_path / "file"
    target.write_text("keep me")
    with pytest.raises(ConfigurationError, match="is a file"):
        EnergyTracker(target, sensors=sensors, clock=clock)
    with pytest.raises(ConfigurationError, match="cannot be created"):
        EnergyTracker(target / "sub", sensors=sensors, clock=clock)
    assert target.read_text() == "keep me"


def test_two_runs_started_at_once_get_their_own_directories(tmp_path, clock, sensors):
    first = tracker_for(tmp_path, clock, sensors, run_name="same").start()
    second = tracker_for(tmp_path, clock, sensors, run_name="same").start()
    first.stop(), second.stop()
    assert first.run_dir != second.run_dir
    assert {p.name for p in tmp_path.iterdir()} == {"same", "same-2"}


def test_run_json_records_sensors_grid_and_totals(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, pue=1.2) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 1.0)
    info = json.loads((energy.run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["pue"] == 1.2
    assert info["carbon_intensity"]["method"] == "explicit"
    assert [s["method"] for s in info["sensors"]] == ["energy_counter", "tdp_estimate", "ram_model"]
    assert info["totals"]["energy_kwh"] == pytest.approx(336 / J_PER_KWH)


def test_devices_csv_has_one_row_per_device_and_epoch(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 4.0)
    devices = [d for d in load_run(energy.run_dir).devices if d["phase"] == "train"]
    assert [d["sensor"] for d in devices] == ["gpu:0", "cpu", "ram"]
    gpu = devices[0]
    assert gpu["model"] == "Fake A100" and gpu["uuid"] == "GPU-1"
    assert gpu["power_mean_w"] == pytest.approx(300.0) and gpu["power_peak_w"] == 300.0
    assert gpu["readings"] == 4  # the closing boundary coincides with the last tick


def test_summary_is_readable(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 1.0)
    text = str(energy.summary())
    assert "kWh" in text and "energy_counter" in text and "tdp_estimate" in text and str(energy.run_dir) in text


def test_log_dir_none_writes_nothing(tmp_path, clock, sensors):
    with EnergyTracker(None, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=1, **PATIENT) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 1.0)
    assert energy.run_dir is None and energy.summary().energy_kwh == pytest.approx(336 / J_PER_KWH)


def test_power_trace_streams_readings(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, power_trace=True) as energy:
        run_for(energy, clock, 3.0)
    trace = pd.read_csv(energy.run_dir / "power.csv")
    assert set(trace["sensor"]) == {"gpu:0", "cpu", "ram"}
    assert (trace[trace.sensor == "gpu:0"]["power_w"] == 300.0).all()


def test_summary_after_stop_keeps_the_run_duration(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 4.0)
    clock.advance(100.0)  # the user reads the summary later
    assert energy.summary().duration_s == pytest.approx(4.0)


def test_notes_column_reads_as_a_pandas_attribute_and_the_grid_is_named(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, carbon_intensity_g_per_kwh=None, region="US-CA") as energy:
        with energy.epoch(0):
            run_for(energy, clock, 1.0)
    frame = pd.read_csv(energy.run_dir / "epochs.csv", keep_default_na=False)
    assert "flags" not in frame.columns
    assert frame.notes.str.contains("short").all()  # `flags` was DataFrame.flags, not the column
    assert (list(frame.country), list(frame.region)) == (["USA"], ["US-CA"])


def test_tensor_metrics_are_written_as_numbers(tmp_path, clock, sensors):
    torch = pytest.importorskip("torch")
    with tracker_for(tmp_path, clock, sensors) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 1.0)
            energy.log_metrics({"loss": torch.tensor(0.5), "accuracy": torch.tensor([0.25])})
    (row,) = [r for r in rows(energy) if r["phase"] == "train"]
    assert (row["loss"], row["accuracy"]) == (0.5, 0.25)


def test_run_json_records_framework_carbon_data_and_driver_versions(tmp_path, clock):
    sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": "A", "driver_version": "550.54"})]
    with tracker_for(tmp_path, clock, sensors):
        pass
    versions = json.loads((tmp_path.glob("*/run.json").__next__()).read_text())["versions"]
    assert {"torch", "lightning", "codecarbon"} <= set(versions)
    assert versions["nvidia-driver"] == "550.54"


def test_installed_versions_agree_with_importlib_metadata(tmp_path):
    import sys
    from importlib import metadata

    from tracker.session.summary import VERSIONED, installed_versions

    site = tmp_path / "site"
    (site / "Shadow_Pkg-2.0.dist-info").mkdir(parents=True)
    (site / "Shadow_Pkg-2.0.dist-info" / "METADATA").write_text("Name: shadow-pkg\nVersion: 2.0\n\nVersion: 9\n")
    (site / "old.pkg-1.5-py3.11.egg-info").mkdir()
    (site / "old.pkg-1.5-py3.11.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.0\nVersion: 1.5\n")
    path = (str(site), *sys.path)
    names = (*VERSIONED, "psutil", "shadow-pkg", "OLD_PKG", "not-installed-anywhere")
    expected = {}
    for name in names:
        found = list(metadata.distributions(name=name, path=list(path)))
        if found:
            expected[name] = found[0].version
    assert dict(installed_versions(names, path)) == expected
    assert expected["shadow-pkg"] == "2.0" and expected["OLD_PKG"] == "1.5" and "torch" in expected


def test_devices_csv_names_the_model_and_never_shows_a_peak_below_the_mean(tmp_path, clock):
    from tracker.session.rows import _peak

    gpu = FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": "Fake A100"})
    with tracker_for(tmp_path, clock, [gpu]) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 4.0)
    header = (energy.run_dir / "devices.csv").read_text().splitlines()[0].split(",")
    assert "model" in header and "device" not in header
    assert _peak(250.0, 300.0) is None and _peak(350.0, 300.0) == 350.0
