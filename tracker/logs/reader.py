"""Reading a run directory back: its file names, :class:`Run`, :func:`load_run` and :func:`load_runs`.

``<log_dir>/<run>/`` holds ``run.json``, ``epochs.csv``, ``devices.csv`` and, optionally,
``power.csv``; :mod:`tracker.logs.writer` writes them. Cells are parsed by the schema's column types
(:mod:`tracker.logs.schema`): text stays text (a run named ``007`` reads back as ``007``), user metric
columns are numbers where they parse as one.

Reading is robust to damage: a final line without its newline (a killed writer), a row with more
cells than the header, binary bytes, or a non-numeric cell in a numeric column is skipped and
counted (``Run.skipped_rows``), with one warning per file. Unreadable bytes or NUL in a text cell
of an otherwise whole row cost nothing: the row is kept and its ``notes`` name the cell.
:func:`load_runs` reads every readable run under a directory and names the runs it could not
read (``Runs.skipped``) instead of failing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tracker.units as units
from tracker.energy import ABSENT, joined
from tracker.errors import ConfigurationError
from tracker.logs import liveness, merge
from tracker.logs.schema import (
    DEVICE_TYPES,
    DEVICES_CSV,
    EPOCH_COLUMNS,
    EPOCH_TYPES,
    EPOCHS_CSV,
    MORE_METRICS,
    RUN_JSON,
    SHARDS_DIR,
    EpochRecord,
)
from tracker.logs.totals import Totals
from tracker.sensors import methods as registry

RECOVERY_LOCK = ".recovery.lock"  # held while a killed run's open rows are written back (write_back_killed)
UNREADABLE = "\ufffd"  # what undecodable bytes (and NUL) read as

logger = logging.getLogger(__name__)


class Run:
    """A run directory read back.

    Attributes:
        path: the directory.
        info: the contents of ``run.json`` (empty if missing).
        epochs: the rows of ``epochs.csv`` as dicts, numbers converted.
        devices: the rows of ``devices.csv``, likewise.
        skipped_rows: torn or corrupt rows skipped, by file name (only files that had some).
        open: while the run goes on, its open epochs and phases so far (``heartbeat.json``), as rows
            of status ``running``; empty once it has ended (or was killed: then they are ``interrupted``
            rows of ``epochs``).
    """

    __slots__ = ("path", "info", "epochs", "devices", "skipped_rows", "open")

    def __init__(
        self,
        path: Path,
        info: dict[str, Any] | None = None,
        epochs: list[dict[str, Any]] | None = None,
        devices: list[dict[str, Any]] | None = None,
        skipped_rows: dict[str, int] | None = None,
    ) -> None:
        self.path = path
        self.info: dict[str, Any] = {} if info is None else info
        self.epochs: list[dict[str, Any]] = [] if epochs is None else epochs
        self.devices: list[dict[str, Any]] = [] if devices is None else devices
        self.skipped_rows: dict[str, int] = {} if skipped_rows is None else skipped_rows
        self.open: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {len(self.epochs)} epoch rows, {len(self.devices)} device rows)"

    @property
    def name(self) -> str:
        """The run's name."""
        return self.path.name

    def _repr_html_(self) -> str:
        """A compact table for Jupyter, as a summary's: energy by component and how, CO2e, summed from the rows."""
        rows = [*self.epochs, *self.open]
        t = Totals.of(rows)
        methods = {k: joined(r.get(f"{k}_method") for r in rows) for k in ("gpu", "cpu", "ram", "node")}
        node = units.node_beside(t.node_kwh, t.unexplained_kwh, t.unexplained_share, _unless_absent(methods["node"]))
        table = [
            ("status", str(self.info.get("status") or "unknown")),
            ("rows", f"{len(self.epochs)}{f' (+{len(self.open)} open)' if self.open else ''}, {t.epochs} epochs "
             f"finished, {units.duration(t.duration_s)}"),
            ("energy", f"{units.energy(t.energy_kwh)} ({units.energy_band(t.energy_kwh_low, t.energy_kwh_high)})"),
            *((f"  {k}", "not measured" if methods[k] == ABSENT else f"{units.energy(getattr(t, f'{k}_kwh'))} "
               f"[{registry.labelled(methods[k])}]") for k in ("gpu", "cpu", "ram")),
            *([("node meter", node)] if node else []),
            ("CO2e", f"{units.co2(t.co2_kg)} ({units.co2_band(t.co2_kg_low, t.co2_kg_high)})"),
            *([("embodied CO2e", embodied_text(rows, t))] if t.embodied_co2_kg is not None else []),
            ("path", str(self.path)),
        ]  # fmt: skip
        return units.html_table(f"Run {self.name}", table)

    def epoch_records(self) -> list[EpochRecord]:
        """``epochs.csv`` as :class:`~tracker.logs.schema.EpochRecord` values (user metrics left out)."""
        return [EpochRecord(**{column: row.get(column) for column in EPOCH_COLUMNS}) for row in self.epochs]

    def metrics(self) -> list[dict[str, Any]]:
        """The user's metric columns of each ``epochs.csv`` row."""
        return [{k: v for k, v in row.items() if k not in EPOCH_COLUMNS} for row in self.epochs]

    def epochs_frame(self) -> Any:
        """``epochs.csv`` as a pandas DataFrame (needs pandas)."""
        import pandas

        return pandas.read_csv(self.path / EPOCHS_CSV, dtype=_dtypes(EPOCH_TYPES))

    def devices_frame(self) -> Any:
        """``devices.csv`` as a pandas DataFrame (needs pandas)."""
        import pandas

        return pandas.read_csv(self.path / DEVICES_CSV, dtype=_dtypes(DEVICE_TYPES))


def _dtypes(types: Mapping[str, type]) -> dict[str, Any]:
    # Text stays text; a whole-number column with empty cells (samples, steps, the epoch of ``other``
    # rows) is pandas' nullable ``Int64``, not float64.
    return {name: str if kind is str else "Int64" for name, kind in types.items() if kind is not float}


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
    """Rows of a CSV file as dicts; torn and corrupt rows are skipped (see :func:`read_csv`).

    Args:
        path: the file.
        types: the type of each known column (:data:`~tracker.logs.schema.EPOCH_TYPES`, ...); other
            columns (the user's metrics) are numbers where they parse as one, else text.
    """
    return read_csv(path, types)[0]


def read_csv(path: Path, types: Mapping[str, type] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Rows of a CSV file as dicts, and how many rows were skipped as torn or corrupt.

    Skipped: a final line without its newline, a row with more cells than the header, a cell that
    is not a number in a numeric column of ``types``, a row narrower than the header with NUL or
    undecodable bytes. A whole row with them in a text cell is kept, the cell named in its ``notes``.
    One warning per file that had any skipped.

    Raises:
        OSError: the file cannot be read.
        ValueError: its header names none of the numeric columns of ``types`` (not a file the tracker wrote).
    """
    if not path.exists():
        return [], 0
    text = path.read_bytes().decode("utf-8", errors="replace")
    torn = int(bool(text) and not text.endswith("\n"))
    rows, skipped = _parse(text[: text.rfind("\n") + 1], types or {})
    if skipped + torn:
        logger.warning("energy-tracker: %s: skipped %d torn or corrupt rows", path, skipped + torn)
    return rows, skipped + torn


def _parse(text: str, types: Mapping[str, type]) -> tuple[list[dict[str, Any]], int]:
    numeric = frozenset(name for name, kind in types.items() if kind in (int, float))
    reader = csv.reader(io.StringIO(text.replace("\x00", UNREADABLE)))
    header = next(reader, [])
    if text and numeric and not numeric & set(header):
        raise ValueError(f"the header names none of the expected columns: {header[:3]!r}")
    # per column once, not per cell: a job of 256 ranks x 1,000 rows is half a million rows
    row = _Row(header, types, numeric)
    row.damaged = UNREADABLE in text or "\x00" in text
    rows, skipped = [], 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return rows, skipped
        except csv.Error:
            skipped += 1
            continue
        parsed = row(cells)
        if parsed is None:
            skipped += 1
        else:
            rows.append(parsed)


class _Damaged(ValueError):
    """A numeric column's cell that is not a number."""


def _numeric(kind: type) -> Callable[[str], Any]:
    """A numeric column's cell parser, as :func:`parse_cell`; text that is no number raises :class:`_Damaged`."""

    def number(text: str) -> Any:
        if text == "":
            return None
        try:
            return kind(text)
        except ValueError:
            value = _guess(text)
        if isinstance(value, str):
            raise _Damaged(text)
        return value

    return number


def _metric(text: str) -> Any:
    return None if text == "" else _guess(text)


class _Row:
    """Parses the rows of one file as :func:`parse_cell` does each cell, the work per column decided once."""

    __slots__ = ("header", "types", "parsers", "text", "damaged")

    def __init__(self, header: list[str], types: Mapping[str, type], numeric: frozenset[str]) -> None:
        self.header, self.types, self.damaged = header, types, False
        kinds = [(name, types.get(name)) for name in header]
        self.parsers = [(n, _numeric(k) if n in numeric else _metric) for n, k in kinds if k is not str]
        self.text = [name for name, kind in kinds if kind is str]

    def __call__(self, cells: list[str]) -> dict[str, Any] | None:
        """One row as a dict, or ``None`` if it is damaged.

        Unreadable bytes (and NUL) in a text cell cost the row nothing: its figures are kept and its
        ``notes`` name the cells (a row that is not as wide as the header, or whose numbers do not parse,
        is damaged, not merely unreadable in places).
        """
        header = self.header
        unreadable = [n for n, cell in zip(header, cells, strict=False) if UNREADABLE in cell] if self.damaged else []
        if len(cells) > len(header) or (unreadable and len(cells) != len(header)):
            return None
        row: dict[str, Any] = dict(zip(header, cells, strict=False))
        if len(cells) < len(header):
            row.update(dict.fromkeys(header[len(cells) :], ""))
        try:
            for name, parse in self.parsers:
                row[name] = parse(row[name])
        except _Damaged:
            return None
        for name in self.text:
            if row[name] == "":
                row[name] = None
        if MORE_METRICS in row:
            _expand_more_metrics(row, self.types)
        if unreadable:
            note = f"unreadable bytes in {', '.join(unreadable)} (shown as U+FFFD)"
            row["notes"] = f"{row['notes']}; {note}" if row.get("notes") else note
        return row


def _expand_more_metrics(row: dict[str, Any], types: Mapping[str, type]) -> None:
    """Metrics kept in the row's JSON cell (:data:`~tracker.logs.schema.MORE_METRICS`) as keys of the row."""
    cell = row.pop(MORE_METRICS)
    if cell is None:
        return
    try:
        more = json.loads(cell) if isinstance(cell, str) else None
    except ValueError:
        more = None
    if not isinstance(more, dict):
        note = f"{MORE_METRICS} unreadable: {str(cell)[:40]!r}"
        row["notes"] = f"{row['notes']}; {note}" if row.get("notes") else note
        return
    row.update({k: v for k, v in more.items() if k not in types and k not in row})


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
        info = json.loads((run_dir / RUN_JSON).read_bytes().decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        logger.warning("energy-tracker: %s is not valid JSON (%s)", run_dir / RUN_JSON, exc)
        return {}
    if not isinstance(info, dict):
        logger.warning("energy-tracker: %s is not a JSON object; ignored", run_dir / RUN_JSON)
        return {}
    return info


def read_shard(run_dir: Path) -> merge.Shard:
    """One writer's run directory as a :class:`~tracker.logs.merge.Shard`, unmerged.

    A shard that says ``running`` but whose process is gone is ``killed``, its open epoch up to its
    last heartbeat an ``interrupted`` row, exactly as a single-process run (:func:`load_run`).
    """
    epochs = read_csv(run_dir / EPOCHS_CSV, EPOCH_TYPES)[0]
    shard = merge.Shard(run_dir.name, _read_info(run_dir), epochs, read_csv(run_dir / DEVICES_CSV, DEVICE_TYPES)[0])
    _recover(run_dir, shard.info, shard.epochs)
    return shard


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
    """Read one run directory, skipping torn or corrupt rows (counted in ``Run.skipped_rows``).

    Raises:
        ConfigurationError: ``path`` is not a run directory.
        OSError: a file cannot be read.
        ValueError: a file's header is not one the tracker writes.
    """
    run_dir = Path(path)
    if not is_run_dir(run_dir):
        raise ConfigurationError(f"{str(path)!r} is not a run directory (no {EPOCHS_CSV} or {RUN_JSON} in it)")
    if is_job_dir(run_dir):
        return load_job(run_dir)
    epochs, torn_epochs = read_csv(run_dir / EPOCHS_CSV, EPOCH_TYPES)
    devices, torn_devices = read_csv(run_dir / DEVICES_CSV, DEVICE_TYPES)
    skipped = {name: n for name, n in ((EPOCHS_CSV, torn_epochs), (DEVICES_CSV, torn_devices)) if n}
    run = Run(run_dir, _read_info(run_dir), epochs, devices, skipped)
    run.open = _recover(run_dir, run.info, run.epochs)
    return run


def killed_rows(run_dir: Path) -> list[dict[str, Any]]:
    """What a killed run's ``heartbeat.json`` holds beyond its ``epochs.csv``: its open rows, ``interrupted``.

    The rows :func:`load_run` adds for a run whose process is gone (none while it lives, or once it
    ended), for a resumed run to write back before it appends (:mod:`tracker.session.resume`).
    """
    info, epochs = _read_info(run_dir), read_csv_rows(run_dir / EPOCHS_CSV, EPOCH_TYPES)
    written = len(epochs)
    _recover_killed(run_dir, info, epochs)
    return epochs[written:]


def write_back_killed(run_dir: Path) -> list[dict[str, Any]]:
    """Append a killed run's open rows (:func:`killed_rows`) to its ``epochs.csv``, once; returns the rows written.

    The one recovery of a killed run: every reader that finds the run dead (:func:`load_run`, a job's
    shards) and a resumed run before it appends (:mod:`tracker.session.resume`) call it. Under an
    exclusive ``flock`` on ``run_dir/.recovery.lock`` (released by the kernel if the holder dies) the
    rows are worked out again from the files on disk, appended in one write, and the heartbeat removed
    (:meth:`~tracker.logs.writer.RunWriter.write_recovered`); a second reader, or one after a kill between
    the write and the removal, finds them on disk and writes nothing. ``pandas.read_csv`` then holds them,
    ``interrupted``, with their band and a note saying they come from the heartbeat. A directory that
    cannot be written is left as it is (readers still show the rows).
    """
    from tracker.logs.writer import RunWriter  # the reader writes only for a killed run

    try:
        fd = os.open(run_dir / RECOVERY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return []  # a read-only directory: the rows stay the reader's own
    try:
        _lock(fd)
        rows = killed_rows(run_dir)
        if rows:
            RunWriter(run_dir).write_recovered(rows)
        return rows
    finally:
        os.close(fd)  # releases the lock


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; the rows on disk are still matched before writing
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _recover(run_dir: Path, info: dict[str, Any], epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`_recover_killed`, and the recovered rows written back (:func:`write_back_killed`) when it found some."""
    written = len(epochs)
    still_open = _recover_killed(run_dir, info, epochs)
    if len(epochs) > written:
        write_back_killed(run_dir)
    return still_open


def _recover_killed(run_dir: Path, info: dict[str, Any], epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ``running`` run whose process is gone is ``killed``; its open epoch so far becomes an ``interrupted`` row.

    ``info`` and ``epochs`` (``run.json`` and ``epochs.csv`` of ``run_dir``, as read) are updated in place.
    Returns the open rows so far of a run still running (the heartbeat's, status ``running``), else none.
    """
    if info.get("status") != "running":
        return []
    heartbeat: Any = {}
    try:
        heartbeat = json.loads((run_dir / liveness.HEARTBEAT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # killed before its first heartbeat, or during one: run.json still names the process
    heartbeat = heartbeat if isinstance(heartbeat, dict) else {}
    if liveness.is_gone(heartbeat.get("process") or info.get("process"), heartbeat):
        info["status"] = liveness.KILLED
        epochs.extend(liveness.interrupted_rows(run_dir.name, heartbeat, epochs))
        return []
    return liveness.open_rows(run_dir.name, heartbeat, epochs)


class Runs(list):
    """The runs :func:`load_runs` read (a list of :class:`Run`), and those it could not.

    Attributes:
        skipped: ``(path, reason)`` of each run directory that could not be read.
    """

    def __init__(self, runs: list[Run] = (), skipped: list[tuple[Path, str]] = ()) -> None:  # type: ignore[assignment]
        super().__init__(runs)
        self.skipped = list(skipped)

    def frame(self) -> Any:
        """Every run's rows in one pandas DataFrame (needs pandas): ``epochs.csv``'s columns, then the metrics.

        A job's ranks are merged as :func:`load_run` merges them; its ``run`` column tells the runs apart.
        """
        import pandas

        rows = [row for run in self for row in run.epochs]
        metrics = list(dict.fromkeys(k for row in rows for k in row if k not in EPOCH_COLUMNS))
        frame = pandas.DataFrame(rows, columns=[*EPOCH_COLUMNS, *metrics])
        return frame.astype({name: dtype for name, dtype in _dtypes(EPOCH_TYPES).items() if dtype == "Int64"})


def load_runs(path: str | os.PathLike[str], recursive: bool = True) -> Runs:
    """Read a run directory (or its ``epochs.csv``), or the run directories in ``path`` (sorted by name).

    A distributed job's shards are read as one run. ``recursive=False`` looks only at ``path``'s own
    subdirectories, so a high-level directory (a home directory) is not crawled.

    A run that cannot be read (an unreadable file, a damaged header) does not hide the others:
    it is left out, named in the result's ``skipped`` with the reason, and warned about once.

    Raises:
        ConfigurationError: no run directory was found there (the message says how to look deeper).
    """
    root = Path(path)
    if root.is_file() and root.name in (EPOCHS_CSV, RUN_JSON, DEVICES_CSV):
        root = root.parent
    if is_run_dir(root):
        found = [root]
    elif recursive:
        found = sorted({_job_or_run(p.parent) for name in (EPOCHS_CSV, RUN_JSON) for p in root.rglob(name)})
    else:
        found = sorted(p for p in _subdirs(root) if is_run_dir(p))
    if not found:
        deeper = "" if recursive else "; to look in every directory below it, add --recursive (recursive=True)"
        raise ConfigurationError(
            f"no runs in {str(path)!r}: give a run directory, its {EPOCHS_CSV}, or a log_dir whose "
            f"subdirectories are runs (each has {EPOCHS_CSV}){deeper}"
        )
    runs = Runs()
    for run_dir in found:
        try:
            runs.append(load_run(run_dir))
        except (OSError, ValueError) as exc:  # one bad run must not hide every other run
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning("energy-tracker: cannot read the run %s (%s); skipped", run_dir, reason)
            runs.skipped.append((run_dir, reason))
    return runs


def _subdirs(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []


def _job_or_run(run_dir: Path) -> Path:
    # A rank's shard is read as part of its job, never as a run of its own.
    return run_dir.parent.parent if run_dir.parent.name == SHARDS_DIR else run_dir


def _unless_absent(method: str) -> str:
    return "" if method == ABSENT else method


def embodied_left_out(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a row left a GPU out of its embodied share (its model not in the table: its ``notes`` say so).

    Not a host left out beside no GPU: that row has no embodied figure for the GPUs' words to qualify.
    """
    from tracker.carbon.embodied import NOT_IN_TABLE

    return any(NOT_IN_TABLE in str(r.get("notes") or "") for r in rows)


def embodied_text(rows: Sequence[Mapping[str, Any]], t: Totals) -> str:
    """The embodied emissions of ``rows`` (their totals ``t``) as every view words them, estimated and apart."""
    from tracker.carbon import embodied

    return embodied.text(t.embodied_co2_kg, t.embodied_co2_kg_low, t.embodied_co2_kg_high, embodied_left_out(rows))
