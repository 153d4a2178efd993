"""Starting the multi-process tests' jobs: ``torchrun`` agents, with an environment cleared of any launcher's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RANK_SCRIPT = Path(__file__).parent / "rank_script.py"


def free_port() -> int:
    """A TCP port free on this machine now, for a rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    """This process's environment less any launcher's or scheduler's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    for name in ("CUDA_VISIBLE_DEVICES", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **extra}


def torchrun(
    out: Path, *rendezvous: str, script: Path = RANK_SCRIPT, script_args: tuple[str, ...] = (), **env: str
) -> subprocess.Popen:
    """``torchrun`` with the rendezvous arguments given, running ``script OUT *script_args``."""
    command = [sys.executable, "-m", "torch.distributed.run", *rendezvous, str(script), str(out), *script_args]
    return subprocess.Popen(
        command, env=environment(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for ``process``; fail with the end of its output unless it exits 0."""
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output
