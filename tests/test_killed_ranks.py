"""A distributed job's rank killed mid-epoch, read from hand-built shard directories (issues #12 and #13).

Each shard is what a rank writes under ``<job>/ranks/<host>-r<rank>/``: ``run.json`` (which names
the writing process), ``epochs.csv``, ``devices.csv`` and, while it runs, ``heartbeat.json``. A
shard whose process is gone is ``killed``, its open epoch up to the last heartbeat counted in the
merged row as an ``interrupted`` contribution.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tracker import cli, load_run, load_runs
from tracker.logs import liveness
from tracker.logs.merge import job_status
from tracker.testing import FakeClock

J = 1 / 3.6e6  # kWh per joule
NOW = datetime.now(timezone.utc)
GPU_A, GPU_B = "GPU-aaaa", "GPU-bbbb"
SEQ = itertools.count(1)  # a heartbeat's count, which only grows


def dead_process() -> dict:
    """A process of this host that has ended (its pid is free)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return {"host": liveness.this_process()["host"], "pid": child.pid, "start_ticks": 12345}


def epoch_row(epoch: int, gpu_j: float, cpu_j: float = 0.0, notes: str = "") -> dict:
    energy = (gpu_j + cpu_j) * J
    end = NOW - timedelta(seconds=100 - epoch)
    return {
        "epoch": epoch, "phase": "train", "status": "complete", "start_utc": (end - timedelta(seconds=1)).isoformat(),
        "end_utc": end.isoformat(), "duration_s": 1.0, "gpu_kwh": gpu_j * J, "cpu_kwh": cpu_j * J, "ram_kwh": 0.0,
        "energy_kwh": energy, "energy_kwh_low": energy * 0.9, "energy_kwh_high": energy * 1.1,
        "co2_kg": energy * 0.4, "co2_kg_low": energy * 0.36, "co2_kg_high": energy * 0.44, "pue": 1.0,
        "samples": 8, "gpu_method": "nvml-energy-counter", "notes": notes,
    }  # fmt: skip


def device_row(epoch: int, rank: int, uuid: str, gpu_j: float) -> dict:
    return {"epoch": epoch, "phase": "train", "host": "node-a", "rank": rank, "sensor": f"nvml:{uuid}",
            "kind": "gpu", "uuid": uuid, "energy_kwh": gpu_j * J}  # fmt: skip


def write_csv(path: Path, rows: list[dict]) -> None:
    if rows:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def shard(job: Path, rank: int, status: str, epochs: list[dict], devices: list[dict], **extra) -> Path:
    path = job / "ranks" / f"node-a-r{rank}"
    path.mkdir(parents=True)
    uuids = sorted({d["uuid"] for d in devices}) or extra.pop("uuids", [])
    info = {"run": path.name, "status": status, "host": "node-a", "launch": {"rank": rank, "world_size": 2},
            "sensors": [{"name": f"nvml:{u}", "kind": "gpu", "info": {"uuid": u}} for u in uuids], **extra}  # fmt: skip
    (path / "run.json").write_text(json.dumps(info))
    write_csv(path / "epochs.csv", epochs)
    write_csv(path / "devices.csv", devices)
    return path


def beat(path: Path, process: dict, epoch: int, gpu_j: float, age_s: float = 1.0) -> None:
    time = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat()  # now: the suite takes minutes
    energy = gpu_j * J
    open_row = {"epoch": epoch, "phase": "train", "start_utc": (NOW - timedelta(seconds=50)).isoformat(),
                "duration_s": 0.6, "gpu_kwh": energy, "cpu_kwh": 0.0, "ram_kwh": 0.0, "energy_kwh": energy,
                "pue": 1.0, "carbon_intensity_g_per_kwh": 400.0, "co2_kg": energy * 0.4}  # fmt: skip
    (path / liveness.HEARTBEAT_JSON).write_text(
        json.dumps({"process": process, "seq": next(SEQ), "time_utc": time, "open": [open_row]})
    )


def three_epochs_rank0(job: Path, uuid: str = GPU_A) -> None:
    shard(job, 0, "complete", [epoch_row(e, 100.0, cpu_j=20.0) for e in range(3)],
          [device_row(e, 0, uuid, 100.0) for e in range(3)])  # fmt: skip


def killed_rank1(job: Path, uuid: str = GPU_B, process: dict | None = None, age_s: float = 1.0) -> Path:
    process = process or dead_process()
    path = shard(job, 1, "running", [epoch_row(0, 150.0)], [device_row(0, 1, uuid, 150.0)], process=process)
    beat(path, process, 1, 90.0, age_s)
    return path


def test_a_killed_rank_s_open_epoch_counts_in_the_merged_row_and_the_job_is_killed(tmp_path):
    job = tmp_path / "job"
    three_epochs_rank0(job)
    killed_rank1(job)
    run = load_run(job)
    train = {r["epoch"]: r for r in run.epochs}
    assert train[0]["gpu_kwh"] == pytest.approx(250.0 * J) and train[0]["status"] == "complete"
    # epoch 1: rank 0's 100 J and rank 1's 90 J up to its last heartbeat
    assert train[1]["gpu_kwh"] == pytest.approx(190.0 * J)
    assert train[1]["energy_kwh"] == pytest.approx(210.0 * J)
    assert train[1]["co2_kg"] == pytest.approx(120.0 * 0.4 * J + 90.0 * 0.4 * J)
    assert train[1]["energy_kwh_low"] == pytest.approx(120.0 * 0.9 * J + 90.0 * J)  # a heartbeat has no band
    assert train[1]["energy_kwh_high"] == pytest.approx(120.0 * 1.1 * J + 90.0 * J)
    assert train[1]["status"] == "interrupted" and train[1]["samples"] == 8
    assert train[1]["notes"] == "r1: killed: the energy up to the last heartbeat"
    assert [d["rank"] for d in run.devices if d["epoch"] == 1] == [0]
    # epoch 2: rank 1 was gone
    assert train[2]["gpu_kwh"] == pytest.approx(100.0 * J) and train[2]["status"] == "interrupted"
    assert train[2]["notes"] == "no row from r1@node-a (its run: killed)"
    assert run.info["status"] == "killed"
    assert [(s["rank"], s["status"]) for s in run.info["shards"]] == [(0, "complete"), (1, "killed")]
    assert run.info["totals"]["gpu_kwh"] == pytest.approx(540.0 * J)
    assert [r["cumulative_energy_kwh"] for r in run.epochs] == pytest.approx([270 * J, 480 * J, 600 * J])


def test_a_killed_rank_s_heartbeat_does_not_count_twice_a_gpu_another_rank_measured(tmp_path):
    job = tmp_path / "job"
    three_epochs_rank0(job, uuid=GPU_A)
    killed_rank1(job, uuid=GPU_A)  # both ranks see the same GPU: rank 0's rows count it
    train = {r["epoch"]: r for r in load_run(job).epochs}
    assert train[0]["gpu_kwh"] == pytest.approx(100.0 * J)
    assert train[1]["gpu_kwh"] == pytest.approx(100.0 * J)  # the heartbeat's 90 J is the same GPU: left out
    assert train[1]["status"] == "interrupted" and "r1: killed" in train[1]["notes"]
    assert "1 device shares left out: the same device as another rank's row" in train[1]["notes"]


def test_a_killed_rank_0_s_heartbeat_stands_alone_when_no_other_rank_measured_that_epoch(tmp_path):
    job = tmp_path / "job"
    process = dead_process()
    path = shard(job, 0, "running", [epoch_row(0, 100.0)], [device_row(0, 0, GPU_A, 100.0)], process=process)
    beat(path, process, 1, 40.0)
    shard(job, 1, "complete", [epoch_row(0, 150.0)], [device_row(0, 1, GPU_B, 150.0)])
    run = load_run(job)
    train = {r["epoch"]: r for r in run.epochs}
    assert train[1]["gpu_kwh"] == pytest.approx(40.0 * J) and train[1]["status"] == "interrupted"
    assert (
        train[1]["notes"] == "r0: killed: the energy up to the last heartbeat;no row from r1@node-a (its run: complete)"
    )
    assert run.info["status"] == "killed"


def test_a_rank_on_another_host_is_killed_once_the_reader_sees_its_heartbeat_stand_still(tmp_path, monkeypatch):
    # no wall clock of another host is compared with the reader's: only the reader's own clock, over time
    clock = FakeClock()
    monkeypatch.setattr(liveness, "OBSERVER", liveness.Observer(clock))
    elsewhere = {"host": "node-b-not-this-host", "pid": 4242, "start_ticks": 1, "uuid": "b1"}
    job = tmp_path / "job"
    three_epochs_rank0(job)
    path = killed_rank1(job, process=elsewhere, age_s=liveness.STALE_HEARTBEAT_S + 30)  # its clock is behind
    run = load_run(job)
    assert run.info["status"] == "running"  # looked at once: it may still be working
    assert [(s["rank"], s["status"]) for s in run.info["shards"]] == [(0, "complete"), (1, "running")]
    train = {r["epoch"]: r for r in run.epochs}
    assert train[1]["gpu_kwh"] == pytest.approx(100.0 * J)  # no heartbeat row while it runs
    assert train[1]["notes"] == "no row from r1@node-a (its run: still running: not this far yet)"
    clock.advance(liveness.STALE_HEARTBEAT_S / 2)
    beat(path, elsewhere, 1, 95.0, age_s=3600)  # it beat again: alive, however far its clock is off
    clock.advance(liveness.STALE_HEARTBEAT_S / 2 + 1)
    assert load_run(job).info["status"] == "running"
    clock.advance(liveness.STALE_HEARTBEAT_S + 1)  # and then stood still for the whole window
    assert load_run(job).info["status"] == "killed"


def test_a_rank_killed_before_its_first_heartbeat_is_killed_from_run_json(tmp_path):
    job = tmp_path / "job"
    three_epochs_rank0(job)
    path = killed_rank1(job)
    (path / liveness.HEARTBEAT_JSON).unlink()
    run = load_run(job)
    assert run.info["status"] == "killed"
    assert [r["gpu_kwh"] for r in run.epochs] == pytest.approx([250 * J, 100 * J, 100 * J])


def test_report_shows_the_killed_job_and_its_interrupted_row(tmp_path, capsys):
    job = tmp_path / "logs" / "job"
    three_epochs_rank0(job)
    killed_rank1(job)
    assert [r.info["status"] for r in load_runs(tmp_path / "logs")] == ["killed"]
    assert cli.main(["report", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "killed" in out and "interrupted" in out


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({"complete"}, "complete"),
        ({"complete", "killed"}, "killed"),
        ({"running", "killed"}, "running"),
        ({"complete", "interrupted"}, "interrupted"),
        ({"interrupted", "killed"}, "killed"),
    ],
)
def test_the_job_status_from_its_ranks(statuses, expected):
    assert job_status(statuses) == expected
