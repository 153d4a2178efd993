"""Operational water (Li et al. 2023): on-site WUE and the grid's off-site water, through the public API."""

from __future__ import annotations

import json
import logging

import pytest

from tests.helpers import PATIENT, job_train_row
from tracker import ConfigurationError, EnergyTracker, load_run
from tracker.testing import FakeSensor, steady

HOUR_KWH = 0.3  # a 300 W GPU for an hour
# The bundled figure for the United States, L/kWh, and its band (data/water.csv, Chini & Peer 2021, row "USA",2018).
USA, USA_LOW, USA_HIGH = 2.488, 2.184, 2.827


def one_epoch(tmp_path, clock, **options):
    sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), clock)]
    options.setdefault("country", "USA")
    with EnergyTracker(tmp_path, sensors=sensors, clock=clock, sampling="manual", **options, **PATIENT) as energy:
        with energy.epoch(0):
            clock.advance(3600.0)
    return energy, load_run(energy.run_dir).epochs[-1]


def test_a_row_counts_on_site_and_off_site_water_as_li_et_al(tmp_path, clock):
    energy, row = one_epoch(tmp_path, clock, wue_l_per_kwh=0.5, pue=1.2)
    assert row["energy_kwh"] == pytest.approx(HOUR_KWH)
    assert row["water_onsite_l"] == pytest.approx(HOUR_KWH * 0.5)
    assert row["water_offsite_l"] == pytest.approx(HOUR_KWH * 1.2 * USA)
    assert row["water_l"] == pytest.approx(HOUR_KWH * (0.5 + 1.2 * USA))
    low, high = row["energy_kwh_low"], row["energy_kwh_high"]
    assert row["water_l_low"] == pytest.approx(low * (0.5 + 1.2 * USA_LOW))
    assert row["water_l_high"] == pytest.approx(high * (0.5 + 1.2 * USA_HIGH))
    assert "Chini & Peer 2021, USA 2018" in row["water_source"] and "wue_l_per_kwh given" in row["water_source"]
    info = json.loads((energy.run_dir / "run.json").read_text())
    assert info["water"]["offsite"]["l_per_kwh"] == USA and "s41597-020-00795-6" in info["water"]["offsite"]["source"]


def test_water_is_off_unless_asked_for(tmp_path, clock):
    energy, row = one_epoch(tmp_path, clock)
    assert row["water_l"] is None and row["water_onsite_l"] is None and not row["water_source"]
    assert energy.summary().water_l is None
    assert json.loads((energy.run_dir / "run.json").read_text())["water"] is None


def test_a_country_without_a_sourced_figure_counts_no_off_site_water_and_says_so(tmp_path, clock):
    _, row = one_epoch(tmp_path, clock, country="FJI", water=True)
    assert row["water_l"] is None and row["water_offsite_l"] is None
    assert "off-site generation water not counted (no sourced figure for FJI" in row["notes"]
    assert "on-site cooling water not counted (no WUE known: give wue_l_per_kwh)" in row["notes"]


def test_with_one_term_known_water_is_that_term_and_the_other_is_noted(tmp_path, clock):
    energy, row = one_epoch(tmp_path, clock, country="FJI", wue_l_per_kwh=1.8)
    assert row["water_l"] == pytest.approx(HOUR_KWH * 1.8) == row["water_onsite_l"]
    assert row["water_offsite_l"] is None and "off-site generation water not counted" in row["notes"]
    assert "not counted" in energy.summary().water_source


def test_a_given_grid_figure_overrides_the_table_and_has_no_band(tmp_path, clock):
    _, row = one_epoch(tmp_path, clock, grid_water_l_per_kwh=4.0, wue_l_per_kwh=0.0)
    assert row["water_onsite_l"] == 0.0
    assert row["water_offsite_l"] == pytest.approx(HOUR_KWH * 4.0)
    assert row["water_l_low"] == pytest.approx(row["energy_kwh_low"] * 4.0)


def test_a_cloud_region_without_a_published_wue_counts_its_country_grid_alone(tmp_path, clock):
    _, row = one_epoch(tmp_path, clock, country=None, cloud_provider="gcp", cloud_region="us-central1", water=True)
    assert row["water_onsite_l"] is None
    assert "no published WUE for gcp:us-central1 in the bundled table" in row["notes"]
    assert row["water_offsite_l"] == pytest.approx(HOUR_KWH * USA)


def test_totals_are_the_sums_of_the_rows(tmp_path, clock):
    sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), clock)]
    options = {"country": "FRA", "wue_l_per_kwh": 0.2, "sampling": "manual"}
    with EnergyTracker(tmp_path, sensors=sensors, clock=clock, **options, **PATIENT) as energy:
        for epoch in range(3):
            with energy.epoch(epoch):
                clock.advance(600.0)
    rows = load_run(energy.run_dir).epochs
    summary = energy.summary()
    for column in ("water_l", "water_l_low", "water_l_high", "water_onsite_l", "water_offsite_l"):
        assert getattr(summary, column) == pytest.approx(sum(r[column] for r in rows if r[column] is not None))
    assert "water" in str(summary) and "Chini & Peer 2021, France 2018" in summary.water_source


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"wue_l_per_kwh": -0.1}, "wue_l_per_kwh=-0.1"),
        ({"wue_l_per_kwh": "0.5"}, "wue_l_per_kwh='0.5'"),
        ({"grid_water_l_per_kwh": float("inf")}, "grid_water_l_per_kwh=inf"),
        ({"water": 1}, "water=1"),
    ],
)
def test_bad_water_options_name_the_value_and_what_to_write(tmp_path, clock, options, shown):
    with pytest.raises(ConfigurationError, match="give") as error:
        EnergyTracker(tmp_path, sensors=[FakeSensor("gpu:0", "gpu", steady(1.0), clock)], clock=clock, **options)
    assert shown in str(error.value)


def test_the_report_paper_and_model_card_carry_the_water_and_its_sources(tmp_path, clock):
    from tracker.report.model_card import model_card_text
    from tracker.report.paper import paper_text
    from tracker.report.render import load_summaries, render

    one_epoch(tmp_path, clock, wue_l_per_kwh=0.5, pue=1.2)
    summaries = load_summaries([tmp_path])
    text = render(summaries, "text")
    assert "water" in text and "Chini & Peer 2021, USA 2018" in text and "wue_l_per_kwh given" in text
    assert "| water |" in render(summaries, "markdown")
    csv_text = render(summaries, "csv")
    assert "water_l,water_l_low,water_l_high,water_onsite_l,water_offsite_l,water_source" in csv_text
    document = json.loads(render(summaries, "json"))
    assert document["runs"][0]["water"]["water_l"] == pytest.approx(HOUR_KWH * (0.5 + 1.2 * USA))
    paper = paper_text(summaries)
    assert "operational water consumption (water evaporated, not withdrawn" in paper
    assert (
        "Li, P., Yang, J., Islam, M. A. & Ren, S. (2023)" in paper and "Chini, C. M. & Peer, R. A. M. (2021)" in paper
    )
    assert "# operational water consumption" in model_card_text(summaries)


def test_a_report_of_runs_without_water_says_nothing_of_it(tmp_path, clock):
    from tracker.report.model_card import model_card_text
    from tracker.report.paper import paper_text
    from tracker.report.render import load_summaries, render

    one_epoch(tmp_path, clock)
    summaries = load_summaries([tmp_path])
    text = render(summaries, "text")
    assert "\n  water " not in text and "Chini" not in text  # the boundary names water among what is left out
    assert "operational water consumption" not in paper_text(summaries) + model_card_text(summaries)


def test_a_two_rank_job_sums_each_rank_s_water(tmp_path, clock):
    from tracker.job.placement import Launch

    trackers = []
    for rank in (0, 1):
        launch = Launch(rank, rank, 2, 2, "w2", "given", 0, True, "t")
        gpu = FakeSensor(f"gpu:{rank}", "gpu", steady(300.0), clock, info={"name": "A", "uuid": f"GPU-{rank}"})
        options = {"launch": launch, "host": "node-a", "clock": clock, "sampling": "manual", "country": "USA"}
        trackers.append(EnergyTracker(tmp_path, sensors=[gpu], wue_l_per_kwh=0.5, **options, **PATIENT))
    row = job_train_row(tmp_path, trackers, clock, 3600.0)
    assert row["energy_kwh"] == pytest.approx(2 * HOUR_KWH)
    assert row["water_l"] == pytest.approx(2 * HOUR_KWH * (0.5 + USA))
    assert row["water_onsite_l"] == pytest.approx(2 * HOUR_KWH * 0.5)


def test_a_cloud_region_s_published_wue_is_counted_on_site_with_its_source(tmp_path, clock):
    from tracker.report.paper import paper_text
    from tracker.report.render import load_summaries

    energy, row = one_epoch(tmp_path, clock, country="IRL", wue_l_per_kwh="aws:eu-west-1")
    # AWS's 2025 WUE for eu-west-1 (data/water.csv) and Ireland's grid (Chini & Peer 2021, row "Ireland",2018).
    assert row["water_onsite_l"] == pytest.approx(HOUR_KWH * 0.02)
    assert row["water_offsite_l"] == pytest.approx(HOUR_KWH * 1.035)
    assert "AWS 2025 via GSF Real Time Cloud, eu-west-1" in row["water_source"]
    assert "published by AWS for its region" in paper_text(load_summaries([tmp_path]))


def test_a_cloud_region_without_a_published_wue_is_refused_by_name(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="'gcp:europe-west1' has no published WUE.*aws:eu-west-1"):
        EnergyTracker(
            tmp_path, sensors=[FakeSensor("gpu:0", "gpu", steady(1.0), clock)], wue_l_per_kwh="gcp:europe-west1"
        )


def test_a_resumed_run_continues_the_water_totals(tmp_path, clock):
    from tracker.testing import FakeClock

    def tracker(on_clock):
        sensor = FakeSensor("gpu:0", "gpu", steady(300.0), on_clock)
        options = {"country": "USA", "wue_l_per_kwh": 0.5, "sampling": "manual"}
        return EnergyTracker(tmp_path, sensors=[sensor], clock=on_clock, **options, **PATIENT)

    with tracker(clock) as first, first.epoch(0):
        clock.advance(3600.0)
    state = json.loads(json.dumps(first.state()))
    later = FakeClock(50_000.0)
    second = tracker(later)
    second.resume(state)
    with second, second.epoch(1):
        later.advance(3600.0)
    assert second.summary().water_l == pytest.approx(2 * HOUR_KWH * (0.5 + USA))


def test_the_run_command_takes_the_water_flags():
    import argparse

    from tracker.session.config import add_flags, options_from_flags

    parser = argparse.ArgumentParser()
    add_flags(parser)
    given = options_from_flags(parser.parse_args(["--water", "--wue", "aws:eu-west-1", "--grid-water", "1.5"]))
    assert given == {"water": True, "wue_l_per_kwh": "aws:eu-west-1", "grid_water_l_per_kwh": 1.5}
    assert options_from_flags(parser.parse_args(["--wue", "0.4"])) == {"wue_l_per_kwh": 0.4}


def test_the_start_line_says_which_water_and_embodied_terms_are_counted_and_which_not(tmp_path, clock, caplog):
    with caplog.at_level(logging.INFO, logger="tracker"):
        one_epoch(tmp_path, clock, water=True, embodied=True)  # no WUE known
    (start,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("energy-tracker: measuring")]
    assert "; the generation's water (estimated: " in start and "Chini & Peer 2021, USA 2018" in start
    assert "; on-site cooling water not counted (no WUE known: give wue_l_per_kwh)" in start
    assert "; embodied emissions not counted (no GPU model here is in the table" in start  # an unnamed GPU alone
