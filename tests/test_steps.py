"""Steps counted, an open epoch cut into rows every N steps or T seconds, and the forecast from the step rate.

Fake sensors of known energy (hardware counters, read at every edge), public API only.
"""

import logging
import math

import pytest

from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError, UsageError
from tracker.testing import FakeSensor, piecewise, steady

GPU_W, CPU_W = 300.0, 30.0


@pytest.fixture
def sensors(clock):
    return [
        FakeSensor("gpu:0", "gpu", steady(GPU_W), clock, info={"name": "Fake A100", "uuid": "GPU-1"}),
        FakeSensor("cpu", "cpu", steady(CPU_W), clock),
    ]


def tracker_for(tmp_path, clock, sensors, **options):
    options.setdefault("carbon_intensity_g_per_kwh", 400.0)
    return EnergyTracker(tmp_path, sensors=sensors, clock=clock, **options, **PATIENT)


def kwh(seconds, watts=GPU_W + CPU_W):
    return watts * seconds / J_PER_KWH


def truth_kwh(sensors, row, start_s):
    """The exact energy of the sensors between a row's edges, given where it started on the clock."""
    end_s = start_s + row["duration_s"]
    return sum(s.true_energy_j(start_s, end_s) for s in sensors) / J_PER_KWH


def test_rows_every_n_steps_cut_the_epoch_and_sum_to_it(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, row_every_n_steps=10) as energy:
        with energy.epoch(0):
            for _ in range(25):
                clock.advance(1.0)
                energy.step(samples=8)
        with energy.epoch(1):
            for _ in range(20):
                clock.advance(1.0)
                energy.step()
    rows = load_run(energy.run_dir).epochs
    train = [r for r in rows if r["phase"] == "train"]
    assert [(r["epoch"], r["status"], r["first_step"], r["last_step"]) for r in train] == [
        (0, "partial", 1, 10),
        (0, "partial", 11, 20),
        (0, "complete", 21, 25),
        (1, "partial", 26, 30),  # rows end at multiples of 10 steps, whatever the epoch
        (1, "partial", 31, 40),
        (1, "complete", 41, 45),
    ]
    assert [r["duration_s"] for r in train[:3]] == pytest.approx([10.0, 10.0, 5.0])
    for row in train[:3]:
        assert row["energy_kwh"] == pytest.approx(kwh(row["duration_s"]))
        assert row["samples"] == 8 * (row["last_step"] - row["first_step"] + 1)
    assert sum(r["energy_kwh"] for r in train if r["epoch"] == 0) == pytest.approx(kwh(25.0))
    summary = energy.summary()
    assert summary.epochs == 2  # partial rows are parts of an epoch, not epochs
    assert summary.energy_kwh == pytest.approx(sum(r["energy_kwh"] for r in rows))
    assert energy.steps == 45
    assert [r["first_step"] for r in rows if r["phase"] == "other"] == [None] * sum(r["phase"] == "other" for r in rows)


def test_rows_every_s_cut_at_the_next_step_each_row_its_own_energy(tmp_path, clock):
    trace = piecewise([(0.0, 100.0), (7.0, 400.0)])  # the power changes inside the epoch
    sensors = [FakeSensor("gpu:0", "gpu", trace, clock)]
    opened = {}
    with tracker_for(tmp_path, clock, sensors, row_every_s=5.0) as energy:
        with energy.epoch(0):
            opened[1] = clock()
            for _ in range(11):
                clock.advance(1.5)
                energy.step()
    train = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    # cut at the first step at least 5 s after the row opened: steps 1-4 (6 s), 5-8 (6 s), 9-11 (4.5 s)
    assert [(r["first_step"], r["last_step"], r["status"]) for r in train] == [
        (1, 4, "partial"),
        (5, 8, "partial"),
        (9, 11, "complete"),
    ]
    start = opened[1]
    for row in train:
        assert row["energy_kwh"] == pytest.approx(truth_kwh(sensors, row, start))
        start += row["duration_s"]
    assert sum(r["energy_kwh"] for r in train) == pytest.approx(trace.between_j(0.0, 16.5) / J_PER_KWH, rel=1e-6)


def test_both_options_cut_at_whichever_comes_first(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, row_every_n_steps=4, row_every_s=10.0) as energy:
        with energy.epoch(0):
            for seconds in (1, 1, 1, 1, 6, 6, 1):
                clock.advance(seconds)
                energy.step()
    train = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    assert [(r["first_step"], r["last_step"]) for r in train] == [(1, 4), (5, 6), (7, 7)]


def test_a_validation_inside_a_cut_epoch_stays_its_own_row(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, row_every_n_steps=3) as energy:
        with energy.epoch(0):
            for step in range(1, 6):
                clock.advance(1.0)
                energy.step()
                if step == 2:
                    with energy.phase("validation"):
                        clock.advance(4.0)
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] != "other"]
    assert [(r["phase"], r["status"], r["first_step"], r["last_step"]) for r in rows] == [
        ("validation", "complete", None, None),
        ("train", "partial", 1, 3),
        ("train", "complete", 4, 5),
    ]
    assert rows[0]["duration_s"] == pytest.approx(4.0) and rows[1]["duration_s"] == pytest.approx(3.0)
    assert sum(r["energy_kwh"] for r in rows) == pytest.approx(kwh(9.0))


def test_an_interrupted_epoch_keeps_its_finished_rows(tmp_path, clock, sensors):
    with pytest.raises(RuntimeError):
        with tracker_for(tmp_path, clock, sensors, row_every_n_steps=5) as energy:
            with energy.epoch(0):
                for step in range(1, 100):
                    clock.advance(1.0)
                    energy.step()
                    if step == 12:
                        raise RuntimeError("out of memory")
    train = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    assert [(r["status"], r["first_step"], r["last_step"]) for r in train] == [
        ("partial", 1, 5),
        ("partial", 6, 10),
        ("interrupted", 11, 12),
    ]
    assert energy.summary().epochs == 0


def test_steps_outside_an_epoch_count_in_the_open_segment_and_never_cut(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, row_every_n_steps=2) as energy:
        with energy.phase("finetune"):
            for _ in range(5):
                clock.advance(1.0)
                energy.step()
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "finetune"]
    assert [(r["first_step"], r["last_step"]) for r in rows] == [(1, 5)]


def test_global_step_numbers_follow_the_trainer(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors, row_every_n_steps=100) as energy:
        with energy.epoch(3):
            for number in range(151, 260):
                clock.advance(0.1)
                energy.step(global_step=number)
    train = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    assert [(r["first_step"], r["last_step"]) for r in train] == [(151, 200), (201, 259)]
    assert energy.state()["steps"] == 259


def test_a_resumed_run_continues_the_step_count(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as first:
        with first.epoch(0):
            for _ in range(7):
                clock.advance(1.0)
                first.step()
    state = first.state()
    second = tracker_for(tmp_path, clock, sensors)
    second.resume(state)
    with second:
        with second.epoch(1):
            clock.advance(1.0)
            second.step()
    train = [r for r in load_run(second.run_dir).epochs if r["phase"] == "train"]
    assert [(r["first_step"], r["last_step"]) for r in train] == [(1, 7), (8, 8)]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("row_every_n_steps", 0),
        ("row_every_n_steps", 2.5),
        ("row_every_n_steps", True),
        ("row_every_s", 0),
        ("row_every_s", -1.0),
        ("row_every_s", math.inf),
        ("row_every_s", "60"),
        ("total_steps", 0),
        ("total_steps", "1000"),
    ],
)
def test_bad_step_options_are_refused_at_construction(tmp_path, clock, sensors, option, value):
    with pytest.raises(ConfigurationError, match=option):
        tracker_for(tmp_path, clock, sensors, **{option: value})


def test_step_needs_a_running_tracker_and_valid_numbers(tmp_path, clock, sensors):
    energy = tracker_for(tmp_path, clock, sensors)
    with pytest.raises(UsageError):
        energy.step()
    with energy:
        with pytest.raises(ConfigurationError, match="samples"):
            energy.step(samples=-1)
        with pytest.raises(ConfigurationError, match="global_step"):
            energy.step(global_step=-3)


def test_forecast_from_the_step_rate_matches_the_known_trace(tmp_path, clock, caplog):
    # Warm-up: the first 10 steps take 3 s each at 100 W; then every step takes 1 s at 400 W.
    trace = piecewise([(0.0, 100.0), (30.0, 400.0)])
    sensors = [FakeSensor("gpu:0", "gpu", trace, clock)]
    total_steps = 100
    caplog.set_level(logging.INFO, logger="tracker")
    with tracker_for(tmp_path, clock, sensors, row_every_n_steps=10, total_steps=total_steps, epochs=1) as energy:
        started = clock()
        with energy.epoch(0):
            for step in range(1, 41):
                clock.advance(3.0 if step <= 10 else 1.0)
                energy.step()
            live = energy.summary()
            for _ in range(41, total_steps + 1):
                clock.advance(1.0)
                energy.step()
        ended = clock()
    rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    assert rows[0]["forecast_total_kwh"] is None  # the first window (the warm-up) gives no rate
    truth_kwh = trace.between_j(0.0, 30.0 + 90.0) / J_PER_KWH
    truth_s = ended - started
    for row in rows[1:]:
        assert row["forecast_total_kwh"] == pytest.approx(truth_kwh, rel=0.01)
        assert row["forecast_total_co2_kg"] == pytest.approx(truth_kwh * 0.4, rel=0.01)
        assert row["forecast_total_co2_kg_low"] < row["forecast_total_co2_kg"] < row["forecast_total_co2_kg_high"]
        assert row["forecast_total_s"] == pytest.approx(truth_s, rel=0.02)
    assert live.forecast_total_kwh == pytest.approx(truth_kwh, rel=0.01)
    assert live.forecast_total_s == pytest.approx(truth_s, rel=0.02)
    assert "100 steps" in str(live)
    assert any("forecast for the whole run of 100 steps" in r.getMessage() for r in caplog.records)


def test_summary_inside_an_open_epoch_holds_its_energy_so_far_and_says_it_is_open(tmp_path, clock, sensors):
    with tracker_for(tmp_path, clock, sensors) as energy:
        started = clock()
        with energy.epoch(0):
            clock.advance(10.0)
            inside = energy.summary()
            with energy.phase("validation"):
                clock.advance(2.0)
                nested = energy.summary()
        after = energy.summary()
    truth = sum(s.true_energy_j(started, started + 10.0) for s in sensors) / J_PER_KWH
    assert inside.energy_kwh == pytest.approx(truth, rel=1e-6)
    assert inside.gpu_kwh == pytest.approx(kwh(10.0, GPU_W), rel=1e-6)
    assert inside.energy_kwh_low < inside.energy_kwh <= inside.energy_kwh_high
    assert inside.open == "epoch 0" and "epoch 0 open" in str(inside) and inside.epochs == 0
    assert nested.open == "epoch 0, validation of epoch 0"
    assert nested.energy_kwh == pytest.approx(kwh(12.0), rel=1e-6)
    assert after.open == "" and after.epochs == 1 and after.energy_kwh == pytest.approx(kwh(12.0), rel=1e-6)
    assert energy.summary() == energy.stop()
