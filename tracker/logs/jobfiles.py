"""A distributed job's merged files, written at each rank's stop for tools that read CSV.

The reader merges a job's shards itself (:func:`tracker.logs.reader.load_job`); these files are a
convenience. They live apart from :mod:`tracker.logs.writer` because they read the job back, and the
reader writes through the writer (a killed run's rows, :func:`tracker.logs.reader.write_back_killed`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from tracker.logs.reader import load_job
from tracker.logs.schema import DEVICE_COLUMNS, DEVICES_CSV, EPOCH_COLUMNS, EPOCHS_CSV, RUN_JSON
from tracker.logs.writer import _csv_text, atomic_write

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    # An advisory lock, taken without waiting (whether it was is yielded) and released by the kernel
    # if its holder dies.
    try:
        import fcntl
    except ImportError:  # Windows: merges may interleave; the reader merges from the shards anyway
        yield True
        return
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_job(job_dir: Path) -> None:
    """Write a distributed job's ``run.json``, ``epochs.csv``, ``devices.csv``: its ranks' shards merged.

    Each rank calls it at its stop; the reader merges the shards itself, so these files are a
    convenience for tools that read CSV. No rank waits for another's merge (at 256 ranks, each
    would wait behind every merge before it): a rank that finds one under way leaves a mark
    (``.merge.pending``), and the merging rank merges again once done, so the last merge holds every
    rank's last rows. A failure is logged, never raised.
    """
    pending = job_dir / ".merge.pending"
    try:
        pending.touch()
        while pending.exists():
            with _locked(job_dir / ".merge.lock") as held:
                if not held:
                    return  # the rank that holds it sees the mark after its merge, and merges again
                pending.unlink(missing_ok=True)
                _write_merged(job_dir)
    except OSError as exc:
        logger.warning(
            "energy-tracker: cannot write the merged rows of %s (%s); its shards hold every row", job_dir, exc
        )


def _write_merged(job_dir: Path) -> None:
    run = load_job(job_dir)
    metrics = list(dict.fromkeys(k for row in run.epochs for k in row if k not in EPOCH_COLUMNS))
    for name, columns, rows in (
        (EPOCHS_CSV, [*EPOCH_COLUMNS, *metrics], run.epochs),
        (DEVICES_CSV, list(DEVICE_COLUMNS), run.devices),
    ):
        atomic_write(job_dir / name, _csv_text([columns, *([row.get(c) for c in columns] for row in rows)]))
    atomic_write(job_dir / RUN_JSON, json.dumps(run.info, indent=2, default=str) + "\n")
