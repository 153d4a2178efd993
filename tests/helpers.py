"""Helpers shared by tests: driving a tracker on a fake clock, and the real NVML where there is one."""

from __future__ import annotations

import json
import os
import pwd
import random
import socket
import time
import traceback
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tracker import EnergyTracker, load_run
from tracker.testing import FakeClock

# The edge deadline the tests give (``edge_deadline_s``, 10 ms by default): on a loaded CI machine an edge
# thread can wait longer than 10 ms for the CPU, its readings would then land just after the edge and move
# energy into the next row. Tests of the deadline itself leave it out; bench/ measures the real one.
PATIENT = {"edge_deadline_s": 2.0}


def gpu_tracker(tmp_path: Any, nvml: Any, **options: Any) -> EnergyTracker:
    """A tracker of the fake NVML's GPUs alone, costed at 100 g/kWh, with patient edges; ``options`` added.

    Sampled by hand (``sampling="manual"``: the test's ``run_for``/``run_lanes`` play the sampler on the fake
    clock), unless ``options`` say otherwise: a background sampler on a fake clock reads at whatever fake time
    its thread happens to wake, so a loaded machine would change the figures from one run to the next.
    """
    options = {"sampling": "manual", **PATIENT, **options}
    return EnergyTracker(tmp_path, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=100.0, **options)


def job_train_row(log_dir: Path, trackers: list[EnergyTracker], clock: FakeClock, seconds: float) -> dict[str, Any]:
    """Every rank's tracker of one job through epoch 0 together, ``seconds`` long; the job's merged ``train`` row."""
    with ExitStack() as stack:
        for energy in trackers:
            stack.enter_context(energy)
            stack.enter_context(energy.epoch(0))
        clock.advance(seconds)
    (job,) = [p for p in log_dir.iterdir() if p.is_dir()]
    (row,) = [r for r in load_run(job).epochs if r["phase"] == "train"]
    return row


def run_for(
    tracker: EnergyTracker,
    clock: FakeClock,
    seconds: float,
    interval_s: float = 1.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> None:
    """Advance the fake clock by ``seconds``, ticking once per ``interval_s`` slot as the sampler does.

    With ``jitter=0`` the ticks fall at the end of each slot; with ``jitter=1`` anywhere in it.
    """
    rng = rng or random.Random(0)
    end = clock() + seconds
    slots = round(seconds / interval_s)
    for slot in range(1, slots + 1):
        when = end - seconds + (slot - jitter * rng.random()) * interval_s
        clock.advance(max(0.0, when - clock()))
        tracker.sample()
    clock.advance(max(0.0, end - clock()))


def run_lanes(tracker: EnergyTracker, clock: FakeClock, seconds: float, rng: random.Random) -> None:
    """Advance the fake clock by ``seconds``, reading each lane (sensors read equally often) once per slot of its own.

    As the samplers do with ``jitter=1``: each reading at a uniformly random moment of its slot.
    """
    start = clock()
    events = []
    for order, (h, names) in enumerate(tracker.sampling.lanes):
        events += [(start + (k + rng.random()) * h, order, names) for k in range(round(seconds / h))]
    for when, _, names in sorted(events, key=lambda e: e[:2]):
        clock.advance(max(0.0, when - clock()))
        tracker.sample(names)
    clock.advance(max(0.0, start + seconds - clock()))


def real_nvml() -> Any:
    """The real ``pynvml``, initialised; the test is skipped where it or an NVIDIA driver is missing."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        pytest.skip(f"no NVIDIA driver here: {e}")
    return pynvml


def run_unprivileged(fn):
    """Run ``fn`` where file modes are enforced, returning its JSON-able result.

    Root ignores file modes, so as root ``fn`` runs in a forked child that has dropped to
    ``nobody``; otherwise it runs here. Everything it needs must already be imported.
    """
    if os.geteuid() != 0:
        return fn()
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                outcome = {"result": fn()}
            except BaseException:
                outcome = {"raised": traceback.format_exc()}
            with os.fdopen(write_end, "w") as f:
                json.dump(outcome, f)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        text = f.read()
    os.waitpid(pid, 0)
    outcome = json.loads(text)
    assert "raised" not in outcome, outcome.get("raised")
    return outcome["result"]


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports free on loopback now (a server's, ranks' ``port + local rank``)."""
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                for offset in range(1, count):
                    with socket.socket() as other:
                        other.bind(("127.0.0.1", port + offset))
                return port
            except OSError:
                continue


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Return once ``url`` answers; raise what the last try raised after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)
