"""Reading a run directory back: its file names, :class:`Run`, :func:`load_run` and :func:`load_runs`.

``<log_dir>/<run>/`` holds ``run.json``, ``epochs.csv``, ``devices.csv`` and, optionally,
``power.csv``; :mod:`tracker.logs.writer` writes them. Cells are parsed by the schema's column types
(:mod:`tracker.logs.schema`): text stays text (a run named ``007`` reads back as ``007``), user metric
columns are numbers where they parse as one. A final line without its newline, which a killed
writer may leave, is not read.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker.errors import ConfigurationError
from tracker.logs import merge
from tracker.logs.schema import (
    DEVICE_TYPES,
    DEVICES_CSV,
    EPOCH_COLUMNS,
    EPOCH_TYPES,
    EPOCHS_CSV,
    RUN_JSON,
    SHARDS_DIR,
    EpochRecord,
)

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """A run directory read back.

    Attributes:
        path: the directory.
        info: the contents of ``run.json`` (empty if missing).
        epochs: the rows of ``epochs.csv`` as dicts, numbers converted.
        devices: the rows of ``devices.csv``, likewise.
    """

    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's name."""
        return self.path.name

    def epoch_records(self) -> list[EpochRecord]:
        """``epochs.csv`` as :class:`~tracker.logs.schema.EpochRecord` values (user metrics left out)."""
        return [EpochRecord(**{column: row.get(column) for column in EPOCH_COLUMNS}) for row in self.epochs]

    def metrics(self) -> list[dict[str, Any]]:
        """The user's metric columns of each ``epochs.csv`` row."""
        return [{k: v for k, v in row.items() if k not in EPOCH_COLUMNS} for row in self.epochs]

    def epochs_frame(self) -> Any:
        """``epochs.csv`` as a pandas DataFrame (needs pandas)."""
        import pandas

        return pandas.read_csv(self.path / EPOCHS_CSV, dtype=_text_columns(EPOCH_TYPES))

    def devices_frame(self) -> Any:
        """``devices.csv`` as a pandas DataFrame (needs pandas)."""
        import pandas

        return pandas.read_csv(self.path / DEVICES_CSV, dtype=_text_columns(DEVICE_TYPES))


def _text_columns(types: Mapping[str, type]) -> dict[str, type]:
    return {name: str for name, kind in types.items() if kind is str}


def _guess(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_cell(text: str, kind: type | None) -> Any:
    """One CSV cell as its column's type (``None`` when empty); a column of unknown type: a number if it is one.

    Args:
        text: the cell.
        kind: ``str``, ``int`` or ``float`` from the schema, or ``None`` for a user's metric column.
    """
    if text == "":
        return None
    if kind is str:
        return text
    if kind is None:
        return _guess(text)
    try:
        return kind(text)
    except ValueError:
        return _guess(text)


def read_csv_rows(path: Path, types: Mapping[str, type] | None = None) -> list[dict[str, Any]]:
    """Rows of a CSV file as dicts; a final line without newline is dropped.

    Args:
        path: the file.
        types: the type of each known column (:data:`~tracker.logs.schema.EPOCH_TYPES`, ...); other
            columns (the user's metrics) are numbers where they parse as one, else text.
    """
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    types = types or {}
    return [{k: parse_cell(v, types.get(k)) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` looks like a run directory (a distributed job's, with its ranks' shards, too)."""
    return (path / EPOCHS_CSV).is_file() or (path / RUN_JSON).is_file() or is_job_dir(path)


def is_job_dir(path: Path) -> bool:
    """Whether ``path`` is a distributed job's directory: one shard per rank under ``ranks/``."""
    return (path / SHARDS_DIR).is_dir()


def _read_info(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / RUN_JSON).is_file():
        return {}
    try:
        return json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        logger.warning("energy-tracker: %s is not valid JSON (%s)", run_dir / RUN_JSON, exc)
        return {}


def read_shard(run_dir: Path) -> merge.Shard:
    """One writer's run directory as a :class:`~tracker.logs.merge.Shard`, unmerged."""
    epochs = read_csv_rows(run_dir / EPOCHS_CSV, EPOCH_TYPES)
    return merge.Shard(run_dir.name, _read_info(run_dir), epochs, read_csv_rows(run_dir / DEVICES_CSV, DEVICE_TYPES))


def shard_dirs(job_dir: Path) -> list[Path]:
    """The shards of a distributed job's directory, by name."""
    return sorted(p for p in (job_dir / SHARDS_DIR).iterdir() if p.is_dir() and _is_plain_run(p))


def _is_plain_run(path: Path) -> bool:
    return (path / EPOCHS_CSV).is_file() or (path / RUN_JSON).is_file()


def load_job(job_dir: Path) -> Run:
    """A distributed job's directory, its ranks' shards merged (:mod:`tracker.logs.merge`) into one run."""
    info, epochs, devices = merge.merge(job_dir.name, [read_shard(p) for p in shard_dirs(job_dir)])
    return Run(job_dir, info, epochs, devices)


def merge_jobs(runs: list[Run]) -> list[Run]:
    """Runs that share a job id (separate processes of one job, without a process group) merged into one.

    The merged run is named after the job id and lives at the runs' common parent directory.
    """
    merged = []
    for group in merge.group_by_job(runs):
        if len(group) == 1:
            merged.extend(group)
            continue
        shards = [merge.Shard(r.name, r.info, r.epochs, r.devices) for r in group]
        name = f"job-{merge.job_of(group[0].info)}"
        info, epochs, devices = merge.merge(name, shards)
        parent = Path(os.path.commonpath([str(r.path) for r in group]))
        merged.append(Run(parent / name, info, epochs, devices))
    return merged


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read one run directory.

    Raises:
        ConfigurationError: ``path`` is not a run directory.
    """
    run_dir = Path(path)
    if not is_run_dir(run_dir):
        raise ConfigurationError(f"{str(path)!r} is not a run directory (no {EPOCHS_CSV} or {RUN_JSON} in it)")
    if is_job_dir(run_dir):
        return load_job(run_dir)
    epochs = read_csv_rows(run_dir / EPOCHS_CSV, EPOCH_TYPES)
    return Run(run_dir, _read_info(run_dir), epochs, read_csv_rows(run_dir / DEVICES_CSV, DEVICE_TYPES))


def load_runs(path: str | os.PathLike[str]) -> list[Run]:
    """Read a run directory, or every run directory under ``path`` (sorted by name); a job's shards as one run.

    Raises:
        ConfigurationError: no run directory was found there.
    """
    root = Path(path)
    if is_run_dir(root):
        return [load_run(root)]
    found = sorted({_job_or_run(p.parent) for p in [*root.rglob(EPOCHS_CSV), *root.rglob(RUN_JSON)]})
    if not found:
        raise ConfigurationError(
            f"no runs in {str(path)!r}: give a run directory or a log_dir that contains runs (each has {EPOCHS_CSV})"
        )
    return [load_run(p) for p in found]


def _job_or_run(run_dir: Path) -> Path:
    # A rank's shard is read as part of its job, never as a run of its own.
    return run_dir.parent.parent if run_dir.parent.name == SHARDS_DIR else run_dir
