"""Fixtures shared by every test."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from tracker.testing import FakeClock


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail any test that leaves a thread running (a sampler not stopped, say)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:
        thread.join(timeout=2.0)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock starting at 1000 s."""
    return FakeClock()


@pytest.fixture
def world_tmp():
    """A temporary directory that an unprivileged child can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="energy-tracker-sysfs-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
