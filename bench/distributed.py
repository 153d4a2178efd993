"""Distributed bookkeeping: its per-epoch cost at 2 and 4 processes, and codecarbon run the same way.

``python bench/distributed.py [--processes 2,4] [--epochs N] [--epoch-s S]`` runs
``bench/distributed_worker.py`` under ``torchrun --standalone --nproc-per-node N`` for each tool:

- ``ours``: ``EnergyTracker`` as a rank of the job (a shard each, merged);
- ``ours-alone``: ``EnergyTracker(distributed=False)`` in every rank, what a tracker that ignores the
  job does;
- ``codecarbon``: ``OfflineEmissionsTracker`` in every rank, a task per epoch.

Every rank sees the node's two fake GPUs (200 W each). Prints a markdown table: the median cost of
an epoch's begin and end calls (ms, over every epoch of every rank), the slowest stop, the time to
read the job back (``load_run``, which merges the shards), and the job's GPU energy as each tool
counts it over the fakes' true energy (1.00 is right; N is every GPU counted by every rank).
Writes ``bench/results/<date>-<host>-distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.runner import FAKE_NVIDIA_SMI  # noqa: E402

TOOLS = ("ours", "ours-alone", "codecarbon")


def run_job(tool: str, processes: int, epochs: int, epoch_s: float) -> dict[str, Any]:
    """One torchrun job of ``processes`` ranks under ``tool``; its ranks' figures and the job's."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as temporary:
        out = Path(temporary)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
        env.update(PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
        env["PATH"] = f"{_dummy_smi(out)}{os.pathsep}{env.get('PATH', '')}"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   str(ROOT / "bench" / "distributed_worker.py"), str(out), "--tool", tool, "--epochs", str(epochs),
                   "--epoch-s", str(epoch_s)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=out)
        if done.returncode != 0:
            return {"error": done.stdout[-2000:] + done.stderr[-2000:]}
        ranks = [json.loads((out / f"{tool}-r{r}.json").read_text()) for r in range(processes)]
        return {**_figures(ranks), **_job_read(tool, out, ranks)}


def _dummy_smi(out: Path) -> Path:
    # codecarbon looks for a GPU only when `nvidia-smi --help` succeeds; the GPUs are the fake NVML.
    bin_dir = out / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    return bin_dir


def _figures(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    costs = [c for r in ranks for c in r["epoch_cost_s"]]
    return {
        "epoch_cost_ms_median": statistics.median(costs) * 1e3,
        "epoch_cost_ms_max": max(costs) * 1e3,
        "stop_ms_max": max(r["stop_s"] for r in ranks) * 1e3,
    }


def _job_read(tool: str, out: Path, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's GPU energy as the tool reports it, over the truth (the GPUs' power over rank 0's span)."""
    truth = ranks[0]["true_gpu_j"]
    if tool != "ours":
        return {"gpu_over_truth": sum(r["gpu_j"] for r in ranks) / truth, "read_ms": None, "writers": len(ranks)}
    from tracker import load_run

    (job,) = (out / "logs").iterdir()
    t0 = time.perf_counter()
    run = load_run(job)
    read_ms = (time.perf_counter() - t0) * 1e3
    gpu_j = sum(r["gpu_kwh"] for r in run.epochs) * 3.6e6
    return {"gpu_over_truth": gpu_j / truth, "read_ms": read_ms, "writers": len(run.info["shards"])}


def _markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| tool | processes | epoch begin+end, median ms | max ms | stop, slowest rank ms | read the job ms "
        "| GPU energy ÷ truth |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        tool, processes = key.rsplit("@", 1)
        if "error" in r:
            lines.append(f"| {tool} | {processes} | error | | | | |")
            continue
        read = f"{r['read_ms']:.1f}" if r["read_ms"] is not None else "–"
        lines.append(
            f"| {tool} | {processes} | {r['epoch_cost_ms_median']:.2f} | {r['epoch_cost_ms_max']:.1f} "
            f"| {r['stop_ms_max']:.0f} | {read} | {r['gpu_over_truth']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="2,4")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--epoch-s", type=float, default=0.5)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    results = {}
    for processes in (int(p) for p in args.processes.split(",")):
        for tool in args.tools.split(","):
            results[f"{tool}@{processes}"] = run_job(tool, processes, args.epochs, args.epoch_s)
    print(_markdown(results))
    stamp = datetime.now(timezone.utc)
    path = ROOT / "bench" / "results" / f"{stamp:%Y-%m-%d}-{platform.node()}-distributed.json"
    meta = {"when": stamp.isoformat(timespec="seconds"), "cpus": os.cpu_count(), "epochs": args.epochs,
            "epoch_s": args.epoch_s}  # fmt: skip
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwritten: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
