"""A distributed job at scale: reading back many ranks' shards, and the per-row cost of following a job.

``report``: a job of ``ranks`` × ``rows`` written synthetically (each rank a shard with one GPU of
its own: ``run.json``, ``epochs.csv`` and ``devices.csv`` as the writer lays them out), read back by
``energy-tracker report`` in a fresh interpreter (import included), s. Goal: 256 × 1,000 under 10 s.

``follow``: what the Hugging Face callback pays after each row on rank 0 to log the job's figures:
the job directory re-read and re-merged (``load_run``, what it did up to issue 20) against
:class:`~tracker.logs.follow.JobFollower` (only the rows appended since), per row, ms, at 2 and 8
ranks; the other ranks read nothing.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = {
    "smoke": {"report": (16, 100), "follow": ((2, 100), (8, 100))},
    "quick": {"report": (256, 1000), "follow": ((2, 600), (8, 600))},
    "full": {"report": (256, 1000), "follow": ((2, 3000), (8, 3000))},
}
J = 1 / 3.6e6


def _epoch_row(rank: int, index: int) -> dict[str, Any]:
    energy = 100.0 * J
    second = f"2026-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}.000+00:00"
    return {"run": f"n{rank // 8}-r{rank}", "epoch": index, "phase": "train", "status": "complete",
            "start_utc": second, "end_utc": second, "duration_s": 1.0, "samples": 8, "gpu_kwh": energy,
            "cpu_kwh": 0.0, "ram_kwh": 0.0, "energy_kwh": energy, "energy_kwh_low": energy * 0.95,
            "energy_kwh_high": energy * 1.05, "pue": 1.0, "carbon_intensity_g_per_kwh": 400.0,
            "co2_kg": energy * 0.4, "co2_kg_low": energy * 0.38, "co2_kg_high": energy * 0.42,
            "gpu_method": "energy_counter", "cpu_method": "absent", "ram_method": "absent",
            "cumulative_energy_kwh": energy * (index + 1), "notes": ""}  # fmt: skip


def _device_row(rank: int, index: int) -> dict[str, Any]:
    return {"run": f"n{rank // 8}-r{rank}", "epoch": index, "phase": "train", "host": f"n{rank // 8}", "rank": rank,
            "sensor": f"gpu:{rank % 8}", "kind": "gpu", "uuid": f"GPU-{rank}", "method": "energy_counter",
            "status": "ok", "energy_kwh": 100.0 * J}  # fmt: skip


def _writer(path: Path, columns: tuple[str, ...]) -> tuple[Any, Any]:
    f = path.open("w", newline="")
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    return f, writer


def write_shard(job: Path, rank: int, world: int) -> tuple[Any, Any, Any, Any]:
    """A rank's shard directory with its ``run.json``; returns the open ``epochs.csv`` and ``devices.csv``."""
    from tracker.logs.schema import DEVICE_COLUMNS, EPOCH_COLUMNS

    shard = job / "ranks" / f"n{rank // 8}-r{rank}"
    shard.mkdir(parents=True)
    process = {"host": f"n{rank // 8}", "kernel": f"boot-{rank // 8}", "pid": 10 + rank, "ppid": 1, "uuid": f"u{rank}"}
    info = {"run": shard.name, "status": "complete", "host": f"n{rank // 8}", "start_utc": "2026-01-01T00:00:00+00:00",
            "end_utc": "2026-01-01T01:00:00+00:00", "launch": {"rank": rank, "world_size": world, "restart": 0},
            "process": process,
            "sensors": [{"name": f"gpu:{rank % 8}", "kind": "gpu", "info": {"uuid": f"GPU-{rank}"}}]}  # fmt: skip
    (shard / "run.json").write_text(json.dumps(info))
    return (*_writer(shard / "epochs.csv", EPOCH_COLUMNS), *_writer(shard / "devices.csv", DEVICE_COLUMNS))


def synthetic_job(root: Path, ranks: int, rows: int) -> Path:
    """A finished job of ``ranks`` × ``rows`` under ``root/job``."""
    job = root / "job"
    for rank in range(ranks):
        ef, epochs, df, devices = write_shard(job, rank, ranks)
        epochs.writerows(_epoch_row(rank, i) for i in range(rows))
        devices.writerows(_device_row(rank, i) for i in range(rows))
        ef.close()
        df.close()
    return job


def time_report(ranks: int, rows: int) -> dict[str, Any]:
    """``energy-tracker report`` of a synthetic job, in a fresh interpreter, s."""
    with tempfile.TemporaryDirectory() as tmp:
        job = synthetic_job(Path(tmp), ranks, rows)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tracker", "report", str(job)], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    return {"ranks": ranks, "rows": rows, "seconds": seconds, "ok": done.returncode == 0}


def time_follow(ranks: int, rows: int) -> dict[str, Any]:
    """Per row on rank 0, ms: the whole job re-read (median of the last 5 rows), and followed (first and last tenth)."""
    from tracker.logs.follow import JobFollower
    from tracker.logs.reader import load_run

    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job"
        files = [write_shard(job, rank, ranks) for rank in range(ranks)]
        follower = JobFollower(job)
        whole, follow = [], []
        for index in range(rows):
            for rank, (ef, epochs, df, devices) in enumerate(files):
                epochs.writerow(_epoch_row(rank, index))
                devices.writerow(_device_row(rank, index))
                ef.flush()
                df.flush()
            if index >= rows - 5:  # the whole job re-read: its last rows only (each costs the whole job)
                t0 = time.perf_counter()
                load_run(job)
                whole.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            follower.rows()
            follow.append((time.perf_counter() - t0) * 1e3)
        for ef, _, df, _ in files:
            ef.close()
            df.close()
    tail = follow[-max(1, rows // 10) :]
    head = follow[1 : 1 + max(1, rows // 10)]
    return {"ranks": ranks, "rows": rows, "reread_ms": statistics.median(whole),
            "follow_first_ms": statistics.median(head), "follow_last_ms": statistics.median(tail)}  # fmt: skip


def run(ctx: Any) -> dict[str, Any]:
    """Both measurements at the context's size."""
    size = SIZES[ctx.mode]
    return {"report": time_report(*size["report"]), "follow": [time_follow(*shape) for shape in size["follow"]]}


def markdown(result: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    rep = result["report"]
    lines = [
        f"`energy-tracker report` of a job of {rep['ranks']} ranks × {rep['rows']} rows: {rep['seconds']:.2f} s "
        f"(goal < 10 s){'' if rep['ok'] else ' (FAILED)'}.",
        "",
        "| ranks | rows | re-read the job after a row, ms | follow it, first rows ms | follow it, last rows ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in result["follow"]:
        lines.append(f"| {f['ranks']} | {f['rows']} | {f['reread_ms']:.1f} | {f['follow_first_ms']:.2f} | "
                     f"{f['follow_last_ms']:.2f} |")  # fmt: skip
    return "\n".join(lines)
