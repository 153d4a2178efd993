"""``EnergyTracker`` under real ``torchrun``: one job directory, each GPU once, CPU and RAM once per node.

Every rank runs ``tests/distributed/rank_script.py``, a plain loop whose fake NVML records every
counter reading with its time, so each GPU's true energy over the interval its measuring rank read
it is known exactly (steady power × the span of that rank's readings).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tracker import load_run

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
from launch import environment, finish, free_port, torchrun  # noqa: E402

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "distributed" / "rank_script.py"
GPU_W = (100.0, 150.0, 200.0, 250.0)
RAM_W = 5.0
EPOCHS = 3


def the_job(out: Path):
    jobs = [p for p in (out / "logs").iterdir() if p.is_dir()]
    assert len(jobs) == 1, jobs  # one job directory, whatever the number of ranks
    return load_run(jobs[0])


def reads(out: Path) -> dict[tuple[str, int], list]:
    found = {}
    for path in out.glob("reads-*.json"):
        host, rank = path.stem.removeprefix("reads-").rsplit("-r", 1)
        found[(host, int(rank))] = json.loads(path.read_text())
    return found


def true_gpu_j(run, out: Path) -> float:
    """Each GPU's steady power times the span of the readings of the rank whose rows were kept."""
    by_rank = reads(out)
    total = 0.0
    for uuid in {d["uuid"] for d in run.devices if d["kind"] == "gpu"}:
        (host, rank), *_ = {(d["host"], d["rank"]) for d in run.devices if d["uuid"] == uuid}
        times = [t for u, t, _ in by_rank[(host, rank)] if u == uuid]
        watts = GPU_W[int(uuid.rsplit("-", 1)[1], 16) % 4]
        total += watts * (max(times) - min(times))
    return total


def rows_of(run, epoch, phase="train"):
    return [d for d in run.devices if (d["epoch"], d["phase"]) == (epoch, phase)]


def test_process_scope_under_torchrun_counts_every_rank_of_the_node(tmp_path):
    # cpu_scope="process" takes the tree's share of the CPU time: under torchrun its root must be the
    # launcher, whose children are every rank of the node, not the measuring rank alone (a share of 1/N).
    args = ("--gpus", "1", "--epochs", "2", "--epoch-s", "0.4", "--cpu-scope", "process", "--burn")
    finish(torchrun(tmp_path, "--standalone", "--nproc-per-node=2", script_args=args))
    run = the_job(tmp_path)
    ranks = [json.loads((tmp_path / f"process-r{rank}.json").read_text()) for rank in (0, 1)]
    (launcher,) = {r["ppid"] for r in ranks}  # torchrun's agent started both ranks
    shard = json.loads((run.path / "ranks" / "node-a-r0" / "run.json").read_text())
    (cpu,) = [s for s in shard["sensors"] if s["kind"] == "cpu"]
    assert cpu["info"]["cpu_scope"] == "process" and cpu["info"]["cpu_scope_root_pid"] == launcher
    assert launcher not in {r["pid"] for r in ranks}
    cpu_rows = [r for r in run.epochs if r["phase"] == "train"]
    assert [r["cpu_scope"] for r in cpu_rows] == ["process", "process"]
    assert all(r["cpu_kwh"] > 0 for r in cpu_rows)  # the ranks' busy CPU time reached the rows


@pytest.mark.parametrize(("processes", "own"), [(2, False), (2, True), (4, False), (4, True)])
def test_one_node_each_gpu_once_cpu_and_ram_once(tmp_path, processes, own):
    gpus = processes if own else 2  # each rank its own GPU, or every rank seeing the node's two
    args = ("--gpus", str(gpus), "--epochs", str(EPOCHS), "--epoch-s", "0.2", *(("--own",) if own else ()))
    finish(torchrun(tmp_path, "--standalone", f"--nproc-per-node={processes}", script_args=args))
    run = the_job(tmp_path)
    assert run.info["status"] == "complete" and len(run.info["shards"]) == processes
    train = [r for r in run.epochs if r["phase"] == "train"]
    assert [(r["epoch"], r["status"], r["samples"]) for r in train] == [
        (e, "complete", 8 * processes) for e in range(3)
    ]
    for epoch in range(EPOCHS):
        devices = rows_of(run, epoch)
        gpu_rows = sorted((d["uuid"][-1], d["rank"]) for d in devices if d["kind"] == "gpu")
        expected = [(str(i), i if own else 0) for i in range(gpus)]  # its own rank, or the lowest that sees it
        assert gpu_rows == expected
        assert sorted((d["kind"], d["rank"]) for d in devices if d["kind"] != "gpu") == [("cpu", 0), ("ram", 0)]
    measured_j = sum(r["gpu_kwh"] for r in run.epochs) * 3.6e6
    assert measured_j == pytest.approx(true_gpu_j(run, tmp_path), rel=5e-3)
    # the job-level CSVs that each rank's stop wrote hold the same rows the reader merges
    assert len((run.path / "epochs.csv").read_text().splitlines()) == len(run.epochs) + 1


def test_two_nodes_four_gpus_counted_once_cpu_and_ram_once_per_node(tmp_path):
    port = str(free_port())
    common = (
        "--nnodes=2",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "--rdzv-id=job-2n",
    )
    args = ("--gpus", "2", "--group", "--epochs", str(EPOCHS), "--epoch-s", "0.2")
    nodes = [
        torchrun(tmp_path, *common, f"--node-rank={n}", script_args=args, ENERGY_TEST_HOST=host)
        for n, host in enumerate(("node-a", "node-b"))
    ]
    for node in nodes:
        finish(node, timeout=180)
    run = the_job(tmp_path)
    assert run.name == "torchrun-job-2n" and run.info["job_id"] == "job-2n"
    assert sorted((s["host"], s["rank"]) for s in run.info["shards"]) == [
        ("node-a", 0),
        ("node-a", 1),
        ("node-b", 2),
        ("node-b", 3),
    ]
    for epoch in range(EPOCHS):
        devices = rows_of(run, epoch)
        assert len({d["uuid"] for d in devices if d["kind"] == "gpu"}) == 4
        assert len([d for d in devices if d["kind"] == "gpu"]) == 4
        node_wide = sorted((d["kind"], d["host"], d["rank"]) for d in devices if d["kind"] != "gpu")
        assert node_wide == [("cpu", "node-a", 0), ("cpu", "node-b", 2), ("ram", "node-a", 0), ("ram", "node-b", 2)]
    measured_j = sum(r["gpu_kwh"] for r in run.epochs) * 3.6e6
    assert measured_j == pytest.approx(true_gpu_j(run, tmp_path), rel=5e-3)
    # RAM at a steady 5 W per node, measured by one rank per node: twice each row's time, not four times
    for row in run.epochs:
        per_node = [
            d["energy_kwh"] * 3.6e6 / RAM_W for d in rows_of(run, row["epoch"], row["phase"]) if d["kind"] == "ram"
        ]
        assert len(per_node) == 2
        assert row["ram_kwh"] * 3.6e6 == pytest.approx(sum(per_node) * RAM_W)


def spawn_ranks(out: Path, world: int, *script_args: str) -> list[subprocess.Popen]:
    """The ranks of one job started by hand, as a launcher would (no agent to stop the others)."""
    port = str(free_port())
    return [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(out), *script_args],
            env=environment(
                RANK=str(r),
                LOCAL_RANK=str(r),
                WORLD_SIZE=str(world),
                LOCAL_WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
                TORCHELASTIC_RUN_ID="killed-job",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]


def test_a_rank_killed_mid_epoch_hangs_no_one_and_the_rows_count_its_epoch_so_far(tmp_path):
    args = ("--own", "--gpus", "2", "--epochs", str(EPOCHS), "--kill-rank", "1", "--interval-s", "0.1")
    ranks = spawn_ranks(tmp_path, 2, *args)
    finish(ranks[0], timeout=60)  # rank 0 finishes every epoch (a hang fails here): it never waits for rank 1
    ranks[1].wait(timeout=60)
    assert ranks[1].returncode == -signal.SIGKILL
    run = the_job(tmp_path)
    train = {r["epoch"]: r for r in run.epochs if r["phase"] == "train"}
    assert train[0]["status"] == "complete" and "no row from" not in train[0]["notes"]
    assert [d["rank"] for d in rows_of(run, 0) if d["kind"] == "gpu"] == [0, 1]
    # rank 1 died in epoch 1: that epoch counts its GPU up to its last heartbeat, and says so
    shard = next(p for p in (run.path / "ranks").iterdir() if p.name.endswith("-r1"))
    # the first reader wrote its heartbeat's open epoch back into its shard's epochs.csv, and removed the heartbeat
    assert not (shard / "heartbeat.json").exists()
    (beat,) = [r for r in load_run(shard).epochs if r["phase"] == "train" and r["status"] == "interrupted"]
    rank0_j = [d["energy_kwh"] * 3.6e6 for d in rows_of(run, 1) if d["kind"] == "gpu"]
    assert [d["rank"] for d in rows_of(run, 1) if d["kind"] == "gpu"] == [0]  # a heartbeat has no device rows
    assert train[1]["gpu_kwh"] * 3.6e6 == pytest.approx(rank0_j[0] + beat["gpu_kwh"] * 3.6e6, rel=1e-9)
    # rank 0's 8 samples: rank 1's row, recovered from its heartbeat and written back into its shard, declares
    # the 8 it planned when its epoch opened, not what it processed; its energy counts, its samples do not
    assert (train[1]["status"], train[1]["samples"]) == ("interrupted", 8)
    assert "r1: killed: the energy up to the last heartbeat" in train[1]["notes"]
    assert train[1]["energy_kwh_high"] >= train[1]["energy_kwh"] >= train[1]["energy_kwh_low"]
    # its GPU's steady 150 W over the epoch's time so far, and no more than it drew from start() to its kill
    # the heartbeat books energy up to the sampler's last reading, a tick or a few (0.1 s each) before it was written
    beat_j = beat["gpu_kwh"] * 3.6e6
    assert GPU_W[1] * (beat["duration_s"] - 0.5) <= beat_j <= GPU_W[1] * beat["duration_s"] * 1.005
    assert beat["duration_s"] > 1.0  # the kill came after a heartbeat 1 s or more into epoch 1
    times = [t for _, t, _ in reads(tmp_path)[("node-a", 1)]]
    booked_j = (sum(d["energy_kwh"] for d in run.devices if d["rank"] == 1) + beat["gpu_kwh"]) * 3.6e6
    assert GPU_W[1] * (max(times) - min(times) + 0.2) >= booked_j > GPU_W[1] * (beat["duration_s"] + 0.2)
    # epoch 2: rank 1 gone; the job: killed, its rank 1 shard too
    assert train[2]["status"] == "interrupted"
    assert "no row from r1@node-a (its run: killed)" in train[2]["notes"]
    assert [d["rank"] for d in rows_of(run, 2) if d["kind"] == "gpu"] == [0]
    assert run.info["status"] == "killed"
    assert {s["rank"]: s["status"] for s in run.info["shards"]} == {0: "complete", 1: "killed"}
    assert run.info["totals"]["gpu_kwh"] == pytest.approx(sum(r["gpu_kwh"] for r in run.epochs))


def test_the_torchrun_example_writes_one_job_directory(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "torchrun_ddp.py"
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(example),
               "--epochs", "2", "--log-dir", str(logs)]  # fmt: skip
    output = finish(subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=tmp_path), 120)  # fmt: skip
    assert "2 writer(s)" in output
    (job,) = logs.iterdir()
    run = load_run(job)
    assert [(r["epoch"], r["status"]) for r in run.epochs if r["phase"] == "train"] == [
        (0, "complete"),
        (1, "complete"),
    ]
    assert [r["samples"] for r in run.epochs if r["phase"] == "train"] == [8192, 8192]  # both ranks' halves
