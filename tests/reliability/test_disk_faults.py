"""A full disk, or write permission lost, on the run directory mid-run.

Simulated at the file layer: ``tracker.logs.writer`` sees a stand-in for the ``os`` module (its own
reference, replaced with monkeypatch) whose ``open`` for writing, ``write``, ``fsync`` and ``replace``
fail while the disk is "full". The training must go on, with one warning, and every row must reach
the disk once writing works again.
"""

from __future__ import annotations

import errno
import json
import os

import pandas as pd
import pytest

import tracker.logs.writer
from tests.reliability.support import advance, joules, quiet_tracker, tracker_warnings
from tracker import load_run
from tracker.logs.schema import EPOCH_COLUMNS
from tracker.testing import FakeSensor, steady

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class BrokenDisk:
    """The ``os`` module as ``tracker.logs.writer`` sees it, with writes failing while ``broken``.

    Args:
        code: the errno of the failures (``ENOSPC``, ``EACCES``, ``EROFS``).
        short: once broken, the first ``write`` writes half of its bytes and returns that count, as
            ``write(2)`` does when the disk fills in the middle of a buffer; later ones fail.
    """

    def __init__(self, code: int, short: bool = False) -> None:
        self.code, self.short = code, short
        self._broken = self._filled = False
        self.failures = 0

    @property
    def broken(self) -> bool:
        return self._broken

    @broken.setter
    def broken(self, value: bool) -> None:
        self._broken, self._filled = value, False

    def __getattr__(self, name):
        return getattr(os, name)

    def _fail(self, what):
        self.failures += 1
        return OSError(self.code, f"{os.strerror(self.code)} ({what}, simulated)")

    def open(self, path, flags, mode=0o777, **kwargs):
        if self.broken and flags & WRITE_FLAGS and not (self.short and not self._filled):
            raise self._fail("open")
        return os.open(path, flags, mode, **kwargs)

    def write(self, fd, data):
        if not self.broken:
            return os.write(fd, data)
        if self.short and not self._filled:  # the disk fills during this write: half of it fits
            self._filled = True
            self.failures += 1
            return os.write(fd, bytes(data[: len(data) // 2]))
        raise self._fail("write")

    def fsync(self, fd):
        if self.broken:
            raise self._fail("fsync")
        return os.fsync(fd)

    def replace(self, src, dst, **kwargs):
        if self.broken:
            raise self._fail("replace")
        return os.replace(src, dst, **kwargs)


@pytest.fixture
def disk(monkeypatch, request):
    broken = BrokenDisk(*request.param)
    monkeypatch.setattr(tracker.logs.writer, "os", broken)
    return broken


def run_epochs(tmp_path, clock, disk, broken_epochs, count=5, **options):
    sensor = FakeSensor("gpu:0", "gpu", steady(100.0), clock)
    with quiet_tracker(tmp_path, clock, sensors=[sensor], **options) as energy:
        for epoch in range(count):
            disk.broken = epoch in broken_epochs  # each epoch's rows are written as it ends
            with energy.epoch(epoch):
                advance(energy, clock, 2)
                energy.log_metrics({"loss": 1.0 / (epoch + 1), **({"accuracy": 0.5} if epoch >= 2 else {})})
        disk.broken = count in broken_epochs  # what stop() writes
    return energy


def assert_complete_and_clean(energy, count):
    path = energy.run_dir / "epochs.csv"
    text = path.read_text()
    assert text.endswith("\n")
    frame = pd.read_csv(path)
    train = frame[frame["phase"] == "train"]
    assert list(train["epoch"]) == list(range(count))
    assert list(train["status"]) == ["complete"] * count
    assert [joules(v) for v in train["gpu_kwh"]] == pytest.approx([200.0] * count)
    assert list(train["loss"]) == pytest.approx([1.0 / (e + 1) for e in range(count)])
    assert list(frame.columns[: len(EPOCH_COLUMNS)]) == list(EPOCH_COLUMNS)
    devices = pd.read_csv(energy.run_dir / "devices.csv")
    assert list(devices[devices["phase"] == "train"]["epoch"]) == list(range(count))
    assert json.loads((energy.run_dir / "run.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in energy.run_dir.iterdir()) == ["devices.csv", "epochs.csv", "run.json"]


@pytest.mark.parametrize(
    "disk", [(errno.ENOSPC,), (errno.EACCES,), (errno.ENOSPC, True)], indirect=True, ids=["full", "denied", "short"]
)
def test_rows_written_when_the_disk_recovers(tmp_path, clock, caplog, disk):
    energy = run_epochs(tmp_path, clock, disk, broken_epochs={1, 2})  # the header grows during epoch 2
    assert disk.failures > 0
    assert_complete_and_clean(energy, 5)
    warnings = tracker_warnings(caplog)
    assert len(warnings) == 1 and os.strerror(disk.code) in warnings[0].getMessage()


@pytest.mark.parametrize("disk", [(errno.ENOSPC,), (errno.ENOSPC, True)], indirect=True, ids=["full", "short"])
def test_disk_full_until_the_end_keeps_the_rows_already_written(tmp_path, clock, caplog, disk):
    energy = run_epochs(tmp_path, clock, disk, broken_epochs={2, 3, 4, 5})
    summary = energy.summary()
    assert summary.epochs == 5 and summary.status == "complete"  # the training finished and was measured
    assert joules(summary.gpu_kwh) == pytest.approx(100.0 * 10)
    on_disk = load_run(energy.run_dir).epochs
    # Every row that was whole on disk before the disk filled is still there, and no half row is read.
    assert [(r["epoch"], r["phase"]) for r in on_disk][:2] == [(0, "train"), (1, "train")]
    assert all(r["status"] == "complete" and r["run"] == energy.run_dir.name for r in on_disk)
    assert len(tracker_warnings(caplog)) == 1


@pytest.mark.parametrize("disk", [(errno.ENOSPC,)], indirect=True)
def test_disk_full_at_stop_then_free_again_for_the_next_run(tmp_path, clock, caplog, disk):
    sensor = FakeSensor("gpu:0", "gpu", steady(100.0), clock)
    with quiet_tracker(tmp_path, clock, sensors=[sensor]) as energy:
        with energy.epoch(0):
            advance(energy, clock, 2)
        disk.broken = True  # run.json's final rewrite and the last rows fail
    assert json.loads((energy.run_dir / "run.json").read_text())["status"] == "running"  # the old one, whole
    disk.broken = False
    with quiet_tracker(tmp_path, clock, sensors=[sensor]) as second:
        with second.epoch(0):
            advance(second, clock, 2)
    assert [r["epoch"] for r in load_run(second.run_dir).epochs if r["phase"] == "train"] == [0]
    assert len(tracker_warnings(caplog)) == 1
