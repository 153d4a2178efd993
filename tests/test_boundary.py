"""The declared boundary: what a run's figures count and leave out, in run.json, the summary, the report,
the paper paragraph and the model card; old runs without it still report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tracker.units as units
from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.cli import main
from tracker.report import model_card, paper
from tracker.report import render as report
from tracker.report.experiments import Recost, recost
from tracker.session.boundary import CO2_SCOPE, NOT_RECORDED, Boundary
from tracker.testing import FakeClock, FakeGpu, FakeNvml, build_hwmon_tree, build_powercap_tree


def run(log_dir: Path, name: str, powercap: Path, **options) -> Path:
    """One epoch of 10 s on one fake NVML GPU and the CPU behind ``powercap``; the run's directory."""
    clock = FakeClock()
    options = {"country": "DEU", "cpu_scope": "machine", **options}
    with EnergyTracker(log_dir, run_name=name, nvml=FakeNvml(1, clock), powercap_root=powercap, clock=clock,
                       sampling="manual", **PATIENT, **options) as energy:  # fmt: skip
        with energy.epoch(0):
            clock.advance(10.0)
            energy.sample()
    return Path(energy.run_dir)


@pytest.fixture
def rapl(tmp_path):
    return build_powercap_tree(tmp_path / "powercap", packages=1, dram=True).root


@pytest.fixture
def no_rapl(tmp_path):
    empty = tmp_path / "no-powercap"
    empty.mkdir()
    return empty


def recorded(run_dir: Path) -> dict:
    return load_run(run_dir).info["boundary"]


def by_term(entries: list[dict]) -> dict[str, dict]:
    return {e["term"]: e for e in entries}


def test_run_json_says_the_cpu_and_ram_are_measured_with_rapl(tmp_path, rapl):
    boundary = recorded(run(tmp_path / "logs", "rapl", rapl))
    counted = by_term(boundary["counted"])
    assert counted["gpu"] == {"term": "gpu", "what": "GPU energy", "how": "measured", "source": "energy_counter"}
    assert counted["cpu"] == {"term": "cpu", "what": "whole-CPU energy", "how": "measured", "source": "rapl"}
    assert counted["ram"]["how"] == "measured" and counted["ram"]["source"] == "rapl_dram"
    assert boundary["co2"] == CO2_SCOPE and "location-based" in CO2_SCOPE and "Scope 2" in CO2_SCOPE


def test_run_json_says_the_cpu_and_ram_are_estimated_without_rapl(tmp_path, no_rapl):
    counted = by_term(recorded(run(tmp_path / "logs", "tdp", no_rapl))["counted"])
    assert counted["cpu"]["how"] == "estimated" and counted["cpu"]["source"].startswith("tdp_")
    assert counted["ram"]["how"] == "estimated" and counted["ram"]["source"] == "ram_model"


def test_every_term_left_out_says_why(tmp_path, no_rapl):
    left = by_term(recorded(run(tmp_path / "logs", "left", no_rapl))["not_counted"])
    for term in ("node", "embodied", "water", "network", "idle", "other_runs", "pue"):
        assert left[term]["what"] and left[term]["why"], term
    assert "default" in left["pue"]["why"]
    assert "cooling" not in left  # with PUE 1.0 the facility's overhead is left out as a whole, said once


def test_a_given_pue_is_counted_and_said_given(tmp_path, no_rapl):
    boundary = recorded(run(tmp_path / "logs", "pue", no_rapl, pue=1.4))
    assert by_term(boundary["counted"])["pue"]["how"] == "given"
    assert by_term(boundary["counted"])["pue"]["source"] == "PUE 1.4"
    left = by_term(boundary["not_counted"])
    assert "pue" not in left and "cooling" in left  # a PUE is an average: the run's own cooling is still out


def test_a_component_left_out_by_measure_says_so(tmp_path, no_rapl):
    left = by_term(recorded(run(tmp_path / "logs", "gpu-only", no_rapl, measure=("gpu",)))["not_counted"])
    assert "measure=" in left["cpu"]["why"] and "measure=" in left["ram"]["why"]


def test_the_summary_shows_the_boundary(tmp_path, rapl):
    clock = FakeClock()
    with EnergyTracker(tmp_path, nvml=FakeNvml(1, clock), powercap_root=rapl, clock=clock, sampling="manual",
                       cpu_scope="machine", pue=1.2, **PATIENT) as energy:  # fmt: skip
        with energy.epoch(0):
            clock.advance(5.0)
    summary = energy.summary()
    assert isinstance(summary.boundary, Boundary)
    assert "boundary          counts GPU energy (measured: energy_counter)" in str(summary)
    assert "facility overhead via the PUE (given: PUE 1.2)" in summary._repr_html_()
    assert summary.as_dict()["boundary"]["counted"][0]["term"] == "gpu"
    assert json.dumps(summary.as_dict())  # JSON-ready


def test_the_paper_sentence_says_what_is_counted_and_what_is_not(tmp_path, no_rapl):
    text = paper.paper_text(report.load_summaries([str(run(tmp_path / "logs", "one", no_rapl, pue=1.1))]))
    assert (
        "The figures count GPU energy (measured), whole-CPU energy (estimated), RAM energy (estimated) and facility "
        "overhead via the PUE (given); they do not count the rest of the machine (fans, power supplies, disks), "
        "embodied emissions, water use, cooling beyond the PUE, networking and storage, idle or reserved capacity, "
        "or development and failed runs. The CO2e is operational and location-based, as the GHG Protocol defines it "
        "[2]." in text
    )
    assert "[2] GHG Protocol (2015). Scope 2 Guidance" in text


def test_runs_of_unlike_boundaries_are_not_given_one(tmp_path, rapl, no_rapl):
    logs = tmp_path / "logs"
    run(logs, "measured", rapl, experiment="mixed")
    run(logs, "estimated", no_rapl, experiment="mixed")
    summaries = report.load_summaries([str(logs)])
    text = paper.paper_text(summaries)
    assert "The runs do not share one boundary: every run counts GPU energy (measured)" in text
    assert "measured counts whole-CPU energy (measured) and RAM energy (measured)" in text
    assert "estimated counts whole-CPU energy (estimated) and RAM energy (estimated)" in text
    assert "The figures count" not in text
    assert "Boundary: the runs differ in what they count" in report.render(summaries)
    assert "the runs differ in what they count" in model_card.model_card_text(summaries)


def test_runs_of_one_boundary_share_it(tmp_path, no_rapl):
    logs = tmp_path / "logs"
    run(logs, "a", no_rapl, experiment="same", pue=1.1)
    run(logs, "b", no_rapl, experiment="same", pue=1.5)  # another PUE value is not another boundary
    summaries = report.load_summaries([str(logs)])
    assert "Boundary: the same for every run" in report.render(summaries)
    assert paper.paper_text(summaries).count("The figures count GPU energy (measured)") == 1


def test_the_model_card_carries_the_boundary_in_its_source(tmp_path, no_rapl):
    run_dir = run(tmp_path / "logs", "card", no_rapl)
    block = model_card.model_card_text(report.load_summaries([str(run_dir)]))
    lines = block.splitlines()
    assert lines[0] == "co2_eq_emissions:"
    fields = {k.strip(): json.loads(v) for k, v in (line.split(":", 1) for line in lines[1:])}  # YAML reads JSON
    assert set(fields) == {"emissions", "source", "training_type", "geographical_location", "hardware_used"}
    assert "boundary: counts GPU energy (measured), whole-CPU energy (estimated)" in fields["source"]
    assert "not counted: facility overhead via the PUE" in fields["source"]


def test_the_report_shows_the_boundary_in_every_format(tmp_path, rapl, capsys):
    run_dir = run(tmp_path / "logs", "formats", rapl)
    summaries = report.load_summaries([str(run_dir)])
    assert "boundary  counts GPU energy (measured: energy_counter)" in report.render(summaries, "text")
    assert "| boundary | counts GPU energy" in report.render(summaries, "markdown")
    assert json.loads(report.render(summaries, "json"))["runs"][0]["boundary"] == recorded(run_dir)
    assert main(["report", str(run_dir), "--model-card"]) == 0
    assert "boundary: counts GPU energy (measured)" in capsys.readouterr().out


def test_a_re_costed_pue_changes_the_facility_term(tmp_path, no_rapl):
    summaries = recost(report.load_summaries([str(run(tmp_path / "logs", "r", no_rapl))]), Recost.build(pue=1.3))
    counted = {c.term: c for c in summaries[0].boundary.counted}
    assert counted["pue"].source == "PUE 1.3, re-costed"


def test_an_old_run_without_a_boundary_still_reports(tmp_path, no_rapl):
    run_dir = run(tmp_path / "logs", "old", no_rapl)
    info = json.loads((run_dir / "run.json").read_text())
    del info["boundary"]
    (run_dir / "run.json").write_text(json.dumps(info))
    summaries = report.load_summaries([str(run_dir)])
    assert summaries[0].boundary is None
    assert f"boundary  {NOT_RECORDED}" in report.render(summaries)
    assert json.loads(report.render(summaries, "json"))["runs"][0]["boundary"] is None
    assert "(their boundary) was not recorded" in paper.paper_text(summaries)
    assert f"boundary: {NOT_RECORDED}" in model_card.model_card_text(summaries)


def test_water_terms_say_their_figure_or_why_not(tmp_path, no_rapl):
    off = by_term(recorded(run(tmp_path / "logs", "dry", no_rapl))["not_counted"])
    assert off["water"]["why"] == "not asked for (give water=True)"
    given = recorded(run(tmp_path / "logs", "wet", no_rapl, wue_l_per_kwh=0.5))
    counted, left = by_term(given["counted"]), by_term(given["not_counted"])
    assert counted["water_onsite"] == {"term": "water_onsite", "what": "on-site cooling water", "how": "given",
                                       "source": "0.5 L/kWh, wue_l_per_kwh given"}  # fmt: skip
    assert "water" not in left
    assert ("water_offsite" in counted and counted["water_offsite"]["how"] == "estimated") or (
        "grid_water_l_per_kwh" in left["water_offsite"]["why"]
    )
    unknown = by_term(recorded(run(tmp_path / "logs", "wet-2", no_rapl, water=True))["not_counted"])
    assert "give wue_l_per_kwh" in unknown["water_onsite"]["why"]


def test_a_rank_that_leaves_the_node_to_local_rank_zero_says_so(tmp_path, monkeypatch, no_rapl):
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "b"}.items():
        monkeypatch.setenv(name, value)
    left = by_term(recorded(run(tmp_path / "logs", "r1", no_rapl, host="h"))["not_counted"])
    assert left["cpu"]["why"] == left["ram"]["why"] == "the node's local rank 0 counts it, in its own shard"


def test_a_run_counting_every_term_reads_in_lines_a_terminal_holds(tmp_path, rapl, capsys):
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(name="NVIDIA H100 80GB HBM3")], clock)
    hwmon = build_hwmon_tree(tmp_path / "hwmon", clock=clock)
    options = {"embodied": True, "water": True, "wue_l_per_kwh": "aws:eu-west-1", "country": "FRA"}
    with EnergyTracker(tmp_path / "logs", nvml=nvml, powercap_root=rapl, hwmon_root=hwmon.root, clock=clock,
                       sampling="manual", **PATIENT, **options) as energy:  # fmt: skip
        with energy.epoch(0):
            clock.advance(10.0)
            hwmon.update()
            energy.sample()
    summary = str(energy.summary())
    lines = [line for line in summary.splitlines() if not line.startswith("  logs ")]  # a path is not broken
    assert max(len(line) for line in lines) <= units.WIDTH
    assert "\n                    not counted: " in summary  # what is left out starts a line of its own
    assert main(["report", str(energy.run_dir)]) == 0
    facts = capsys.readouterr().out.split("\n\n")[1]  # the heading; the run's name and path, and its facts; its rows
    assert max(len(line) for line in facts.splitlines()[1:]) <= units.WIDTH
    assert re.search(r"\n  boundary +counts GPU energy \(measured: energy_counter\)", facts)
    assert re.search(r"\n +not counted: facility overhead", facts)  # what is left out starts a line of its own
    (row,) = load_run(energy.run_dir).epochs  # each water term worded as the litres beside it are: on-site, off-site
    assert (
        row["water_source"].startswith("on-site 0.02 L/kWh (AWS 2025")
        and "; off-site 2.37 L/kWh" in row["water_source"]
    )
