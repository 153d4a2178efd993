"""A row is whole or absent; damaged files are read around, never a crash (issue #12, defects 4, 5 and 10).

The full disk is simulated at the file layer as in ``test_disk_faults.py`` (a stand-in for the
``os`` module that ``tracker.logs.writer`` sees); corrupt files are written by hand.
"""

from __future__ import annotations

import csv
import errno
import io
import logging

import pandas as pd
import pytest

import tracker.logs.writer
from tests.reliability.support import advance, joules, quiet_tracker, train_rows
from tests.reliability.test_disk_faults import BrokenDisk
from tracker import cli, load_run, load_runs
from tracker.logs.writer import CsvLog
from tracker.testing import FakeSensor, steady

GPU_W = 100.0


def whole_rows(path):
    """The file's rows, after proving that each is whole (ends in a newline, as wide as the header)."""
    text = path.read_text()
    assert text.endswith("\n"), f"{path.name} ends in half a row: {text[-60:]!r}"
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(row) == len(rows[0]) for row in rows), f"{path.name} has a row of the wrong width"
    return rows


# ---- 4: a full disk never leaves half a row ----------------------------------------------------------------------


def test_a_write_the_full_disk_cuts_short_leaves_no_half_row(tmp_path, clock, monkeypatch):
    disk = BrokenDisk(errno.ENOSPC, short=True)
    monkeypatch.setattr(tracker.logs.writer, "os", disk)
    sensor = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock)
    energy = quiet_tracker(tmp_path, clock, sensors=[sensor]).start()
    with energy.epoch(0):
        advance(energy, clock, 2)
    disk.broken = True  # epoch 1's row: half of it fits, then the disk is full
    with energy.epoch(1):
        advance(energy, clock, 2)
    # A kill now (SIGKILL, power loss) leaves the file as it is: only whole rows, pandas reads epoch 0 alone.
    whole_rows(energy.run_dir / "epochs.csv")
    frame = pd.read_csv(energy.run_dir / "epochs.csv")
    assert list(frame[frame["phase"] == "train"]["epoch"]) == [0]
    disk.broken = False
    with energy.epoch(2):
        advance(energy, clock, 2)
    energy.stop()
    whole_rows(energy.run_dir / "epochs.csv")
    rows = train_rows(load_run(energy.run_dir).epochs)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [joules(r["gpu_kwh"]) for r in rows] == pytest.approx([GPU_W * 2] * 3)


def test_rows_on_disk_are_not_kept_in_memory(tmp_path):
    log = CsvLog(tmp_path / "epochs.csv", ["run", "epoch"])
    for epoch in range(50):
        log.append({"run": "r", "epoch": epoch, **({f"m{epoch}": 1.0} if epoch % 10 == 0 else {})})
    assert log.pending == [] and not hasattr(log, "rows")
    rows = whole_rows(tmp_path / "epochs.csv")
    assert rows[0] == ["run", "epoch", "m0", "m10", "m20", "m30", "m40"] and len(rows) == 51
    assert rows[1] == ["r", "0", "1.0", "", "", "", ""] and rows[41] == ["r", "40", "", "", "", "", "1.0"]


# ---- 5: corrupt files are read around ----------------------------------------------------------------------------


def two_runs(tmp_path, clock):
    for name in ("good", "bad"):
        sensor = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock)
        with quiet_tracker(tmp_path, clock, sensors=[sensor], run_name=name) as energy:
            for epoch in range(3):
                with energy.epoch(epoch):
                    advance(energy, clock, 2)
    return tmp_path / "good", tmp_path / "bad"


def damage(path, how):
    lines = path.read_bytes().splitlines(keepends=True)
    if how == "binary":
        lines[2] = b"\x00\xff\xfe garbage \x00\x81\n"
    elif how == "extra field":
        lines[2] = lines[2].rstrip(b"\n") + b",surplus\n"
    elif how == "non-numeric":
        cells = lines[2].decode().split(",")
        cells[8] = "lots"  # gpu_kwh
        lines[2] = ",".join(cells).encode()
    elif how == "glued":  # half a row, then the next row appended to it
        lines[2] = lines[2][: len(lines[2]) // 2]
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize("how", ["binary", "extra field", "non-numeric", "glued"])
def test_a_damaged_row_is_skipped_and_counted_with_one_warning(tmp_path, clock, caplog, how):
    _, bad = two_runs(tmp_path, clock)
    damage(bad / "epochs.csv", how)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tracker"):
        run = load_run(bad)
    assert run.skipped_rows == {"epochs.csv": 1}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert all(isinstance(r["gpu_kwh"], float) for r in run.epochs)
    assert len(run.epochs) == len((bad / "epochs.csv").read_bytes().splitlines()) - 2  # header and the bad row


def test_report_shows_every_readable_run_names_the_unreadable_one_and_exits_3(tmp_path, clock, capsys):
    _, bad = two_runs(tmp_path, clock)
    (bad / "epochs.csv").write_bytes(b"\x00\x01\x02 not a csv at all \xff\n1,2,3\n")  # the header itself is gone
    (bad / "run.json").write_text("[1, 2")
    runs = load_runs(tmp_path)
    assert [r.name for r in runs] == ["good"] and [p.name for p, _ in runs.skipped] == ["bad"]
    assert cli.main(["report", str(tmp_path)]) == cli.SOME_UNREADABLE
    out, err = capsys.readouterr()
    assert "good" in out and "Traceback" not in err
    assert f"skipped {bad}" in err


def test_a_run_that_cannot_be_read_is_named_and_the_others_reported(tmp_path, clock, capsys, monkeypatch):
    good, bad = two_runs(tmp_path, clock)
    real = tracker.logs.reader.read_csv

    def unreadable(path, numeric=None):
        if path.parent == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, numeric)

    monkeypatch.setattr(tracker.logs.reader, "read_csv", unreadable)
    runs = load_runs(tmp_path)
    assert [r.name for r in runs] == ["good"] and [p.name for p, _ in runs.skipped] == ["bad"]
    assert cli.main(["report", str(tmp_path)]) == cli.SOME_UNREADABLE
    out, err = capsys.readouterr()
    assert "good" in out and "skipped" in err and "bad" in err and "Permission denied" in err


def test_a_new_column_after_a_value_with_a_line_break_keeps_every_row_whole(tmp_path):
    log = CsvLog(tmp_path / "epochs.csv", ["run", "epoch"])
    log.append({"run": "r", "epoch": 0, "note": "two\nlines"})
    log.append({"run": "r", "epoch": 1, "extra": 2.0})
    rows = list(csv.reader((tmp_path / "epochs.csv").open(newline="")))
    assert rows == [["run", "epoch", "note", "extra"], ["r", "0", "two\nlines", ""], ["r", "1", "", "2.0"]]
