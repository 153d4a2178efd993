"""``energy-tracker run`` under the signals a cluster sends, and with commands that fork their work
(issue 20, item 13). Real processes: the console script, a Python child, its own children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_cli import script
from tracker import load_run

HANDLES = """
import os, signal, sys, time
def stop(signum, frame):
    print("got", signum, flush=True)
    sys.exit(7)
for name in ("SIGUSR1", "SIGUSR2", "SIGHUP"):
    signal.signal(getattr(signal, name), stop)
print(os.getpid(), flush=True)
time.sleep(20)
"""

DEFAULT = "import os, time; print(os.getpid(), flush=True); time.sleep(20)"


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def wrapped(tmp_path, name, child):
    args = [script(), "run", "--log-dir", str(tmp_path), "--run-name", name, "--", sys.executable, "-c", child]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def command_row(tmp_path, name):
    (row,) = [r for r in load_run(tmp_path / name).epochs if r["phase"] == "command"]
    return row


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP])
def test_a_requeue_or_hangup_signal_reaches_the_command_and_the_row_is_written(tmp_path, signum):
    with wrapped(tmp_path, "sig", HANDLES) as process:
        child = int(process.stdout.readline())
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 7, err  # bf1c16a: the wrapper killed by the signal (-10, -12, -1)
    assert out == f"got {int(signum)}\n" and gone(child)
    row = command_row(tmp_path, "sig")
    assert (row["status"], row["exit_code"]) == ("interrupted", 7)


def test_a_hangup_the_command_does_not_handle_ends_it_and_no_process_is_orphaned(tmp_path):
    with wrapped(tmp_path, "hup", DEFAULT) as process:
        child = int(process.stdout.readline())
        process.send_signal(signal.SIGHUP)
        _, err = process.communicate(timeout=15)
    assert gone(child)  # bf1c16a: the command still sleeping, orphaned
    assert process.returncode == 128 + signal.SIGHUP, err
    assert command_row(tmp_path, "hup")["exit_code"] == 128 + signal.SIGHUP


LAUNCHER = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    time.sleep(2.0)
    open(sys.argv[1], "w").write("done")
    os._exit(0)
sys.exit(0)
"""


def test_a_command_that_forks_its_work_and_exits_is_measured_until_the_work_ends(tmp_path):
    marker = tmp_path / "work-done"
    args = [script(), "run", "--log-dir", str(tmp_path), "--run-name", "fork", "--", sys.executable, "-c", LAUNCHER,
            str(marker)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # bf1c16a: the wrapper returned at once, the work still running
    row = command_row(tmp_path, "fork")
    assert row["duration_s"] >= 1.9  # bf1c16a: 0.05 s for 2 s of work
    assert row["left_running"] == 1
    assert "left 1 process running" in done.stderr


def test_sigterm_reaches_the_work_a_launcher_left_running(tmp_path):
    launcher = LAUNCHER.replace("time.sleep(2.0)", "print(os.getpid(), flush=True); time.sleep(20)")
    args = [script(), "run", "--log-dir", str(tmp_path), "--run-name", "left", "--", sys.executable, "-c", launcher,
            str(tmp_path / "never")]  # fmt: skip
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        worker = int(process.stdout.readline())
        time.sleep(0.5)  # the launcher has exited: the worker is all that is left
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert gone(worker), err
    assert process.returncode == 0 and not (tmp_path / "never").exists()
    row = command_row(tmp_path, "left")
    assert (row["left_running"], row["status"]) == (1, "interrupted")
