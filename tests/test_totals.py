"""Totals (tracker/logs/totals.py): the one model of a run's figures, and the views over it."""

import math

import pytest

from tracker.logs.totals import FIGURES, SUMMED, Totals

ROWS = [
    {"phase": "train", "status": "complete", "duration_s": 10.0, "gpu_kwh": 0.1, "energy_kwh": 0.1, "co2_kg": 0.04},
    {"phase": "train", "status": "interrupted", "duration_s": 5.0, "gpu_kwh": 0.2, "energy_kwh": 0.2, "co2_kg": 0.08},
    {"phase": "inference", "status": "complete", "duration_s": 1.0, "energy_kwh": 0.3, "co2_kg": 0.12},
]


def test_a_run_s_totals_are_the_sums_of_its_records_whichever_way_they_are_added():
    one_by_one = Totals()
    for row in ROWS:
        one_by_one = one_by_one.plus(row)
    at_once = Totals.of(ROWS)
    assert at_once.epochs == one_by_one.epochs == 1
    assert at_once.energy_kwh == pytest.approx(0.6) and at_once.training_kwh == pytest.approx(0.3)
    assert at_once.sums() == pytest.approx(one_by_one.sums())
    assert list(at_once.sums()) == list(SUMMED)


def test_an_experiment_s_totals_combine_its_runs_exactly():
    a, b = Totals.of(ROWS[:1]), Totals.of(ROWS[1:])
    both = Totals.combined([a, b])
    assert both.epochs == 1 and both.sums() == {k: math.fsum((a.sums()[k], b.sums()[k])) for k in SUMMED}
    assert Totals.combined([]) == Totals()


def test_the_figures_computed_once_from_totals():
    t = Totals.of(ROWS)
    assert t.kwh_per_epoch == pytest.approx(0.6) and Totals().kwh_per_epoch is None
    assert t.g_per_kwh(1.0) == pytest.approx(400.0) and Totals().g_per_kwh(1.2) is None
    assert list(t.figures()) == list(FIGURES) and t.figures()["epochs"] == 1
