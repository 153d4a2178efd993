"""Job identity and merging (issue 20, items 1-4): merging never drops energy it cannot prove was counted elsewhere.

Each test builds what the issue describes with real trackers (fake sensors) or hand-written shards,
and compares the merged figure with the sum of what each writer measured on its own. On bf1c16a:
a sweep of 3 lone runs under one SLURM_JOB_ID read -66.6 %; a 2-task array on one node lost half
its CPU; a second job in an existing directory -50 % and ``complete``; an elastic restart dropped the
failed attempt and read ``killed``; a rank without LOCAL_RANK on a second node measured no CPU or
RAM; two nodes with one hostname lost one node's CPU; a live rank on a host 90 s behind read
``killed``; a rank with no sensor never heartbeat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.cli import main
from tracker.logs import liveness
from tracker.testing import FakeSensor, steady

RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID",
             "TORCHELASTIC_RESTART_COUNT", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_LOCALID")  # fmt: skip


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for name in RANK_VARS:
        monkeypatch.delenv(name, raising=False)


def total_kwh(path: Path) -> float:
    return sum(r["energy_kwh"] for r in load_run(path).epochs)


def reported_kwh(log_dir: Path, capsys) -> dict[str, float]:
    capsys.readouterr()
    assert main(["report", str(log_dir), "--format", "json"]) == 0
    return {r["name"]: r["totals"]["energy_kwh"] for r in json.loads(capsys.readouterr().out)["runs"]}


def lone_run(log_dir: Path, cpu: str = "cpu", epochs: int = 2) -> Path:
    sensors = [FakeSensor("gpu:0", "gpu", steady(100.0)), FakeSensor(cpu, "cpu", steady(20.0), method="rapl")]
    with EnergyTracker(log_dir, sensors=sensors, host="node-a", carbon_intensity_g_per_kwh=300.0, **PATIENT) as energy:
        for epoch in range(epochs):
            with energy.epoch(epoch):
                time.sleep(0.05)
    return energy.run_dir


def test_item1_a_sweep_of_lone_runs_in_one_slurm_allocation_is_three_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    runs = [lone_run(tmp_path) for _ in range(3)]
    truth = sum(total_kwh(r) for r in runs)
    reported = reported_kwh(tmp_path, capsys)
    assert sorted(reported) == sorted(r.name for r in runs)  # bf1c16a: one "job-77" holding a third (-66.6 %)
    assert sum(reported.values()) == pytest.approx(truth)


def test_item1_a_two_task_array_on_one_node_keeps_each_task_s_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "5")
    runs = [lone_run(tmp_path), lone_run(tmp_path)]  # both see the node's CPU: each task's run counts it
    truth = sum(total_kwh(r) for r in runs)
    assert sum(reported_kwh(tmp_path, capsys).values()) == pytest.approx(truth)  # bf1c16a: one task's CPU lost


def rank_env(monkeypatch, rank: int, world: int = 2, **extra: str) -> None:
    values = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), **extra}
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def job(log_dir: Path, monkeypatch, epochs: int = 2, run_name: str | None = None, **extra: str) -> list[EnergyTracker]:
    """The two ranks of one torchrun job on one node, each on a GPU of its own."""
    trackers = []
    for rank in (0, 1):
        rank_env(monkeypatch, rank, **extra)
        sensors = [FakeSensor(f"gpu:{rank}", "gpu", steady(100.0 + 50 * rank), info={"uuid": f"GPU-{rank}"})]
        options = {"host": "node-a", "carbon_intensity_g_per_kwh": 1.0, "run_name": run_name}
        trackers.append(EnergyTracker(log_dir, sensors=sensors, **options, **PATIENT))
    for energy in trackers:
        energy.start()
    for epoch in range(epochs):
        for energy in trackers:
            energy.begin_epoch(epoch)
        time.sleep(0.05)
        for energy in trackers:
            energy.end()
    for energy in trackers:
        energy.stop()
    return trackers


def shard_kwh(job_dir: Path) -> float:
    return sum(total_kwh(p) for p in (job_dir / "ranks").iterdir())


@pytest.mark.parametrize("second", [{"TORCHELASTIC_RUN_ID": "exp/1"}, {"TORCHELASTIC_RUN_ID": "exp_1"}])
def test_item2_a_second_job_in_an_existing_directory_loses_nothing_and_says_so(tmp_path, monkeypatch, second):
    first = job(tmp_path, monkeypatch, TORCHELASTIC_RUN_ID="exp/1")
    again = job(tmp_path, monkeypatch, **second)
    assert first[0].job_dir == again[0].job_dir  # ids equal once sanitised: one directory
    run = load_run(first[0].job_dir)
    truth = shard_kwh(first[0].job_dir)
    assert run.info["totals"]["energy_kwh"] == pytest.approx(truth)  # bf1c16a: -50 %
    assert sum(r["energy_kwh"] for r in run.epochs) == pytest.approx(truth)
    assert len(run.info["attempts"]) == 2 and run.info["status"] == "complete"
    assert all("attempt" in r["notes"] and "counted whole" in r["notes"] for r in run.epochs)


def test_item2_the_same_run_name_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    trackers = [job(tmp_path, monkeypatch, run_name="baseline") for _ in range(2)]
    job_dir = trackers[0][0].job_dir
    assert trackers[1][0].job_dir == job_dir == tmp_path / "baseline"
    assert load_run(job_dir).info["totals"]["energy_kwh"] == pytest.approx(shard_kwh(job_dir))  # bf1c16a: -50 %


KILLED_ATTEMPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from tracker import EnergyTracker
    from tracker.testing import FakeSensor, steady
    log_dir = sys.argv[1]
    trackers = []
    for rank in (0, 1):
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", TORCHELASTIC_RUN_ID="elastic",
                          TORCHELASTIC_RESTART_COUNT="0")
        sensors = [FakeSensor(f"gpu:{rank}", "gpu", steady(100.0 + 50 * rank), info={"uuid": f"GPU-{rank}"})]
        trackers.append(EnergyTracker(log_dir, sensors=sensors, host="node-a", interval_s=0.05,
                                      carbon_intensity_g_per_kwh=1.0).start())
    for energy in trackers:
        with energy.epoch(0):
            time.sleep(0.05)
        energy.begin_epoch(1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        beats = [energy.run_dir / "heartbeat.json" for energy in trackers]
        try:
            if all(json.loads(p.read_text())["open"][0]["duration_s"] > 0.2 for p in beats):
                break
        except (OSError, ValueError, IndexError, KeyError):
            pass
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)  # a rank failed: torchrun's agent ends the attempt
    """
)


def test_item3_an_elastic_restart_counts_every_attempt_and_reads_complete(tmp_path, monkeypatch):
    script = tmp_path / "attempt0.py"
    script.write_text(KILLED_ATTEMPT)
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, timeout=120, check=False)
    trackers = job(tmp_path, monkeypatch, epochs=3, TORCHELASTIC_RUN_ID="elastic", TORCHELASTIC_RESTART_COUNT="1")
    job_dir = trackers[0].job_dir
    truth = shard_kwh(job_dir)  # each shard read alone: the killed ones with their open epoch recovered
    run = load_run(job_dir)
    assert run.info["totals"]["energy_kwh"] == pytest.approx(truth)  # bf1c16a: the failed attempt dropped
    assert run.info["status"] == "complete"  # bf1c16a: killed
    assert [a["status"] for a in run.info["attempts"]] == ["killed", "complete"]
    assert any("killed" in r["notes"] for r in run.epochs if "restart 0" in r["notes"])


def test_item4_a_rank_without_local_rank_on_another_node_measures_its_node(tmp_path, monkeypatch):
    # srun or MPI: RANK and WORLD_SIZE only. Nobody measured node-b's RAM on bf1c16a.
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    trackers = []
    for rank, host in ((0, "node-a"), (1, "node-b")):
        for name, value in {"RANK": str(rank), "WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(name, value)
        trackers.append(EnergyTracker(tmp_path, measure=("ram",), ram_w=5.0, host=host, **PATIENT).start())
    for energy in trackers:
        with energy.epoch(0):
            time.sleep(0.05)
        energy.stop()
    run = load_run(trackers[0].job_dir)
    hosts = {d["host"] for d in run.devices if d["kind"] == "ram"}
    assert hosts == {"node-a", "node-b"}
    assert run.info["totals"]["ram_kwh"] == pytest.approx(shard_kwh(trackers[0].job_dir))


def test_item4_ranks_without_local_rank_on_one_node_count_its_ram_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "10")
    trackers = []
    for rank in (0, 1):
        for name, value in {"RANK": str(rank), "WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(name, value)
        trackers.append(EnergyTracker(tmp_path, measure=("ram",), ram_w=5.0, host="node-a", **PATIENT).start())
    for energy in trackers:
        with energy.epoch(0):
            time.sleep(0.05)
        energy.stop()
    run = load_run(trackers[0].job_dir)
    (kept,) = [d for d in run.devices if d["epoch"] == 0]  # both measured it; the merge keeps rank 0's
    assert kept["rank"] == 0


def hand_shard(job_dir: Path, rank: int, host: str, kernel: str, cpu_j: float, status: str = "complete",
               process: dict | None = None) -> Path:  # fmt: skip
    path = job_dir / "ranks" / f"{host}-r{rank}"
    path.mkdir(parents=True)
    kwh = cpu_j / 3.6e6
    process = process or {"host": host, "kernel": kernel, "pid": 1, "start_ticks": 1, "uuid": f"u{rank}"}
    info = {"status": status, "host": host, "launch": {"rank": rank, "world_size": 2}, "process": process,
            "start_utc": "2026-01-01T00:00:00+00:00", "end_utc": "2026-01-01T00:00:10+00:00",
            "sensors": [{"name": "rapl:package-0", "kind": "cpu", "info": {}}]}  # fmt: skip
    (path / "run.json").write_text(json.dumps(info))
    row = {
        "epoch": 0,
        "phase": "train",
        "status": "complete",
        "start_utc": "2026-01-01T00:00:00+00:00",
        "end_utc": "2026-01-01T00:00:10+00:00",
        "duration_s": 10.0,
        "gpu_kwh": 0.0,
        "cpu_kwh": kwh,
        "ram_kwh": 0.0,
        "energy_kwh": kwh,
        "co2_kg": kwh * 0.4,
        "pue": 1.0,
        "cpu_method": "rapl",
        "notes": "",
    }
    dev = {"epoch": 0, "phase": "train", "host": host, "rank": rank, "sensor": "rapl:package-0", "kind": "cpu",
           "uuid": "", "energy_kwh": kwh}  # fmt: skip
    for name, item in (("epochs.csv", row), ("devices.csv", dev)):
        (path / name).write_text(",".join(item) + "\n" + ",".join(str(v) for v in item.values()) + "\n")
    return path


def test_item4_two_nodes_with_one_hostname_keep_both_cpus(tmp_path):
    job_dir = tmp_path / "job"
    hand_shard(job_dir, 0, "node", "boot-a", 100.0)
    hand_shard(job_dir, 1, "node", "boot-b", 110.0).rename(job_dir / "ranks" / "node-r1-b")
    run = load_run(job_dir)
    assert run.info["totals"]["cpu_kwh"] == pytest.approx(210.0 / 3.6e6)  # bf1c16a: 100 J (-52 %)


def beat_file(path: Path, process: dict, seq: int, behind_s: float) -> None:
    stamp = (datetime.now(timezone.utc) - timedelta(seconds=behind_s)).isoformat()
    (path / liveness.HEARTBEAT_JSON).write_text(json.dumps({"process": process, "seq": seq, "time_utc": stamp}))


def test_item4_a_live_rank_on_a_host_90_s_behind_is_not_killed(tmp_path):
    job_dir = tmp_path / "job"
    hand_shard(job_dir, 0, "node-a", "boot-a", 100.0)
    process = {"host": "node-b-elsewhere", "kernel": "boot-b", "pid": 4242, "start_ticks": 1, "uuid": "live-b"}
    path = hand_shard(job_dir, 1, "node-b-elsewhere", "boot-b", 100.0, status="running", process=process)
    beat_file(path, process, 1, behind_s=90.0)
    assert load_run(job_dir).info["status"] == "running"  # bf1c16a: killed


def test_item4_a_killed_rank_on_a_host_an_hour_ahead_is_killed_once_seen_standing_still(tmp_path, monkeypatch):
    from tracker.testing import FakeClock

    clock = FakeClock()
    monkeypatch.setattr(liveness, "OBSERVER", liveness.Observer(clock))
    job_dir = tmp_path / "job"
    hand_shard(job_dir, 0, "node-a", "boot-a", 100.0)
    process = {"host": "node-b-elsewhere", "kernel": "boot-b", "pid": 4242, "start_ticks": 1, "uuid": "dead-b"}
    path = hand_shard(job_dir, 1, "node-b-elsewhere", "boot-b", 100.0, status="running", process=process)
    beat_file(path, process, 5, behind_s=-3600.0)
    assert load_run(job_dir).info["status"] == "running"
    clock.advance(liveness.STALE_HEARTBEAT_S + 1)
    assert load_run(job_dir).info["status"] == "killed"  # bf1c16a: running for an hour


def test_item4_a_rank_with_no_sensor_still_heartbeats(tmp_path, monkeypatch):
    rank_env(monkeypatch, 1, TORCHELASTIC_RUN_ID="quiet")
    with EnergyTracker(tmp_path, sensors=[], host="node-a", **PATIENT) as energy:
        deadline = time.monotonic() + 30
        beat = energy.run_dir / liveness.HEARTBEAT_JSON
        while not beat.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert beat.exists()  # bf1c16a: no reading, no heartbeat: on another host it could never be judged
        assert json.loads(beat.read_text())["process"]["uuid"]
