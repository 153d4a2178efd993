"""EnergyTracker.state()/resume(): a restarted run continues in the same directory."""

from __future__ import annotations

import json
import logging

import pytest

from tests.helpers import PATIENT, run_for
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError, UsageError
from tracker.testing import FakeClock, FakeSensor, steady

WATTS = 100.0


def tracker_for(tmp_path, clock, **options):
    sensor = FakeSensor("gpu:0", "gpu", steady(WATTS), clock)
    options.setdefault("carbon_intensity_g_per_kwh", 500.0)
    return EnergyTracker(tmp_path, sensors=[sensor], clock=clock, epochs=4, **options, **PATIENT)


def two_epochs(energy, clock, first, metrics=None):
    for epoch in (first, first + 1):
        with energy.epoch(epoch, samples=10):
            run_for(energy, clock, 5.0)
            if metrics:
                energy.log_metrics(metrics)


def test_resume_appends_to_the_same_directory_and_continues_totals(tmp_path, clock):
    with tracker_for(tmp_path, clock) as first:
        two_epochs(first, clock, 0)
    state = json.loads(json.dumps(first.state()))  # survives a JSON (or pickle) round trip
    assert state["run_dir"] == str(first.run_dir) and state["elapsed_s"] == 10.0
    later = FakeClock(5000.0)
    second = tracker_for(tmp_path, later)
    second.resume(state)
    with second:
        two_epochs(second, later, 2, metrics={"loss": 0.5})
    assert second.run_dir == first.run_dir and len(list(tmp_path.iterdir())) == 1
    run = load_run(first.run_dir)
    assert [r["epoch"] for r in run.epochs] == [0, 1, 2, 3]
    assert [r["cumulative_energy_kwh"] for r in run.epochs] == pytest.approx(
        [WATTS * 5 * k / J_PER_KWH for k in (1, 2, 3, 4)]
    )
    assert [r["loss"] for r in run.epochs] == [None, None, 0.5, 0.5]  # the header grew over the old rows
    assert (first.run_dir / "epochs.csv").read_text().count("run,job_id,epoch") == 1
    assert len(run.devices) == 4
    summary = second.summary()
    assert (summary.epochs, summary.duration_s) == (4, 20.0)
    assert summary.energy_kwh == pytest.approx(WATTS * 20 / J_PER_KWH)
    assert run.epochs[-1]["forecast_total_kwh"] == pytest.approx(WATTS * 20 / J_PER_KWH)


def test_rows_on_disk_count_even_when_the_state_is_older(tmp_path, clock):
    with tracker_for(tmp_path, clock) as first:
        with first.epoch(0):
            run_for(first, clock, 5.0)
        old_state = first.state()  # a checkpoint taken here; epoch 1 still ends up on disk
        with first.epoch(1):
            run_for(first, clock, 5.0)
    second = tracker_for(tmp_path, clock)
    second.resume(old_state)
    with second, second.epoch(1):
        run_for(second, clock, 5.0)
    assert load_run(first.run_dir).epochs[-1]["cumulative_energy_kwh"] == pytest.approx(WATTS * 15 / J_PER_KWH)


def test_half_written_last_row_is_dropped_on_resume(tmp_path, clock):
    with tracker_for(tmp_path, clock) as first:
        two_epochs(first, clock, 0)
    with (first.run_dir / "epochs.csv").open("a") as handle:
        handle.write("a-killed-writer,2,tra")
    second = tracker_for(tmp_path, clock)
    second.resume(first.state())
    with second:
        two_epochs(second, clock, 2)
    text = (first.run_dir / "epochs.csv").read_text()
    assert "a-killed-writer" not in text
    assert [r["epoch"] for r in load_run(first.run_dir).epochs] == [0, 1, 2, 3]


def test_power_trace_is_appended_not_truncated(tmp_path, clock):
    with tracker_for(tmp_path, clock, power_trace=True) as first:
        two_epochs(first, clock, 0)
    lines = (first.run_dir / "power.csv").read_text().splitlines()
    second = tracker_for(tmp_path, clock, power_trace=True)
    second.resume(first.state())
    with second:
        two_epochs(second, clock, 2)
    after = (first.run_dir / "power.csv").read_text().splitlines()
    assert after[: len(lines)] == lines and len(after) > len(lines) and after.count(lines[0]) == 1


def test_a_vanished_run_directory_starts_a_new_one_with_the_totals(tmp_path, clock, caplog):
    with tracker_for(tmp_path / "a", clock) as first:
        two_epochs(first, clock, 0)
    state = {**first.state(), "run_dir": str(tmp_path / "gone")}
    second = tracker_for(tmp_path / "b", clock)
    second.resume(state)
    with caplog.at_level(logging.WARNING), second:
        two_epochs(second, clock, 2)
    assert second.run_dir.parent == tmp_path / "b" and "is gone" in caplog.text
    assert second.summary().energy_kwh == pytest.approx(WATTS * 20 / J_PER_KWH)


def test_resume_misuse(tmp_path, clock):
    energy = tracker_for(tmp_path, clock)
    with pytest.raises(ConfigurationError, match="EnergyTracker.state"):
        energy.resume({"run_dir": "x"})
    with pytest.raises(ConfigurationError, match="totals"):
        energy.resume({**energy.state(), "totals": {"energy": 1}})
    assert energy.state()["run_dir"] is None  # not started: an empty state
    with energy, pytest.raises(UsageError, match="before start"):
        energy.resume(energy.state())


def test_a_version_1_state_with_totals_in_joules_still_resumes(tmp_path, clock):
    totals_j = {
        "energy": {"value_j": J_PER_KWH, "low_j": 0.9 * J_PER_KWH, "high_j": 1.1 * J_PER_KWH},
        "co2_kg": 0.5,
        "co2_kg_low": 0.45,
        "co2_kg_high": 0.55,
        "epochs_done": 2,
        "training_j": J_PER_KWH,
        "by_kind_j": {"gpu": J_PER_KWH, "cpu": 0.0, "ram": 0.0},
    }
    energy = tracker_for(None, clock)
    energy.resume({"version": 1, "run_dir": None, "elapsed_s": 10.0, "totals": totals_j})
    with energy:
        two_epochs(energy, clock, 2)
    summary = energy.summary()
    assert summary.epochs == 4 and summary.gpu_kwh == pytest.approx(1.0 + 10 * WATTS / J_PER_KWH)
    assert energy.state()["version"] == 2 and energy.state()["totals"]["epochs"] == 4
