"""Embodied emissions: each GPU's and the host's manufacturing footprint, amortised over a row's hours."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import PATIENT, gpu_tracker, job_train_row

from tracker import ConfigurationError, EnergyTracker, load_run
from tracker.job.placement import Launch
from tracker.report import model_card, paper
from tracker.report import render as report
from tracker.testing import FakeGpu, FakeNvml, FakeSensor, steady

H100 = "NVIDIA H100 80GB HBM3"
# The hand computation: the table's footprint (kg) spread over 6 years of 8760 h at 85 % use.
H100_KG, HOST_KG, USE_H = 164.0, 2500.0, 6 * 8760 * 0.85


def train_rows(run_dir):
    return [r for r in load_run(run_dir).epochs if r["phase"] == "train"]


def one_epoch(energy, clock, seconds):
    with energy.epoch(0):
        clock.advance(seconds)


def test_a_known_gpu_s_row_carries_its_amortised_footprint_beside_co2(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name=H100, trace=steady(400.0))], clock=clock)
    with gpu_tracker(tmp_path, nvml, clock=clock, sampling="manual", embodied=True) as energy:
        one_epoch(energy, clock, 3600.0)
    (row,) = train_rows(energy.run_dir)
    assert row["embodied_co2_kg"] == pytest.approx(H100_KG * 1.0 / USE_H)
    assert row["embodied_co2_kg_low"] == row["embodied_co2_kg_high"] == pytest.approx(row["embodied_co2_kg"])
    assert row["co2_kg"] == pytest.approx(0.4 * 100.0 / 1000)  # operational only: embodied never folded in
    (device,) = [d for d in load_run(energy.run_dir).devices if d["phase"] == "train"]
    assert device["embodied_co2_kg"] == pytest.approx(row["embodied_co2_kg"])


def test_off_by_default_the_columns_are_empty_and_the_summary_says_none(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name=H100)], clock=clock)
    with gpu_tracker(tmp_path, nvml, clock=clock, sampling="manual") as energy:
        one_epoch(energy, clock, 10.0)
    (row,) = train_rows(energy.run_dir)
    assert row["embodied_co2_kg"] is None and row["embodied_co2_kg_high"] is None
    assert energy.summary().embodied_co2_kg is None
    assert json.loads((energy.run_dir / "run.json").read_text())["embodied"] == {"counted": False}


def test_an_unknown_model_is_left_out_with_a_note_never_guessed(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name="NVIDIA Fake Z9")], clock=clock)
    with gpu_tracker(tmp_path, nvml, clock=clock, sampling="manual", embodied=True) as energy:
        one_epoch(energy, clock, 10.0)
    (row,) = train_rows(energy.run_dir)
    assert row["embodied_co2_kg"] is None
    assert "embodied: gpu:0 (NVIDIA Fake Z9) not in the table, not counted" in row["notes"]
    left_out = {t["term"]: t for t in load_run(energy.run_dir).info["boundary"]["not_counted"]}
    assert "no GPU model here is in the table" in left_out["embodied"]["why"]  # nothing counted: not claimed


def test_the_summary_and_the_report_word_embodied_alike_as_an_estimate_and_say_a_gpu_left_out(tmp_path, clock):
    gpus = [FakeGpu(name=H100), FakeGpu(name="NVIDIA Fake Z9")]
    with gpu_tracker(tmp_path, FakeNvml(gpus, clock=clock), clock=clock, sampling="manual", embodied=True) as energy:
        one_epoch(energy, clock, 3600.0)
    said = energy.summary().embodied_text()
    assert said.startswith(f"{H100_KG / USE_H * 1000:.3g} g, estimated (no published range)")
    assert said.endswith("not in the CO2e; GPUs not in the table not counted")
    text = report.render(report.load_summaries([str(energy.run_dir)]), "text")
    for shown in (str(energy.summary()), text):  # long values wrap: compare the words
        assert f"embodied CO2e {said}" in " ".join(shown.split())
    card = model_card.model_card_text(report.load_summaries([str(energy.run_dir)]))
    assert "g CO2e (no published range; GPUs not in the table not counted), from" in card
    assert pytest.importorskip("yaml").safe_load(card)["co2_eq_emissions"]["emissions"] > 0  # comments and all


def node(clock, gpus, host=True):
    """Sensors of one rank: its GPUs (H100s), and the node's CPU and RAM when it measures them."""
    found = [FakeSensor(f"gpu:{i}", "gpu", steady(300.0), clock, info={"name": H100, "uuid": f"GPU-{i}"}) for i in gpus]
    if host:
        found += [FakeSensor("cpu", "cpu", steady(50.0), clock, method="tdp_estimate"),
                  FakeSensor("ram", "ram", steady(5.0), clock, method="ram_model")]  # fmt: skip
    return found


def test_totals_and_summary_sum_the_rows_with_the_host_once_and_its_source(tmp_path, clock):
    options = {"clock": clock, "sampling": "manual", "carbon_intensity_g_per_kwh": 100.0, "embodied": True}
    with EnergyTracker(tmp_path, sensors=node(clock, [0, 1]), **options, **PATIENT) as energy:
        one_epoch(energy, clock, 1800.0)
        with energy.epoch(1):
            clock.advance(1800.0)
    rows = train_rows(energy.run_dir)
    assert [r["embodied_co2_kg"] for r in rows] == pytest.approx([(2 * H100_KG + HOST_KG) * 0.5 / USE_H] * 2)
    summary = energy.summary()
    assert summary.embodied_co2_kg == pytest.approx(sum(r["embodied_co2_kg"] for r in load_run(energy.run_dir).epochs))
    assert "embodied CO2e" in str(summary) and "no published range" in str(summary)
    assert "embodied CO2e" in summary._repr_html_()
    info = json.loads((energy.run_dir / "run.json").read_text())["embodied"]
    assert info["counted"] and info["lifetime_years"] == 6.0 and info["utilisation"] == 0.85
    assert any("Estimating the Carbon Footprint of BLOOM" in s for s in info["sources"])


def test_the_lifetime_and_utilisation_options_change_the_share(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name=H100)], clock=clock)
    options = {"embodied": True, "embodied_lifetime_years": 4, "embodied_utilisation": 0.5}
    with gpu_tracker(tmp_path, nvml, clock=clock, sampling="manual", **options) as energy:
        one_epoch(energy, clock, 3600.0)
    (row,) = train_rows(energy.run_dir)
    assert row["embodied_co2_kg"] == pytest.approx(H100_KG / (4 * 8760 * 0.5))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("embodied", "yes"),
        ("embodied_lifetime_years", 0),
        ("embodied_lifetime_years", float("nan")),
        ("embodied_lifetime_years", True),
        ("embodied_utilisation", 1.5),
        ("embodied_utilisation", 0),
    ],
)
def test_bad_embodied_options_are_named_at_construction(tmp_path, option, value):
    with pytest.raises(ConfigurationError, match=rf"{option}={value!r}"):
        EnergyTracker(tmp_path, sensors=[], **{option: value})


@pytest.mark.parametrize("node_known", [True, False])
def test_a_two_rank_job_counts_each_gpu_once_and_the_host_once(tmp_path, clock, node_known):
    """Two ranks on one node; unknown node: both measure its CPU and RAM, and the merge keeps one host."""
    trackers = []
    for rank in (0, 1):
        launch = Launch(rank, rank if node_known else 0, 2, 2 if node_known else 1, "j2", "given", 0, node_known, "t")
        sensors = node(clock, [rank], host=rank == 0 or not node_known)
        trackers.append(
            EnergyTracker(
                tmp_path,
                sensors=sensors,
                launch=launch,
                host="node-a",
                clock=clock,
                sampling="manual",
                carbon_intensity_g_per_kwh=100.0,
                embodied=True,
                **PATIENT,
            )  # fmt: skip
        )
    row = job_train_row(tmp_path, trackers, clock, 3600.0)
    assert row["embodied_co2_kg"] == pytest.approx((2 * H100_KG + HOST_KG) / USE_H)


def test_the_boundary_counts_embodied_only_when_on(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name=H100)], clock=clock)
    for on in (False, True):
        with gpu_tracker(tmp_path / str(on), nvml, clock=clock, sampling="manual", embodied=on) as energy:
            one_epoch(energy, clock, 10.0)
        boundary = json.loads((energy.run_dir / "run.json").read_text())["boundary"]
        side = boundary["counted" if on else "not_counted"]
        (term,) = [t for t in side if t["term"] == "embodied"]
        assert ("6 years at 85% use" in term["source"]) if on else ("embodied=True" in term["why"])


def h100_host_run(tmp_path, clock, **options):
    """One epoch of an hour on two H100s and their host, embodied counted."""
    settings = {"clock": clock, "sampling": "manual", "carbon_intensity_g_per_kwh": 100.0, "embodied": True}
    with EnergyTracker(tmp_path, sensors=node(clock, [0, 1]), **settings, **options, **PATIENT) as energy:
        one_epoch(energy, clock, 3600.0)
    return report.load_summaries([str(energy.run_dir)])


def test_the_report_shows_embodied_beside_the_co2_in_every_format(tmp_path, clock):
    summaries = h100_host_run(tmp_path, clock)
    expected = (2 * H100_KG + HOST_KG) / USE_H
    text = report.render(summaries, "text")
    assert "embodied CO2e" in text and "not in the CO2e" in text
    assert "embodied CO2e (" in report.render(summaries, "markdown")
    header, *lines = report.render(summaries, "csv").splitlines()
    assert header.split(",")[header.split(",").index("co2_kg_high") + 1] == "embodied_co2_kg"
    document = json.loads(report.render(summaries, "json"))
    assert document["runs"][0]["totals"]["embodied_co2_kg"] == pytest.approx(expected)
    assert document["experiments"][0]["totals"]["embodied_co2_kg"] == pytest.approx(expected)


def test_the_paper_and_model_card_carry_embodied_with_its_sources(tmp_path, clock):
    summaries = h100_host_run(tmp_path, clock)
    text = paper.paper_text(summaries)
    assert "Making the hardware (its embodied emissions, amortised over a 6-year life at 85% use) adds" in text
    assert "apart from the operational CO2e above" in text
    assert "NVIDIA, Product Carbon Footprint (PCF) Summary: NVIDIA HGX H100." in text
    assert "Estimating the Carbon Footprint of BLOOM" in text
    card = model_card.model_card_text(summaries)
    grams = (2 * H100_KG + HOST_KG) / USE_H * 1000
    said = f"# embodied emissions (making the hardware, amortised; not in emissions): an estimated {grams:.3g} g CO2e"
    assert f"{said} (no published range), from" in card
    assert "Luccioni, Viguier, Ligozat (2023)" in card


def test_without_embodied_the_paper_and_card_say_nothing_of_it_but_the_boundary(tmp_path, clock):
    nvml = FakeNvml([FakeGpu(name=H100)], clock=clock)
    with gpu_tracker(tmp_path, nvml, clock=clock, sampling="manual") as energy:
        one_epoch(energy, clock, 10.0)
    summaries = report.load_summaries([str(energy.run_dir)])
    assert "Making the hardware" not in paper.paper_text(summaries)
    assert "# embodied" not in model_card.model_card_text(summaries)
    assert "embodied CO2e" not in report.render(summaries, "text")


def test_a_run_without_embodied_never_imports_or_reads_the_table(tmp_path):
    script = (
        "import sys\n"
        "from tracker import EnergyTracker\n"
        "from tracker.testing import FakeClock, FakeSensor, steady\n"
        "clock = FakeClock()\n"
        "sensors = [FakeSensor('gpu:0', 'gpu', steady(100.0), clock, info={'name': 'NVIDIA H100 80GB HBM3'})]\n"
        f"with EnergyTracker({str(tmp_path)!r}, sensors=sensors, clock=clock, sampling='manual',\n"
        "                   carbon_intensity_g_per_kwh=100.0) as energy:\n"
        "    with energy.epoch(0):\n"
        "        clock.advance(1.0)\n"
        "print('tracker.carbon.embodied' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_a_cpu_only_host_is_not_given_a_gpu_server_s_footprint(tmp_path, clock):
    sensors = node(clock, [])
    with EnergyTracker(tmp_path, sensors=sensors, clock=clock, sampling="manual", carbon_intensity_g_per_kwh=100.0,
                       embodied=True, host="laptop", **PATIENT) as energy:  # fmt: skip
        one_epoch(energy, clock, 60.0)
    (row,) = train_rows(energy.run_dir)
    assert row["embodied_co2_kg"] is None
    assert "embodied: host laptop not counted (the table's host is a GPU server's; no GPU here)" in row["notes"]
    left_out = {t["term"]: t for t in load_run(energy.run_dir).info["boundary"]["not_counted"]}
    assert "no GPU here" in left_out["embodied"]["why"]  # asked for, yet not claimed as counted
    assert "embodied emissions" in energy.summary().boundary.leaves_out_text()


def test_a_cpu_only_run_beside_a_gpu_run_does_not_make_the_paper_say_a_gpu_was_left_out(tmp_path, clock):
    h100_host_run(tmp_path / "sweep", clock)
    with EnergyTracker(tmp_path / "sweep", sensors=node(clock, []), clock=clock, sampling="manual", embodied=True,
                       carbon_intensity_g_per_kwh=100.0, host="laptop", **PATIENT) as energy:  # fmt: skip
        one_epoch(energy, clock, 60.0)
    summaries = report.load_summaries([str(tmp_path / "sweep")])
    assert len(summaries) == 2 and not any(s.embodied_left_out for s in summaries)
    assert "adds an estimated" in paper.paper_text(summaries)
    assert "without a published footprint" not in paper.paper_text(summaries)


def test_a_killed_rank_s_recovered_epoch_does_not_count_a_shared_gpu_s_embodied_twice(tmp_path):
    from test_killed_ranks import GPU_A, J, dead_process, device_row, epoch_row, shard

    made = {"embodied_co2_kg": 0.5, "embodied_co2_kg_low": 0.5, "embodied_co2_kg_high": 0.5}  # per epoch, one GPU
    job = tmp_path / "job"
    shard(job, 0, "complete", [epoch_row(e, 100.0) | made for e in range(2)],
          [device_row(e, 0, GPU_A, 100.0) | made for e in range(2)])  # fmt: skip
    process = dead_process()
    path = shard(job, 1, "running", [epoch_row(0, 100.0) | made], [device_row(0, 1, GPU_A, 100.0) | made],
                 process=process)  # fmt: skip
    open_row = {"epoch": 1, "phase": "train", "start_utc": epoch_row(1, 0.0)["start_utc"], "duration_s": 0.6,
                "gpu_kwh": 60.0 * J, "cpu_kwh": 0.0, "ram_kwh": 0.0, "energy_kwh": 60.0 * J, "pue": 1.0,
                "co2_kg": 60.0 * 0.4 * J, "embodied_co2_kg": 0.3, "embodied_co2_kg_low": 0.3,
                "embodied_co2_kg_high": 0.3}  # fmt: skip
    beat = {"process": process, "seq": 1, "time_utc": epoch_row(1, 0.0)["end_utc"], "open": [open_row]}
    (path / "heartbeat.json").write_text(json.dumps(beat))
    train = {r["epoch"]: r for r in load_run(job).epochs}
    # both ranks saw the same GPU: rank 0's rows count it, the recovered epoch's share of it is left out
    assert train[0]["embodied_co2_kg"] == pytest.approx(0.5)
    assert "r1: killed" in train[1]["notes"] and train[1]["embodied_co2_kg"] == pytest.approx(0.5)
