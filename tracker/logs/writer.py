"""The run directory: written append-only during training (read back with :mod:`tracker.logs.reader`).

``<log_dir>/<run>/`` holds ``run.json`` (rewritten atomically), ``epochs.csv`` and ``devices.csv``
(one row per finished epoch, written before the epoch's edge returns, so a killed process leaves
every finished epoch on disk: the kernel holds what was written; the files are synced once, at stop)
and, optionally, ``power.csv`` (the raw trace, streamed in bounded memory).

A row is written with one ``write`` call on an ``O_APPEND`` descriptor, so a kill never leaves
half a row; a write the disk cuts short is truncated back to the last whole row at once. New
metric columns rewrite the header through a temporary file and ``os.replace``: no ``.bak`` files,
no lost rows. That rewrite copies the whole file, so it happens only while ``epochs.csv`` is short
(its first ``WIDE_ROWS`` rows); a metric key first logged later goes, with any others like it, into
one JSON object per row in the last column, ``more_metrics`` (added once), and a row's cost stays flat.
If the disk fills or the directory becomes unwritable, one warning is logged and
the unwritten rows wait in memory for the next write that works (only they: rows on disk are
not kept).

The readers (:class:`~tracker.logs.reader.Run`, :func:`~tracker.logs.reader.load_run`, ...) live in
:mod:`tracker.logs.reader`, with the file names.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from tracker.errors import ConfigurationError
from tracker.logs.liveness import HEARTBEAT_JSON
from tracker.logs.schema import (
    DEVICE_COLUMNS,
    DEVICES_CSV,
    EPOCH_COLUMNS,
    EPOCHS_CSV,
    MORE_METRICS,
    POWER_COLUMNS,
    POWER_CSV,
    RUN_JSON,
    WIDE_ROWS,
)

logger = logging.getLogger(__name__)

# A header rewrite copies the rows in pieces of this size, so its memory stays flat however long the run.
COPY_CHUNK_B = 1 << 20


def check_log_dir(log_dir: str | os.PathLike[str]) -> Path:
    """Create ``log_dir`` if needed and prove it writable, before any training starts.

    Raises:
        ConfigurationError: it is a file, cannot be created, or cannot be written.
    """
    path = Path(log_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"log_dir={str(log_dir)!r} is a file; give a directory for the run logs")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".energy-tracker-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"log_dir={str(log_dir)!r} cannot be created or written ({exc.strerror or exc}); "
            "give a directory this process can write, e.g. log_dir='runs/energy'"
        ) from exc
    return path


def new_run_dir(log_dir: Path, run_name: str | None = None) -> Path:
    """Create a run directory no other run uses, even one started at the same moment.

    The default name is ``<UTC time>-<host>-<pid>``; a taken name gets ``-2``, ``-3``, ...
    ``mkdir`` is atomic, so two processes can never both get one name.
    """
    base = run_name or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.uname().nodename}-{os.getpid()}"
    for attempt in range(1, 1000):
        candidate = log_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigurationError(f"run_name={base!r}: 999 runs of that name exist in {str(log_dir)!r}; choose another")


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([_format(v) for v in row] for row in rows)
    return buffer.getvalue()


class WriteProblem:
    """Reports write failures in one run directory: one warning, whichever file fails first."""

    def __init__(self) -> None:
        self.warned = False

    def __call__(self, path: Path, exc: OSError) -> None:
        """Warn about the first failure; later ones (the same full disk, mostly) are debug messages."""
        if self.warned:
            logger.debug("cannot write %s: %s", path, exc)
            return
        self.warned = True
        logger.warning(
            "energy-tracker: cannot write %s (%s); training continues, rows are kept in memory and written "
            "when writing works again",
            path,
            exc,
        )


class CsvLog:
    """An append-only CSV file whose header may grow (new metric columns); a row is whole or absent.

    Rows are not kept in memory once on disk: only those a failed write left pending. A row is
    appended with one ``write`` on an ``O_APPEND`` descriptor (not synced: :meth:`sync` at stop); if the write fails
    part-way (a full disk takes what fits, then refuses the rest), the file is truncated back to
    its last whole row at once and the rows wait for the next write. A new (or empty) file gets
    its header in the same write as its first rows. New columns rewrite the header: the body is
    copied as bytes with empty cells added at the end of each row (one ``bytes.replace``, no CSV
    parsing), through a temporary file and ``os.replace``.

    Args:
        path: the file.
        columns: the fixed columns, in order; extra keys of a row are appended as new columns.
        problem: reports write failures (shared by the files of a run directory: one warning).
    """

    def __init__(
        self, path: Path, columns: Sequence[str], problem: WriteProblem | None = None, more: str | None = None
    ) -> None:
        self.path = path
        self.columns = list(columns)
        self.pending: list[dict[str, Any]] = []
        self._more = more
        self._rows_on_disk = 0
        self._header_on_disk: list[str] = []
        self._multiline = False  # a value with a line break: rows are no longer one line each
        self._problem = problem or WriteProblem()
        if path.is_file():  # a resumed run (EnergyTracker.resume): append after its rows
            self._adopt()

    def _adopt(self) -> None:
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if whole != data:  # a killed writer left half a row: cut it off before appending
            with open(self.path, "r+b") as handle:
                handle.truncate(len(whole))
        text = whole.decode("utf-8", errors="replace")
        header = next(csv.reader(io.StringIO(text)), [])
        self._header_on_disk = header
        records = sum(1 for _ in csv.reader(io.StringIO(text)))
        self._multiline = "\r" in text or records != text.count("\n")
        self._rows_on_disk = max(records - 1, 0)
        self.columns = header + [c for c in self.columns if c not in header]

    def append(self, row: Mapping[str, Any]) -> None:
        """Add a row and write it now; see :meth:`extend`."""
        self.extend([row])

    def extend(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add rows and write them now, in one write and one sync; never raises OSError."""
        if not rows:
            return
        rows = [self._fold({str(key): value for key, value in row.items()}) for row in rows]
        self.columns.extend(dict.fromkeys(key for row in rows for key in row if key not in self.columns))
        self.pending.extend(rows)
        try:
            if self._header_on_disk != self.columns and _size(self.path):
                self._rewrite_header()  # rows on disk: their header grows, through a temporary file
            self._append_pending()
        except OSError as exc:
            self._problem(self.path, exc)

    def _fold(self, row: dict[str, Any]) -> dict[str, Any]:
        """Once the file holds WIDE_ROWS rows, keys without a column go into the row's JSON cell (``more``).

        A new column rewrites the whole file, so a key new in every epoch would make each row cost
        as much as the file so far; the JSON cell keeps the cost of a row flat.
        """
        if self._more is None or self._rows_on_disk + len(self.pending) < WIDE_ROWS:
            return row
        extra = {key: value for key, value in row.items() if key not in self.columns}
        if not extra:
            return row
        kept = {key: value for key, value in row.items() if key in self.columns}
        kept[self._more] = json.dumps(extra, default=str, separators=(",", ":"))
        return kept

    def _values(self, row: Mapping[str, Any]) -> list[Any]:
        return [row.get(column) for column in self.columns]

    def _append_pending(self) -> None:
        text = _csv_text(self._values(row) for row in self.pending)
        self._multiline = self._multiline or text.count("\n") != len(self.pending) or "\r" in text
        header = self._header_on_disk != self.columns  # an empty file: the header goes with the rows
        data = memoryview(((_csv_text([self.columns]) if header else "") + text).encode())
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            whole = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data, self.path)
            except OSError:
                os.ftruncate(fd, whole)  # back to the last whole row: never half a row on disk
                raise
        finally:
            os.close(fd)
        self._rows_on_disk += len(self.pending)
        self.pending.clear()
        if header:
            self._header_on_disk = list(self.columns)

    def sync(self) -> None:
        """Sync the file to the disk (at stop): a failure is reported, never raised.

        A row is not synced as it is written: a killed process loses nothing the kernel holds, and an
        ``fdatasync`` per row (1 to 3 ms here) on the training thread was most of an epoch edge's cost.
        What a machine that loses power has not yet written back, it loses (the kernel writes dirty
        pages back within about 30 s).
        """
        if not self.path.is_file():
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                _sync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._problem(self.path, exc)

    def _rewrite_header(self) -> None:
        header = _csv_text([self.columns]).encode()
        old = self._header_on_disk if self.path.is_file() else []
        added = len(self.columns) - len(old)
        with atomic_file(self.path) as out:
            out.write(header)
            if old:
                with open(self.path, "rb") as source:
                    source.readline()
                    self._copy_body(source, out, added)
        self._header_on_disk = list(self.columns)

    def _copy_body(self, source: BinaryIO, out: BinaryIO, added: int) -> None:
        """Copy the rows after the header, each with ``added`` empty cells at its end, in bounded memory."""
        if added and self._multiline:  # a value spans lines: parse the rows and write them again (rare)
            rows = csv.reader(io.TextIOWrapper(source, encoding="utf-8", errors="replace", newline=""))
            for row in rows:
                out.write(_csv_text([row + [""] * added]).encode())
            return
        pad = b"," * added + b"\n"
        for chunk in iter(lambda: source.read(COPY_CHUNK_B), b""):
            out.write(chunk.replace(b"\n", pad) if added else chunk)


def _size(path: Path) -> int:
    """The size of ``path`` in bytes; 0 if there is no such file."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _write_all(fd: int, data: memoryview, path: Path) -> None:
    while data:  # a filling disk takes what fits, then refuses the rest with the real errno
        written = os.write(fd, data)
        if not written:
            raise OSError(errno.EIO, "write accepted 0 bytes", str(path))
        data = data[written:]


def _sync(fd: int) -> None:
    # fdatasync writes the data and the file size (all a reader needs), skipping timestamps.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a fsynced temporary file and ``os.replace``.

    Through the ``os`` calls alone (no buffered file, no path objects made): ``heartbeat.json`` is rewritten
    this way every ``HEARTBEAT_S`` by the sampler's thread, and each object costs that thread CPU.
    """
    temporary = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            _write_all(fd, memoryview(text.encode("utf-8")), path)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends (fsynced, then ``os.replace``), or never."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per thread
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


class RunWriter:
    """Writes one run directory.

    Args:
        run_dir: the run's directory (from :func:`new_run_dir`).
        power_trace: also stream every power reading to ``power.csv``.
    """

    def __init__(self, run_dir: Path, power_trace: bool = False) -> None:
        self.run_dir = run_dir
        self._problem = WriteProblem()
        self.epochs = CsvLog(run_dir / EPOCHS_CSV, EPOCH_COLUMNS, self._problem, more=MORE_METRICS)
        self.devices = CsvLog(run_dir / DEVICES_CSV, DEVICE_COLUMNS, self._problem)
        self._power = PowerTrace(run_dir / POWER_CSV, self._problem) if power_trace else None

    def write_info(self, info: Mapping[str, Any]) -> None:
        """(Re)write ``run.json`` atomically; a failure is reported, never raised."""
        try:
            atomic_write(self.run_dir / RUN_JSON, json.dumps(info, indent=2, default=str) + "\n")
        except OSError as exc:
            self._problem(self.run_dir / RUN_JSON, exc)

    def write_epoch(self, row: Mapping[str, Any], devices: Iterable[Mapping[str, Any]]) -> None:
        """Append one epoch row, then its device rows.

        In this order a kill between the two files can leave a finished epoch without its device
        rows, never device rows of an epoch that ``epochs.csv`` does not have.
        """
        self.epochs.append(row)
        self.devices.extend(list(devices))

    def write_recovered(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append a killed process's rows recovered from its heartbeat in one write, then remove that heartbeat.

        A kill between the two leaves the heartbeat behind, and its rows are matched to those on disk
        (:func:`tracker.logs.liveness.interrupted_rows`): they are never written twice.
        """
        self.epochs.extend(rows)
        if not self.epochs.pending:  # not written (a full disk): they stay pending, and the heartbeat is kept
            self.epochs.sync()  # on the disk before their only other copy goes, even if the machine then fails
            with contextlib.suppress(OSError):
                (self.run_dir / HEARTBEAT_JSON).unlink(missing_ok=True)

    def write_heartbeat(self, beat: Mapping[str, Any]) -> None:
        """(Re)write ``heartbeat.json`` atomically (:mod:`tracker.logs.liveness`); a failure is reported, not raised."""
        try:
            atomic_write(self.run_dir / HEARTBEAT_JSON, json.dumps(beat, default=str) + "\n")
        except OSError as exc:
            self._problem(self.run_dir / HEARTBEAT_JSON, exc)

    def write_power(self, rows: Iterable[Sequence[Any]]) -> None:
        """Stream power-trace rows, if the trace is on."""
        if self._power is not None:
            self._power.write(rows)

    def close(self) -> None:
        """Sync the rows, close the power trace, remove the heartbeat (``run.json`` says how the run ended)."""
        self.epochs.sync()
        self.devices.sync()
        if self._power is not None:
            self._power.close()
        try:
            (self.run_dir / HEARTBEAT_JSON).unlink(missing_ok=True)
        except OSError as exc:
            logger.debug("removing %s failed: %s", HEARTBEAT_JSON, exc)


class PowerTrace:
    """``power.csv``: raw readings streamed in bounded memory, each batch written (not synced) as it comes."""

    def __init__(self, path: Path, problem: WriteProblem | None = None) -> None:
        self.path = path
        self._problem = problem or WriteProblem()
        self._handle: io.TextIOWrapper | None = open(path, "a", encoding="utf-8", buffering=64 * 1024)
        if self._handle.tell() == 0:  # a resumed run appends to its trace
            self._handle.write(_csv_text([POWER_COLUMNS]))
            self._handle.flush()

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        """Append rows; on a write error the trace stops (the epoch logs do not depend on it)."""
        if self._handle is None:
            return
        try:
            self._handle.write(_csv_text(rows))
            self._handle.flush()  # one write per batch: a killed process leaves every batch before it
        except (OSError, ValueError) as exc:
            self._problem(self.path, exc if isinstance(exc, OSError) else OSError(str(exc)))
            logger.debug("power trace stopped: %s", exc)
            self._handle = None

    def close(self) -> None:
        """Flush and close the file."""
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError as exc:
                logger.debug("closing power.csv failed: %s", exc)
            self._handle = None
