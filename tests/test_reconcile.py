"""``energy-tracker reconcile``: a run measured on the fake NVML beside meters' files in their documented formats.

The run's GPUs draw known power for a known time, so the tracker's energy is known; each meter's file
is written with figures offset from it by a chosen amount, and the reconciled difference must be that amount.
Formats: dcgm-exporter's ``/metrics`` (Prometheus text exposition format, its HELP/TYPE lines and labels as
its ``render_metrics.go`` template writes them) and a Prometheus HTTP API ``query_range`` answer.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import PATIENT, gpu_tracker, run_for

import tracker.units as units
from tracker import EnergyTracker
from tracker.cli import main
from tracker.testing import FakeClock, FakeGpu, FakeNvml, build_hwmon_tree, steady

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)  # the run's first row opens here
BEFORE_S, EPOCH_S, AFTER_S = 5.0, 50.0, 5.0
RUN_S = BEFORE_S + EPOCH_S + AFTER_S
UUIDS = ("GPU-5d1c0a7e-3b2f-4c1d-9e5a-00000000a100", "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52")
STRANGER = "GPU-9f3e1d2c-0000-4000-8000-0000000000ff"  # a GPU of the node the run did not use
WATTS = (200.0, 300.0)
MODEL = "NVIDIA A100-SXM4-40GB"
BOOT_MJ = (7.5e9, 1.25e9, 3.0e9)  # each counter's value at the run's start: energy since boot, mJ


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run of 60 s on two fake GPUs (200 W, 300 W): 5 s before its epoch, a 50 s epoch, 5 s after."""
    clock = FakeClock()
    gpus = [FakeGpu(uuid=u, name=MODEL, trace=steady(w)) for u, w in zip(UUIDS, WATTS, strict=True)]
    nvml = FakeNvml(gpus, clock=clock)
    utc = lambda: T0 + timedelta(seconds=clock() - 1000.0)  # noqa: E731
    options = {"run_name": "r", "clock": clock, "utc_clock": utc, "job_id": "4242", "host": "node7"}
    energy = gpu_tracker(tmp_path / "runs", nvml, sampling="manual", **options)
    energy.start()
    run_for(energy, clock, BEFORE_S)
    with energy.epoch(0):
        run_for(energy, clock, EPOCH_S)
    run_for(energy, clock, AFTER_S)
    energy.stop()
    return tmp_path / "runs" / "r"


def unix(offset_s: float) -> float:
    """The UNIX time ``offset_s`` after the run's start."""
    return (T0 + timedelta(seconds=offset_s)).timestamp()


def scrape(values_mj: dict[str, float], at_s: float | None = None, host_label: str = "Hostname") -> str:
    """A dcgm-exporter ``/metrics`` page: HELP and TYPE lines, four metrics, GPU labels; timestamps at ``at_s``."""
    stamp = f" {round(unix(at_s) * 1000)}" if at_s is not None else ""
    families = [
        ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", lambda u: "1410"),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda u: "251.234000"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).",
         lambda u: f"{values_mj[u]:.0f}"),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda u: "97"),
    ]  # fmt: skip
    lines = []
    for name, kind, text, value in families:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for i, uuid in enumerate(values_mj):
            labels = (f'gpu="{i}",UUID="{uuid}",pci_bus_id="00000000:{7 + i:02X}:00.0",device="nvidia{i}",'
                      f'modelName="{MODEL}",{host_label}="node7",DCGM_FI_DRIVER_VERSION="550.54.15"')  # fmt: skip
            lines.append(f"{name}{{{labels}}} {value(uuid)}{stamp if name.endswith('CONSUMPTION') else ''}")
    return "\n".join(lines) + "\n"


def counters(offset_s: float, extra_j: tuple[float, ...] = (0.0, 0.0, 0.0)) -> dict[str, float]:
    """Each counter ``offset_s`` after the run's start, mJ: the run's power while it runs, plus ``extra_j``."""
    inside = min(max(offset_s, 0.0), RUN_S)
    watts = (*WATTS, 50.0)
    return {u: BOOT_MJ[i] + 1000.0 * (watts[i] * inside + extra_j[i]) for i, u in enumerate((*UUIDS, STRANGER))}


def reconcile(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, dict[str, Any], str]:
    """``energy-tracker reconcile ... --format json``: the exit code, the JSON and stderr."""
    code = main(["reconcile", *map(str, args), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def by_uuid(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["uuid"]: c for c in result["compared"]}


# ---- dcgm-exporter --------------------------------------------------------------------------------------------------


def test_scrapes_before_and_after_give_the_constructed_difference(run: Path, tmp_path: Path, capsys: Any) -> None:
    # Scraped 2 s before the run and 3 s after: dcgm also counts 5 s of each GPU outside the run, constructed
    # here as 20 W and 30 W of idle, plus a disagreement of +120 J on the first GPU and -90 J on the second.
    before, after = tmp_path / "before.prom", tmp_path / "after.prom"
    before.write_text(scrape(counters(0.0), at_s=-2.0))
    idle_j = (20.0 * 5, 30.0 * 5, 0.0)
    after.write_text(scrape(counters(RUN_S, (idle_j[0] + 120.0, idle_j[1] - 90.0, 0.0)), at_s=RUN_S + 3.0))
    code, result, _ = reconcile(capsys, run, "--dcgm", before, after)
    assert code == 0 and result["meter"] == "dcgm-exporter"
    gpus = by_uuid(result)
    for uuid, watts, offset_j in ((UUIDS[0], 200.0, 220.0), (UUIDS[1], 300.0, 60.0)):
        gpu = gpus[uuid]
        assert gpu["tracker_j"] == pytest.approx(watts * RUN_S, rel=1e-9)
        assert gpu["difference_j"] == pytest.approx(-offset_j, abs=1e-6)
        assert gpu["difference_pct"] == pytest.approx(-100.0 * offset_j / (watts * RUN_S + offset_j))
        assert gpu["outside_run_s"] == pytest.approx(5.0) and gpu["run_uncovered_s"] == pytest.approx(0.0)
        assert gpu["timed_by"] == ["exposition timestamp"] and gpu["host"] == "node7" and gpu["model"] == MODEL
        assert gpu["tracker_other_j"] == pytest.approx(watts * (BEFORE_S + AFTER_S), rel=1e-9)
        assert gpu["meter_in_run_low_j"] == 0.0 and gpu["meter_in_run_high_j"] == pytest.approx(gpu["meter_j"])
    assert [d["uuid"] for d in result["only_meter"]] == [STRANGER] and result["only_tracker"] == []
    assert result["total"]["difference_j"] == pytest.approx(-280.0, abs=1e-6)
    assert result["run_s"] == pytest.approx(RUN_S)


def test_text_names_each_side_the_windows_and_the_gpus_seen_once(run: Path, tmp_path: Path, capsys: Any) -> None:
    before, after = tmp_path / "before.prom", tmp_path / "after.prom"
    before.write_text(scrape(counters(0.0), at_s=-2.0, host_label="hostname"))  # the label's name since PR #655
    after.write_text(scrape(counters(RUN_S, (100.0, 150.0, 0.0)), at_s=RUN_S + 3.0, host_label="hostname"))
    assert main(["reconcile", str(run), "--dcgm", str(before), str(after)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Run r against dcgm-exporter: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
    assert "2026-03-01T12:00:00.000+00:00 to 2026-03-01T12:01:00.000+00:00 (1.00 min)" in text
    assert f"{before} (exposition-format scrape; times: exposition timestamp)" in text
    assert f"{UUIDS[0]}  node7  3.33 Wh" in text and "-27.8 mWh" in text and "-0.826 %" in text
    assert "2026-03-01T11:59:58 to 12:01:03" in text and "5.00 s" in text
    assert f"Seen by dcgm-exporter only: {STRANGER} (node7, {MODEL})" in text
    words = " ".join(text.split())  # a note wraps under itself
    assert "outside the run" in words and "no sample falls within the run" in words
    assert "idle time included: of them, its 'other' rows (before, between and after epochs and phases)" in words
    assert f"hold {UUIDS[0]} 556 mWh, {UUIDS[1]} 833 mWh" in words
    assert all(len(line) <= units.WIDTH for line in text.splitlines() if line.startswith(("Note", "      ")))


def test_scrapes_without_timestamps_are_timed_by_at_or_by_the_file(run: Path, tmp_path: Path, capsys: Any) -> None:
    before, after = tmp_path / "before.prom", tmp_path / "after.prom"
    before.write_text(scrape(counters(0.0)))
    after.write_text(scrape(counters(RUN_S, (60.0, 0.0, 0.0))))
    os.utime(after, (unix(RUN_S + 1.0), unix(RUN_S + 1.0)))
    code, result, _ = reconcile(capsys, run, "--dcgm", before, after, "--at", f"{before}=2026-03-01T11:59:59Z")
    assert code == 0
    timed = {s["path"]: s["timed_by"] for s in result["sources"]}
    assert timed == {str(before): ["--at"], str(after): ["file modification time"]}
    gpu = by_uuid(result)[UUIDS[0]]
    assert gpu["meter_start_utc"] == "2026-03-01T11:59:59.000+00:00" and gpu["outside_run_s"] == pytest.approx(2.0)
    assert gpu["difference_j"] == pytest.approx(-60.0, abs=1e-6)
    assert any("modification time" in n and "--at" in n for n in result["notes"])


def query_range(start_s: float, end_s: float, step_s: float, extra_w: float = 0.0) -> dict[str, Any]:
    """A ``/api/v1/query_range`` answer for the counter, every ``step_s`` from ``start_s`` to ``end_s`` (run time)."""
    result = []
    for i, uuid in enumerate(UUIDS):
        labels = {"__name__": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DRIVER_VERSION": "550.54.15",
                  "Hostname": "node7", "UUID": uuid, "device": f"nvidia{i}", "gpu": str(i), "instance": "node7:9400",
                  "job": "dcgm", "modelName": MODEL, "pci_bus_id": f"00000000:{7 + i:02X}:00.0"}  # fmt: skip
        times = [start_s + k * step_s for k in range(round((end_s - start_s) / step_s) + 1)]
        values = [[unix(t), f"{counters(t)[uuid] + 1000.0 * extra_w * (t - start_s):.0f}"] for t in times]
        result.append({"metric": labels, "values": values})
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_query_range_gives_the_meter_within_the_run(run: Path, tmp_path: Path, capsys: Any) -> None:
    # Every 15 s from 15 s before the run to 15 s after (samples on its edges); dcgm reads 2 W more all along.
    answer = tmp_path / "range.json"
    answer.write_text(json.dumps(query_range(-15.0, RUN_S + 15.0, 15.0, extra_w=2.0)))
    code, result, _ = reconcile(capsys, run, "--dcgm", answer)
    assert code == 0 and result["sources"][0]["timed_by"] == ["query answer"]
    for uuid, watts in zip(UUIDS, WATTS, strict=True):
        gpu = by_uuid(result)[uuid]
        assert gpu["meter_j"] == pytest.approx(watts * RUN_S + 2.0 * (RUN_S + 30.0), abs=1e-3)
        assert gpu["samples"] == 7 and gpu["outside_run_s"] == pytest.approx(30.0)
        in_run = [gpu[k] for k in ("meter_in_run_low_j", "meter_in_run_j", "meter_in_run_high_j")]
        assert in_run == pytest.approx([watts * RUN_S + 2.0 * RUN_S] * 3, abs=1e-3)
    assert any("within the run's window" in n and "is outside that band" in n for n in result["notes"])


def test_samples_off_the_edges_bound_the_meter_within_the_run(run: Path, tmp_path: Path, capsys: Any) -> None:
    # Every 15 s from 10 s before: no sample on an edge, so the band is as wide as the samples around each edge.
    answer = tmp_path / "range.json"
    answer.write_text(json.dumps(query_range(-10.0, RUN_S + 10.0, 15.0)))
    code, result, _ = reconcile(capsys, run, "--dcgm", answer)
    assert code == 0
    for uuid, watts in zip(UUIDS, WATTS, strict=True):
        gpu = by_uuid(result)[uuid]
        assert gpu["meter_in_run_low_j"] == pytest.approx(watts * 45.0, abs=1e-3)  # samples at 5 and 50 s
        assert gpu["meter_in_run_high_j"] == pytest.approx(watts * RUN_S, abs=1e-3)  # at -10 and 65 s
        assert gpu["meter_in_run_low_j"] <= gpu["meter_in_run_j"] <= gpu["meter_in_run_high_j"]
        assert gpu["difference_j"] == pytest.approx(0.0, abs=1e-3)
    assert any("is within that band" in n for n in result["notes"])


def test_a_counter_reset_counts_the_energy_since_it(run: Path, tmp_path: Path, capsys: Any) -> None:
    # The first GPU's driver reloads just before the scrape 30 s into the run: its counter restarts from 0.
    before, middle, after = (tmp_path / f"{n}.prom" for n in ("before", "middle", "after"))
    before.write_text(scrape(counters(0.0), at_s=0.0))
    mid = counters(30.0)
    mid[UUIDS[0]] = 1000.0 * 10.0  # 10 J since the reload
    middle.write_text(scrape(mid, at_s=30.0))
    end = counters(RUN_S)
    end[UUIDS[0]] = 1000.0 * (10.0 + 200.0 * 30.0)
    after.write_text(scrape(end, at_s=RUN_S))
    code, result, _ = reconcile(capsys, run, "--dcgm", before, middle, after)
    assert code == 0
    gpu = by_uuid(result)[UUIDS[0]]
    # Between the first scrape and the reload the counter's energy is lost: what dcgm gives is a lower bound,
    # the 10 J since the reload read at 30 s, then 30 s of 200 W.
    assert gpu["resets"] == 1 and gpu["meter_j"] == pytest.approx(10.0 + 200.0 * 30.0)
    assert gpu["difference_j"] == pytest.approx(200.0 * RUN_S - 10.0 - 200.0 * 30.0, abs=1e-6)
    assert by_uuid(result)[UUIDS[1]]["resets"] == 0
    assert any(n.startswith(f"{UUIDS[0]}: the counter went down 1 time") for n in result["notes"])


def test_gpus_of_the_run_missing_from_dcgm_are_listed(run: Path, tmp_path: Path, capsys: Any) -> None:
    before, after = tmp_path / "before.prom", tmp_path / "after.prom"
    first = {UUIDS[0]: counters(0.0)[UUIDS[0]], STRANGER: 1.0}
    last = {UUIDS[0]: counters(RUN_S)[UUIDS[0]], STRANGER: 2.0}
    before.write_text(scrape(first, at_s=0.0))
    after.write_text(scrape(last, at_s=RUN_S))
    code, result, _ = reconcile(capsys, run, "--dcgm", before, after)
    assert code == 0 and [c["uuid"] for c in result["compared"]] == [UUIDS[0]]
    assert [d["uuid"] for d in result["only_tracker"]] == [UUIDS[1]]
    assert [d["uuid"] for d in result["only_meter"]] == [STRANGER]


def test_no_gpu_in_common_is_an_error_naming_both_sides(run: Path, tmp_path: Path, capsys: Any) -> None:
    before, after = tmp_path / "before.prom", tmp_path / "after.prom"
    before.write_text(scrape({STRANGER: 1.0}, at_s=0.0))
    after.write_text(scrape({STRANGER: 2.0}, at_s=RUN_S))
    code, _, err = reconcile(capsys, run, "--dcgm", before, after)
    assert code == 2 and "no GPU of run 'r' is in the dcgm-exporter files" in err
    assert UUIDS[0] in err and UUIDS[1] in err and STRANGER in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("# HELP x\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\",UUID=\"GPU-1\" 12\n",
         "bad.prom:2: 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\",UUID=\"GPU-1\" 12' is not a sample line"),
        ('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{UUID="GPU-1"} twelve\n', "bad.prom:1: "),
        ("DCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} 40\n", "bad.prom: no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION sample"),
        ('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0"} 12 1772366400000\n', "has no UUID label"),
        ('{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {"UUID": "GPU-1"}, '
         '"values": [[1, "2"]]}]}}', "bad.prom: result 0 is not the raw counter"),
        ('{"status": "error", "errorType": "bad_data"}', "bad.prom: not a successful matrix or vector answer"),
        ('{"status": "success",\n "data": [', "bad.prom:2: not JSON"),
        ('{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {"__name__": '
         '"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "UUID": "GPU-1"}, "values": [[1, "x"]]}]}}',
         "bad.prom: result 0, point 0: [1, 'x'] is not a point"),
    ],
)  # fmt: skip
def test_unusable_files_name_the_file_line_and_what_was_expected(
    run: Path, tmp_path: Path, capsys: Any, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.prom"
    bad.write_text(content)
    code, _, err = reconcile(capsys, run, "--dcgm", bad)
    assert code == 2 and err.startswith("energy-tracker reconcile: error: ") and expected in err


def test_a_single_sample_per_gpu_cannot_give_energy(run: Path, tmp_path: Path, capsys: Any) -> None:
    only = tmp_path / "only.prom"
    only.write_text(scrape(counters(0.0), at_s=0.0))
    code, _, err = reconcile(capsys, run, "--dcgm", only)
    assert code == 2 and "has one DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION sample" in err


@pytest.mark.parametrize("at", ["before.prom", "before.prom=2026-03-01 12:00", "before.prom=yesterday"])
def test_a_bad_at_is_an_error(run: Path, tmp_path: Path, capsys: Any, at: str) -> None:
    code, _, err = reconcile(capsys, run, "--dcgm", tmp_path / "before.prom", "--at", at)
    assert code == 2 and ("--at" in err or "UTC offset" in err)


# ---- Slurm's accounting (sacct) -------------------------------------------------------------------------------------

TRACKER_J = sum(WATTS) * RUN_S  # the run measures its GPUs alone: 30 kJ


def sacct_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sacct.txt"
    path.write_text(text)
    return path


def test_sacct_parsable2_uses_the_extern_step_not_the_sum_of_overlapping_steps(
    run: Path, tmp_path: Path, capsys: Any
) -> None:
    # sacct -j 4242 --parsable2 --format=JobID,JobName,ConsumedEnergyRaw,ElapsedRaw,NNodes: the job's own line is
    # the sum of its steps (Slurm adds each step's energy to the job's), which overlap in time.
    path = sacct_file(tmp_path, "JobID|JobName|ConsumedEnergyRaw|ElapsedRaw|NNodes\n"
                                "4242|train|66020|62|1\n4242.batch|batch|30500|61|1\n"
                                "4242.extern|extern|31020|62|1\n4242.0|python|4500|10|1\n")  # fmt: skip
    code, result, _ = reconcile(capsys, run, "--sacct", path)
    assert code == 0 and result["meter"] == "sacct"
    (entry,) = result["compared"]
    assert entry["meter_lines"] == ["4242.extern"] and entry["meter_j"] == 31020.0
    assert entry["tracker_j"] == pytest.approx(TRACKER_J, rel=1e-9)
    assert entry["difference_j"] == pytest.approx(TRACKER_J - 31020.0, abs=1e-6)
    assert entry["outside_run_s"] == pytest.approx(2.0) and entry["run_uncovered_s"] == 0.0
    assert result["measures"].startswith("ConsumedEnergyRaw (J) of the extern step, from whatever the site's")
    notes = " ".join(result["notes"])
    assert "the job's own line reads 18.3 Wh" in notes and "the tracker's components (energy_kwh" in notes
    assert "AcctGatherEnergyType" in notes and "exclusive" in notes
    assert [line["job_id"] for line in result["sources"][0]["lines"]] == ["4242", "4242.batch", "4242.extern", "4242.0"]


def test_sacct_fixed_width_uses_the_batch_step_on_one_node(run: Path, tmp_path: Path, capsys: Any) -> None:
    # sacct's default table (no --parsable): a header, a line of dashes, cells padded to each column's width.
    path = sacct_file(tmp_path, "       JobID ConsumedEnergyRaw \n------------ ----------------- \n"
                                "4242                    59900 \n4242.batch              30900 \n"
                                "4242.0                  29000 \n")  # fmt: skip
    assert main(["reconcile", str(run), "--sacct", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Run r against sacct: ConsumedEnergyRaw (J) of the batch step")
    assert "sacct fixed-width; times: not given" in text and "line 4: 4242.batch 8.58 Wh (used)" in text
    assert "4242  " in text and "8.33 Wh  8.58 Wh" in text and "-250 mWh" in text and "-2.91 %" in text
    assert "no ElapsedRaw" in text


@pytest.mark.parametrize(
    ("text", "job", "lines", "energy_j"),
    [
        # an array task: <job>_<task>; the other tasks are not this run's
        ("JobID|ConsumedEnergyRaw\n4243_7|61000\n4243_7.batch|30400\n4243_7.extern|30600\n4243_8.batch|9\n",
         "4243_7", ["4243_7.extern"], 30600.0),
        # two nodes and no extern step: the batch step runs on the first node alone, the srun steps on both
        ("JobID|ConsumedEnergyRaw|NNodes\n4242|90000|2\n4242.batch|30000|1\n4242.0|20000|2\n4242.1|10500|2\n",
         "4242", ["4242.0", "4242.1"], 30500.0),
        # sacct -X (allocations only): the job's own line
        ("JobID|ConsumedEnergyRaw\n4242|29500\n", "4242", ["4242"], 29500.0),
        # Slurm's no-value (NO_VAL64) and an empty cell are no figure: the batch step is used
        ("JobID|ConsumedEnergyRaw|\n4242|18446744073709551614|\n4242.extern||\n4242.batch|30100|\n",
         "4242", ["4242.batch"], 30100.0),
    ],
)  # fmt: skip
def test_sacct_lines_chosen(
    run: Path, tmp_path: Path, capsys: Any, text: str, job: str, lines: list[str], energy_j: float
) -> None:
    code, result, _ = reconcile(capsys, run, "--sacct", sacct_file(tmp_path, text), "--job-id", job)
    assert code == 0
    (entry,) = result["compared"]
    assert entry["job_id"] == job and entry["meter_lines"] == lines and entry["meter_j"] == pytest.approx(energy_j)
    assert entry["difference_j"] == pytest.approx(TRACKER_J - energy_j, abs=1e-6)


def test_sacct_plugin_chooses_the_tracker_figure(run: Path, tmp_path: Path, capsys: Any) -> None:
    path = sacct_file(tmp_path, "JobID|ConsumedEnergyRaw\n4242|100\n4242.batch|31000\n")
    code, result, _ = reconcile(capsys, run, "--sacct", path, "--slurm-plugin", "gpu")
    assert code == 0 and "the GPUs' management library" in result["measures"]
    assert result["compared"][0]["tracker_j"] == pytest.approx(TRACKER_J, rel=1e-9)
    assert any(n.startswith("compared with the tracker's GPUs (gpu_kwh; gpu energy_counter") for n in result["notes"])
    code, result, _ = reconcile(capsys, run, "--sacct", path, "--slurm-plugin", "rapl")
    assert code == 0 and result["compared"][0]["tracker_j"] == 0.0  # the run measured no CPU or memory


def test_sacct_is_set_beside_the_node_meter_when_the_run_has_one(tmp_path: Path, capsys: Any) -> None:
    # The run's GPUs and the node's ACPI power meter (a fake hwmon tree) drawing 625 W in all, for 60 s.
    clock = FakeClock()
    tree = build_hwmon_tree(tmp_path / "hwmon", steady(625.0), clock=clock)
    nvml = FakeNvml(
        [FakeGpu(uuid=u, name=MODEL, trace=steady(w)) for u, w in zip(UUIDS, WATTS, strict=True)], clock=clock
    )
    utc = lambda: T0 + timedelta(seconds=clock() - 1000.0)  # noqa: E731
    options = {"run_name": "r", "clock": clock, "utc_clock": utc, "job_id": "4242", "sampling": "manual"}
    energy = EnergyTracker(tmp_path / "runs", nvml=nvml, hwmon_root=tree.root, measure=("gpu", "node"),
                           carbon_intensity_g_per_kwh=100.0, **PATIENT, **options)  # fmt: skip
    energy.start()
    with energy.epoch(0):
        run_for(energy, clock, RUN_S)
    energy.stop()
    path = sacct_file(tmp_path, "JobID|ConsumedEnergyRaw\n4242.extern|38000\n")
    code, result, _ = reconcile(capsys, tmp_path / "runs" / "r", "--sacct", path, "--slurm-plugin", "ipmi")
    assert code == 0 and "the node's BMC through IPMI" in result["measures"]
    assert result["compared"][0]["tracker_j"] == pytest.approx(625.0 * RUN_S, rel=0.01)
    assert result["compared"][0]["difference_j"] == pytest.approx(625.0 * RUN_S - 38000.0, abs=0.01 * 625.0 * RUN_S)
    assert any("node meter (node_kwh, acpi_power_meter: the whole machine)" in n for n in result["notes"])
    code, result, _ = reconcile(capsys, tmp_path / "runs" / "r", "--sacct", path, "--slurm-plugin", "gpu")
    assert code == 0 and result["compared"][0]["tracker_j"] == pytest.approx(TRACKER_J, rel=1e-9)


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("JobID|ConsumedEnergyRaw\n4242|0\n4242.batch|0\n", (), "sacct gives no energy for job 4242"),
        ("JobID|ConsumedEnergyRaw\n99|5\n98.batch|6\n", (), "no line of job 4242 (the file's jobs: ['98', '99'])"),
        ("JobID|ConsumedEnergyRaw\n4242|12.5K\n", (), "sacct.txt:2: energy '12.5K' is not a number of joules"),
        ("JobID|State\n4242|COMPLETED\n", (), "sacct.txt:1: the header ['JobID', 'State'] names no JobID and"),
        ("     JobID ConsumedEnergyRaw\n---------- -----------------\n4242.exte+             30000\n", (),
         "sacct.txt:3: '4242.exte+' was cut to its column's width"),
        ("JobID ConsumedEnergyRaw\n4242 1\n", (), "sacct.txt:1: no line of dashes under the header"),
        ("", (), "sacct.txt: empty"),
        ("JobID|ConsumedEnergyRaw\n4242|1\n", ("--job-id", "77"), "no line of job 77"),
    ],
)  # fmt: skip
def test_unusable_sacct_output_is_an_error(
    run: Path, tmp_path: Path, capsys: Any, text: str, args: tuple[str, ...], expected: str
) -> None:
    code, _, err = reconcile(capsys, run, "--sacct", sacct_file(tmp_path, text), *args)
    assert code == 2 and expected in err


def test_sacct_prefixed_energy_is_read(run: Path, tmp_path: Path, capsys: Any) -> None:
    # ConsumedEnergy (not Raw) carries a unit prefix in powers of 1000 (sacct's man page).
    path = sacct_file(tmp_path, "JobID|ConsumedEnergy|Elapsed\n4242.batch|30.50K|00:01:02\n")
    code, result, _ = reconcile(capsys, run, "--sacct", path)
    assert code == 0 and result["compared"][0]["meter_j"] == pytest.approx(30500.0)
    assert result["compared"][0]["meter_elapsed_s"] == pytest.approx(62.0)


def test_the_help_asks_for_the_sacct_columns_the_readme_names(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["reconcile", "--help"])
    asked = "--format=JobID,ConsumedEnergyRaw,ElapsedRaw,NNodes"  # NNodes: steps summed across nodes
    assert asked in capsys.readouterr().out
    assert asked in (Path(__file__).parent.parent / "README.md").read_text()
