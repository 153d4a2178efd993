import json
import os
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

import tracker.logs.writer
from tests.helpers import PATIENT, run_for
from tracker import EnergyTracker, load_run, load_runs
from tracker.errors import ConfigurationError
from tracker.logs.reader import read_csv_rows
from tracker.logs.writer import CsvLog, new_run_dir
from tracker.testing import FakeSensor, steady


def test_csv_log_appends_rows_and_rewrites_header_for_new_columns(tmp_path):
    log = CsvLog(tmp_path / "epochs.csv", ["epoch", "energy_kwh"])
    log.append({"epoch": 0, "energy_kwh": 0.5})
    log.append({"epoch": 1, "energy_kwh": 0.25, "loss": 0.1})
    log.append({"epoch": 2, "energy_kwh": None, "loss": 0.05})
    assert (tmp_path / "epochs.csv").read_text() == ("epoch,energy_kwh,loss\n0,0.5,\n1,0.25,0.1\n2,,0.05\n")
    assert [p.name for p in tmp_path.iterdir()] == ["epochs.csv"]


class RecordingOs:
    """The ``os`` module as ``tracker.logs.writer`` sees it, recording ``write`` and ``replace`` calls."""

    def __init__(self, accept: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.accept = accept  # bytes a write takes before the disk is "full" (None: all)

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        self.calls.append(("write", bytes(data)))
        if self.accept is None:
            return os.write(fd, data)
        return os.write(fd, bytes(data[: self.accept])) and 0  # then "accepted 0 bytes": the disk is full

    def replace(self, src, dst):
        self.calls.append(("replace",))
        return os.replace(src, dst)


def test_a_new_file_gets_its_header_and_first_rows_in_one_synced_write(tmp_path, monkeypatch):
    disk = RecordingOs()
    monkeypatch.setattr(tracker.logs.writer, "os", disk)
    log = CsvLog(tmp_path / "epochs.csv", ["epoch", "energy_kwh"])
    log.extend([{"epoch": 0, "energy_kwh": 0.5}, {"epoch": 1, "energy_kwh": 0.25}])
    assert disk.calls == [("write", b"epoch,energy_kwh\n0,0.5\n1,0.25\n")]  # no temporary file, no os.replace
    log.append({"epoch": 2, "energy_kwh": 0.125, "loss": 0.1})  # a new column: the header of the rows on disk grows
    assert ("replace",) in disk.calls
    assert (tmp_path / "epochs.csv").read_text() == "epoch,energy_kwh,loss\n0,0.5,\n1,0.25,\n2,0.125,0.1\n"


def test_a_first_write_that_fails_leaves_no_half_header_and_is_retried_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(tracker.logs.writer, "os", RecordingOs(accept=5))
    log = CsvLog(tmp_path / "epochs.csv", ["epoch", "energy_kwh"])
    log.append({"epoch": 0, "energy_kwh": 0.5})
    assert (tmp_path / "epochs.csv").read_bytes() == b"" and len(log.pending) == 1
    monkeypatch.undo()
    log.append({"epoch": 1, "energy_kwh": 0.25})
    assert (tmp_path / "epochs.csv").read_text() == "epoch,energy_kwh\n0,0.5\n1,0.25\n"


def test_floats_are_written_exactly(tmp_path):
    log = CsvLog(tmp_path / "x.csv", ["value"])
    log.append({"value": 0.1 + 0.2})
    assert read_csv_rows(tmp_path / "x.csv") == [{"value": 0.1 + 0.2}]


def test_reader_drops_a_final_line_cut_short(tmp_path):
    path = tmp_path / "epochs.csv"
    path.write_text("epoch,energy_kwh\n0,0.5\n1,0.2")
    assert read_csv_rows(path) == [{"epoch": 0, "energy_kwh": 0.5}]


def test_new_run_dir_never_reuses_a_name(tmp_path):
    names = {new_run_dir(tmp_path, "run").name for _ in range(3)}
    assert names == {"run", "run-2", "run-3"}


def test_load_runs_finds_every_run_and_rejects_empty_dirs(tmp_path, clock):
    for name in ("a", "b"):
        with EnergyTracker(
            tmp_path,
            run_name=name,
            sensors=[FakeSensor(clock=clock)],
            clock=clock,
            carbon_intensity_g_per_kwh=10,
            **PATIENT,
        ) as energy:
            with energy.epoch(0):
                run_for(energy, clock, 2.0)
    runs = load_runs(tmp_path)
    assert [r.name for r in runs] == ["a", "b"]
    assert runs[0].info["run"] == "a" and runs[0].epochs[0]["phase"] == "train"
    assert isinstance(runs[0].epochs_frame(), pd.DataFrame)
    record = runs[0].epoch_records()[0]
    assert (record.epoch, record.phase, record.status) == (0, "train", "complete")
    assert record.energy_kwh == pytest.approx(200 / 3.6e6) and runs[0].metrics() == [{}]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no runs in"):
        load_runs(tmp_path / "empty")
    with pytest.raises(ConfigurationError, match="not a run directory"):
        load_run(tmp_path / "empty")


def test_hourly_intensity_is_taken_from_the_rows_hour(tmp_path, clock):
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    csv = tmp_path / "grid.csv"
    hours = [now + timedelta(hours=h) for h in range(-2, 3)]
    csv.write_text("timestamp,g_per_kwh\n" + "".join(f"{h.isoformat()},{100 + 10 * i}\n" for i, h in enumerate(hours)))
    with EnergyTracker(
        tmp_path / "logs",
        sensors=[FakeSensor(trace=steady(360.0), clock=clock)],
        clock=clock,
        intensity_csv=csv,
        **PATIENT,
    ) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 10.0)
    row = load_run(energy.run_dir).epochs[0]
    assert row["intensity_method"] == "hourly_csv"
    current = datetime.fromisoformat(row["start_utc"]).hour == now.hour
    expected = 120.0 if current else 130.0  # the row started in this hour (or just crossed into the next)
    assert row["carbon_intensity_g_per_kwh"] == pytest.approx(expected)
    assert row["co2_kg"] == pytest.approx(360 * 10 / 3.6e6 * expected / 1000)
    info = json.loads((energy.run_dir / "run.json").read_text())
    assert info["carbon_intensity"]["method"] == "hourly_csv"


def test_epochs_csv_is_read_by_its_schema_text_stays_text(tmp_path, clock):
    from tracker import EnergyTracker, load_run
    from tracker.testing import FakeSensor, steady

    gpu = FakeSensor("gpu:0", "gpu", steady(100.0), clock)
    with EnergyTracker(
        tmp_path, run_name="007", sensors=[gpu], clock=clock, carbon_intensity_g_per_kwh=300.0, **PATIENT
    ) as e:
        with e.epoch(0):
            clock.advance(2.0)
            e.log_metrics({"loss": "0.5", "note": "warm-up", "step": 3})
    run = load_run(tmp_path / "007")
    row = next(r for r in run.epochs if r["phase"] == "train")
    assert row["run"] == "007" and row["epoch"] == 0 and isinstance(row["epoch"], int)
    assert isinstance(row["duration_s"], float) and isinstance(row["gpu_kwh"], float)
    assert row["loss"] == 0.5 and row["note"] == "warm-up" and row["step"] == 3
    assert run.devices[0]["run"] == "007" and isinstance(run.devices[0]["rank"], int)


def test_following_a_run_reads_each_row_once_when_a_new_metric_widens_the_header(tmp_path, clock):
    # a metric first logged in the second epoch rewrites epochs.csv's header and pads the rows before it:
    # the follower (job_rows, behind the HF callback's figures) must neither miss a row nor read one twice
    sensors = [FakeSensor("gpu:0", "gpu", steady(100.0), clock)]
    with EnergyTracker(tmp_path, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=1.0) as energy:
        with energy.epoch(0):
            clock.advance(10.0)
        first = energy.job_rows()
        for i, metric in enumerate(("loss", "eval_loss"), start=1):
            with energy.epoch(i):
                clock.advance(10.0)
                energy.log_metrics({metric: 0.5})
        rows = energy.job_rows()
    assert [r["epoch"] for r in first if r["phase"] == "train"] == [0]
    assert [r["epoch"] for r in rows if r["phase"] == "train"] == [0, 1, 2]
    assert [r["energy_kwh"] for r in rows if r["phase"] == "train"] == pytest.approx([100 * 10 / 3.6e6] * 3)
