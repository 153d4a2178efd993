"""Who measures what in a distributed job, the merge of its ranks' rows, and jobs merged by their id."""

from __future__ import annotations

import pytest

from tests.helpers import PATIENT
from tracker import ConfigurationError, EnergyTracker, load_run, load_runs
from tracker.cli import main
from tracker.job.placement import Assignment, Launch, assign, detect, job_dir_name, shard_name
from tracker.logs.merge import Shard, keep_once, merge
from tracker.testing import FakeSensor, steady

TORCHRUN = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}


def test_detect_reads_the_launchers_variables():
    assert detect({}) == Launch()
    assert detect({**TORCHRUN, "TORCHELASTIC_RUN_ID": "abc"}) == Launch(3, 1, 4, 2, "abc", "TORCHELASTIC_RUN_ID")
    # without LOCAL_*, the node is unknown: each rank measures its node's CPU and RAM, the merge keeps one per machine
    assert detect({"RANK": "1", "WORLD_SIZE": "2"}) == Launch(1, 0, 2, 1, node_known=False)
    assert detect({"RANK": "3", "WORLD_SIZE": "4", "SLURM_LOCALID": "1"}) == Launch(3, 1, 4, 2)
    assert detect({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "2"}).restart == 2
    deepspeed = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_SIZE": "4", "CROSS_RANK": "1"}
    assert detect(deepspeed) == Launch(5, 1, 8, 4)
    # torchrun's default rendezvous id names no job; the scheduler's does
    assert detect({**TORCHRUN, "TORCHELASTIC_RUN_ID": "none", "SLURM_JOB_ID": "77"}).job_id == "77"
    assert detect({"SLURM_ARRAY_JOB_ID": "5", "SLURM_JOB_ID": "6"}).job_id == "5"  # an array's tasks share it
    assert detect({"SLURM_JOB_ID": "6"}, job_id="mine") == Launch(job_id="mine", job_source="given")


@pytest.mark.parametrize(
    ("environ", "wrong"),
    [({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x'"), ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2")],
)
def test_bad_launcher_variables_are_named(environ, wrong):
    with pytest.raises(ConfigurationError, match=wrong):
        detect(environ)


def test_assign_cpu_and_ram_to_local_rank_zero_and_gpus_to_whoever_sees_them():
    kinds = ("gpu", "cpu", "ram")
    assert assign(kinds, 0, 1) == Assignment(kinds, None)  # alone: everything
    assert assign(kinds, 0, 4) == Assignment(kinds, None)
    assert assign(kinds, 2, 4) == Assignment(("gpu",), None)  # every GPU it sees, duplicates dropped later
    assert assign(kinds, 2, 4, own="GPU-2") == Assignment(("gpu",), ("GPU-2",))
    assert assign(kinds, 2, 4, own=2, gpu_devices=[0, 1]) == Assignment(("gpu",), (0, 1))  # named GPUs win
    assert assign(("cpu",), 1, 2) == Assignment((), None)  # measures nothing


def test_job_directory_names_need_no_collective():
    launch = Launch(1, 1, 2, 2, "3f2a/b", "TORCHELASTIC_RUN_ID")
    assert job_dir_name(launch, None, "h", 99) == "torchrun-3f2a_b"
    assert job_dir_name(Launch(job_id="12", job_source="SLURM_JOB_ID"), None, "h", 99) == "slurm-12"
    assert job_dir_name(launch, "baseline", "h", 99) == "baseline"
    assert job_dir_name(Launch(1, 1, 2, 2), None, "node 1", 99) == "job-node_1-99"  # the node's launcher
    assert shard_name("gpu-node.3", 5) == "gpu-node.3-r5"


def device(rank, sensor, kind="gpu", uuid="", host="a", kwh=1.0):
    return {
        "epoch": 0,
        "phase": "train",
        "host": host,
        "rank": rank,
        "sensor": sensor,
        "kind": kind,
        "uuid": uuid,
        "energy_kwh": kwh,
        "method": "energy_counter",
    }


def test_keep_once_keeps_the_lowest_ranks_row_of_each_device():
    rows = [
        device(1, "gpu:0", uuid="U0"),
        device(1, "gpu:1", uuid="U1"),
        device(0, "gpu:0", uuid="U0"),
        device(0, "cpu", "cpu"),
        device(2, "cpu", "cpu", host="b"),
        device(3, "gpu:0", uuid="U3", host="b"),
    ]
    kept, dropped = keep_once(rows)
    assert [(d["rank"], d["sensor"]) for d in kept] == [
        (1, "gpu:1"),
        (0, "gpu:0"),
        (0, "cpu"),
        (2, "cpu"),
        (3, "gpu:0"),
    ]
    assert dropped == [rows[0]]


def epoch_row(rank_energy, status="complete", samples=4, epoch=0, end="2026-01-01T00:00:10"):
    gpu, cpu = rank_energy
    return {
        "epoch": epoch,
        "phase": "train",
        "status": status,
        "start_utc": "2026-01-01T00:00:00",
        "end_utc": end,
        "duration_s": 10.0,
        "samples": samples,
        "gpu_kwh": gpu,
        "cpu_kwh": cpu,
        "ram_kwh": 0.0,
        "energy_kwh": gpu + cpu,
        "energy_kwh_low": 0.9 * (gpu + cpu),
        "energy_kwh_high": 1.1 * (gpu + cpu),
        "pue": 1.0,
        "co2_kg": 0.4 * (gpu + cpu),
        "co2_kg_low": 0.36 * (gpu + cpu),
        "co2_kg_high": 0.44 * (gpu + cpu),
        "gpu_method": "energy_counter",
        "cpu_method": "rapl",
        "ram_method": "absent",
        "cumulative_energy_kwh": gpu + cpu,
        "notes": "",
        "gap_s": 0.0,
        "loss": rank_energy[0],
    }


def shard(rank, gpu, cpu, devices, status="complete", **row):
    return Shard(
        f"a-r{rank}",
        {"host": "a", "status": status, "launch": {"rank": rank, "world_size": 2}},
        [epoch_row((gpu, cpu), **row)],
        devices,
    )


def test_merge_counts_each_device_once_and_scales_co2_with_the_energy_kept():
    # both ranks see both GPUs (1 and 2 kWh); rank 0 alone measures the CPU (0.5 kWh)
    zero = shard(
        0,
        3.0,
        0.5,
        [device(0, "gpu:0", uuid="U0"), device(0, "gpu:1", uuid="U1", kwh=2.0), device(0, "cpu", "cpu", kwh=0.5)],
    )
    one = shard(1, 3.0, 0.0, [device(1, "gpu:0", uuid="U0"), device(1, "gpu:1", uuid="U1", kwh=2.0)])
    info, (row,), devices = merge("job", [zero, one])
    assert (row["gpu_kwh"], row["cpu_kwh"], row["energy_kwh"]) == (3.0, 0.5, 3.5)
    assert row["co2_kg"] == pytest.approx(0.4 * 3.5) and row["energy_kwh_high"] == pytest.approx(1.1 * 3.5)
    assert row["cumulative_energy_kwh"] == 3.5 and row["samples"] == 8 and row["status"] == "complete"
    assert row["run"] == "job" and row["loss"] == 3.0  # the lowest rank's metrics
    assert [(d["rank"], d["sensor"]) for d in devices] == [(0, "gpu:0"), (0, "gpu:1"), (0, "cpu")]
    assert info["status"] == "complete" and info["missing_ranks"] == [] and info["totals"]["energy_kwh"] == 3.5


def test_merge_says_which_rank_has_no_row_and_which_never_started():
    zero = shard(0, 1.0, 0.0, [device(0, "gpu:0", uuid="U0")])
    zero.epochs.append(epoch_row((1.0, 0.0), epoch=1, end="2026-01-01T00:00:20"))
    one = shard(1, 1.0, 0.0, [device(1, "gpu:1", uuid="U1")], status="running")
    info, rows, _ = merge("job", [zero, one])
    assert [(r["epoch"], r["status"]) for r in rows] == [(0, "complete"), (1, "interrupted")]
    assert rows[1]["notes"] == "no row from r1@a (its run: still running: not this far yet)"
    # the lowest rank gone: the GPU it shared with rank 1 is still counted, from rank 1's row
    one.epochs.append(epoch_row((1.0, 0.0), epoch=1, end="2026-01-01T00:00:20"))
    one.devices.append({**device(1, "gpu:0", uuid="U0"), "epoch": 1})
    zero.epochs.pop()
    _, rows, devices = merge("job", [zero, one])
    assert rows[1]["gpu_kwh"] == 1.0 and rows[1]["notes"] == "no row from r0@a (its run: complete)"
    assert [(d["epoch"], d["rank"], d["uuid"]) for d in devices][-1] == (1, 1, "U0")
    zero.info["launch"]["world_size"] = 3
    info, _, _ = merge("job", [zero])
    assert info["missing_ranks"] == [1, 2] and info["status"] == "interrupted"


def test_merge_waits_for_the_device_rows_of_a_row_caught_between_its_two_writes():
    # rank 1 has appended its epochs.csv row but not yet its devices.csv rows: counting the row now
    # would count the GPUs that rank 0 already measured a second time
    zero = shard(0, 3.0, 0.5, [device(0, "gpu:0", uuid="U0", kwh=3.0), device(0, "cpu", "cpu", kwh=0.5)])
    one = shard(1, 3.0, 0.0, [], status="running")
    _, (row,), devices = merge("job", [zero, one])
    assert row["energy_kwh"] == 3.5 and [d["rank"] for d in devices] == [0, 0]
    assert row["notes"] == "no row from r1@a (its run: still running: not this far yet)"
    one.devices.append(device(1, "gpu:0", uuid="U0", kwh=3.0))  # the second write lands
    _, (row,), _ = merge("job", [zero, one])
    assert row["energy_kwh"] == 3.5
    assert row["notes"] == "1 device shares left out: the same device as another rank's row (the lowest rank's kept)"


def run_on(host, tmp_path, monkeypatch, job="4242"):
    monkeypatch.setenv("SLURM_JOB_ID", job)
    sensors = [FakeSensor("gpu:0", "gpu", steady(100.0)), FakeSensor("cpu", "cpu", steady(20.0), method="rapl")]
    with EnergyTracker(tmp_path, sensors=sensors, host=host, carbon_intensity_g_per_kwh=300.0, **PATIENT) as energy:
        for epoch in range(2):
            with energy.epoch(epoch):
                pass
    return energy


def test_lone_runs_sharing_a_job_id_stay_runs_of_their_own_in_the_report(tmp_path, monkeypatch, capsys):
    # not provably ranks of one attempt (each is alone in its world): never merged, nothing dropped
    runs = [run_on("node-a", tmp_path, monkeypatch), run_on("node-b", tmp_path, monkeypatch)]
    runs.append(run_on("node-c", tmp_path, monkeypatch, job="other"))
    assert len(load_runs(tmp_path)) == 3  # each on disk as written
    assert main(["report", str(tmp_path), "--format", "json"]) == 0
    import json

    reported = {r["name"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert sorted(reported) == sorted(e.run_dir.name for e in runs)
    for energy in runs:
        written = load_run(energy.run_dir).epochs[-1]["cumulative_energy_kwh"]
        assert reported[energy.run_dir.name]["totals"]["energy_kwh"] == pytest.approx(written)


def test_a_state_saved_by_rank_0_resumes_rank_1_in_its_own_shard(tmp_path, monkeypatch):
    # A Lightning checkpoint holds rank 0's state; every rank loads it. Rank 1 goes on in its own shard beside it.
    env = {"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "r"}
    states = {}
    for rank in (0, 1):
        for name, value in {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}.items():
            monkeypatch.setenv(name, value)
        sensors = [FakeSensor(f"gpu:{rank}", "gpu", steady(100.0))]
        with EnergyTracker(tmp_path, sensors=sensors, host="h", carbon_intensity_g_per_kwh=1.0, **PATIENT) as first:
            with first.epoch(0):
                pass
        states[rank] = first.state()
    again = EnergyTracker(tmp_path, sensors=[FakeSensor("gpu:1", "gpu", steady(100.0))], host="h",
                          carbon_intensity_g_per_kwh=1.0, **PATIENT)  # fmt: skip
    again.resume(states[0])  # rank 0's state, rank 1's tracker
    with again:
        with again.epoch(1):
            pass
    assert again.run_dir == tmp_path / "torchrun-r" / "ranks" / "h-r1"
    assert [r["epoch"] for r in load_run(again.run_dir).epochs if r["phase"] == "train"] == [0, 1]
    assert [r["epoch"] for r in load_run(tmp_path / "torchrun-r" / "ranks" / "h-r0").epochs
            if r["phase"] == "train"] == [0]  # fmt: skip


def test_a_resumed_shard_continues_its_job(tmp_path, monkeypatch):
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "r"}.items():
        monkeypatch.setenv(name, value)
    sensors = [FakeSensor("gpu:0", "gpu", steady(100.0))]
    with EnergyTracker(tmp_path, sensors=sensors, host="h", carbon_intensity_g_per_kwh=1.0, **PATIENT) as first:
        with first.epoch(0):
            pass
    again = EnergyTracker(tmp_path, sensors=[FakeSensor("gpu:0", "gpu", steady(100.0))], host="h",
                          carbon_intensity_g_per_kwh=1.0, **PATIENT)  # fmt: skip
    again.resume(first.state())
    with again:
        with again.epoch(1):
            pass
    assert again.run_dir == first.run_dir == tmp_path / "torchrun-r" / "ranks" / "h-r1"
    assert again.job_dir == first.job_dir
    assert [r["epoch"] for r in load_run(first.job_dir).epochs if r["phase"] == "train"] == [0, 1]


def test_job_rows_follow_the_job_as_the_merge_counts_it(tmp_path, monkeypatch):
    # both ranks see both GPUs: the rows followed as they come drop rank 1's duplicates, as the full merge does
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "follow")
    trackers = []
    for rank in (0, 1):
        for name, value in {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(name, value)
        sensors = [FakeSensor(f"gpu:{i}", "gpu", steady(100.0 + 50 * i), info={"uuid": f"U{i}"}) for i in (0, 1)]
        trackers.append(
            EnergyTracker(tmp_path, sensors=sensors, host="h", carbon_intensity_g_per_kwh=1.0, **PATIENT).start()
        )
    for epoch in range(3):
        for energy in trackers:
            energy.begin_epoch(epoch)
        for energy in trackers:
            energy.end()
        followed = trackers[0].job_rows()
        merged = [r for r in load_run(trackers[0].job_dir).epochs]
        assert [(r["epoch"], r["phase"]) for r in followed] == [(r["epoch"], r["phase"]) for r in merged]
        for mine, theirs in zip(followed, merged, strict=True):
            assert mine["energy_kwh"] == pytest.approx(theirs["energy_kwh"], rel=1e-9)
            assert mine["gpu_power_mean_w"] == pytest.approx(theirs["gpu_power_mean_w"], rel=1e-9)
    for energy in trackers:
        energy.stop()


def test_a_rank_stopping_while_another_merges_leaves_a_mark_and_the_merge_is_done_again(tmp_path, monkeypatch):
    # no rank's stop waits behind the others' merges; the rank that merges merges again for the latecomer
    import fcntl

    from tracker.logs.jobfiles import write_job

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "marks")
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    sensors = [FakeSensor("gpu:0", "gpu", steady(100.0), info={"uuid": "U0"})]
    with EnergyTracker(tmp_path, sensors=sensors, host="h", carbon_intensity_g_per_kwh=1.0, **PATIENT) as energy:
        with energy.epoch(0):
            pass
    job = energy.job_dir
    (job / "epochs.csv").unlink()
    with open(job / ".merge.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another rank is merging
        write_job(job)  # returns at once
        assert (job / ".merge.pending").exists() and not (job / "epochs.csv").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    write_job(job)  # the merging rank's next look: the mark is taken, the merge done
    assert not (job / ".merge.pending").exists()
    assert [r["epoch"] for r in load_run(job).epochs if r["phase"] == "train"] == [0]
    assert (job / "epochs.csv").exists()
