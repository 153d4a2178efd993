"""On a machine with an NVIDIA GPU: a real CUDA training loop under each tracker.

``python bench/gpu.py [--epochs N] [--steps N]`` runs ``bench/scenarios/cuda.py`` in a fresh process
per tracker (ABBA order, repeated), then prints and writes ``bench/results/<date>-<host>-gpu.json``:
throughput ÷ no tracker, each tool's GPU energy against ours, and our energy counter against the
integral of the power readings beside it. Without a CUDA GPU it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import fmt, table  # noqa: E402
from bench.runner import Job, abba, run_jobs, spread  # noqa: E402

TRACKERS = ("none", "ours-1s", "ours-0.1s", "codecarbon-15s", "codecarbon-1s", "carbontracker")


def cuda_device() -> str | None:
    """The first CUDA device's name, or ``None`` when torch sees no CUDA GPU."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _summary(order: list[tuple[int, str]], results: list[dict[str, Any]]) -> dict[str, Any]:
    tagged = [(n, r) for (_, n), r in zip(order, results, strict=True)]
    base = spread(r["steps_per_s"] for n, r in tagged if n == "none" and "error" not in r)["median"]
    power = [r["total_gpu_j"] / r["wall_s"] for n, r in tagged if n == "ours-0.1s" and r.get("total_gpu_j")]
    ours_w = spread(power)["median"]
    summary = {}
    for name in dict.fromkeys(n for _, n in order):
        mine = [r for n, r in tagged if n == name and "error" not in r]
        summary[name] = {
            "ratio": spread(r["steps_per_s"] / base for r in mine) if base else spread([]),
            "total_gpu_j": spread(r.get("total_gpu_j") for r in mine),
            "vs_ours": spread(r["total_gpu_j"] / r["wall_s"] / ours_w for r in mine if ours_w and r.get("total_gpu_j")),
            "integral_over_counter": spread(
                (r.get("counter_vs_integral") or {}).get("integral_over_counter") for r in mine
            ),
            "errors": [r["error"] for n, r in tagged if n == name and "error" in r],
        }
    return summary


def _markdown(summary: dict[str, Any]) -> str:
    rows = [
        [
            name,
            *(
                fmt(s[k], 1, d)
                for k, d in (("ratio", 4), ("total_gpu_j", 0), ("vs_ours", 3), ("integral_over_counter", 4))
            ),
        ]
        for name, s in summary.items()
    ]
    header = [
        "tracker",
        "throughput ÷ none",
        "GPU energy J (run)",
        "mean W ÷ ours-0.1s",
        "ours: power integral ÷ counter",
    ]
    return table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    device = cuda_device()
    if device is None:
        print("bench/gpu.py: no CUDA GPU visible to torch here; nothing to run (fake-GPU figures: bench/run.py).")
        return 0
    order = abba(TRACKERS, args.repeats)
    params = {"epochs": args.epochs, "steps": args.steps, "batch": args.batch}
    keep = {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES",) if k in os.environ}
    jobs = [Job("cuda", {"tracker": n, **params}, timeout_s=900, env=keep) for _, n in order]
    results = run_jobs(jobs, progress=lambda job, r: print(f"  {job.params['tracker']}: {r.get('error', 'ok')}"))
    summary = _summary(order, results)
    now = datetime.now(timezone.utc)
    meta = {"date": now.isoformat(timespec="seconds"), "host": platform.node(), "device": device, "params": params}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{now:%Y-%m-%d}-{platform.node()}-gpu.json"
    path.write_text(json.dumps({"meta": meta, "summary": summary, "raw": results}, indent=1, default=str))
    print(f"{device}, {args.epochs} epochs × {args.steps} steps, batch {args.batch}; written to {path}\n")
    print(_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
