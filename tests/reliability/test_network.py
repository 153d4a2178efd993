"""The network: a whole run makes zero socket and zero subprocess calls.

An audit hook (``sys.addaudithook``) watches the engine with this machine's real sensors, the logs,
the loop and Lightning callbacks and the CLI's ``report`` and ``devices``, in a subprocess
(``audit_script.py``), since an audit hook cannot be removed from the process that installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("audit_script.py")


def test_a_whole_run_opens_no_socket_and_starts_no_process(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["events"] == []
    # The hook works: the control window's socket and subprocess were seen.
    assert "socket.__new__" in report["controls"] and "subprocess.Popen" in report["controls"]
    assert report["codes"] == [0, 0, 0, 0]
    assert report["rows"]["engine"] >= 4 and report["rows"]["loop"] >= 2 and report["rows"]["lightning"] >= 2


def test_a_run_without_prometheus_port_does_not_load_the_network_module(tmp_path):
    # The endpoint is the one place the tracker may open a socket; without it, not even `socket` is imported.
    code = (
        "import sys; from tracker import EnergyTracker; "
        "EnergyTracker(log_dir=sys.argv[1], country='DEU').start().stop(); "
        "print('socket' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
