"""A whole measured training under an audit hook; prints, as JSON, the network and process events seen.

Run as a subprocess by ``test_network.py`` (audit hooks cannot be removed, so they stay out of the
test process). The hook records only while ``WINDOW`` is open: third-party imports (torch,
Lightning) come before it; our imports, the engine with this machine's real sensors, the loop and
Lightning callbacks, and the CLI's ``report`` and ``devices`` run inside it. A control window at the
end opens a socket and a subprocess, to prove that the hook sees them.

Usage: ``python audit_script.py WORK_DIR``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

WATCHED_PREFIXES = (
    "socket.",
    "subprocess.",
    "urllib.",
    "http.client.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "nntplib.",
    "telnetlib.",
    "webbrowser.",
)
WATCHED = {"os.system", "os.posix_spawn", "os.exec", "os.spawn", "os.fork", "os.forkpty", "os.startfile", "pty.spawn"}
WINDOW: list[list[str]] | None = None


def hook(event: str, args: tuple) -> None:
    if WINDOW is not None and (event.startswith(WATCHED_PREFIXES) or event in WATCHED):
        WINDOW.append([event, repr(args)[:300]])


def engine(work: Path) -> None:
    from tracker import EnergyTracker

    with EnergyTracker(work / "engine", country="DEU", interval_s=0.02, epochs=2, power_trace=True) as energy:
        for epoch in range(2):
            with energy.epoch(epoch, samples=10):
                sum(i * i for i in range(200_000))
                with energy.phase("validation"):
                    sum(i for i in range(50_000))
                energy.log_metrics({"loss": 1.0 / (epoch + 1)})


def loop_callback(work: Path) -> None:
    from integrations.loop import EnergyLoopCallback

    callback = EnergyLoopCallback(log_dir=work / "loop", country="FRA", interval_s=0.02)
    callback.on_train_begin()
    for epoch in range(2):
        callback.on_epoch_begin(epoch)
        sum(i * i for i in range(100_000))
        callback.on_epoch_end(epoch, logs={"loss": 0.5}, samples=4)
    callback.on_train_end()


def lightning_callback(work: Path) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.demos.boring_classes import BoringModel

    from integrations.lightning import EnergyCallback

    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=4,
        limit_val_batches=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=work,
        callbacks=[EnergyCallback(log_dir=str(work / "lightning"), country="USA", region="CA", interval_s=0.02)],
    )
    trainer.fit(BoringModel())


def command_line(work: Path) -> list[int]:
    from tracker import cli

    runs = [str(work / name) for name in ("engine", "loop", "lightning")]
    return [
        cli.main(["report", *runs]),
        cli.main(["report", *runs, "--format", "json"]),
        cli.main(["report", *runs, "--paper"]),
        cli.main(["devices", "--json"]),
    ]


def control() -> None:
    import socket
    import subprocess

    socket.socket().close()
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def main() -> None:
    global WINDOW
    work = Path(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository
    import lightning.pytorch  # noqa: F401  third-party imports: before the window
    import torch  # noqa: F401

    sys.addaudithook(hook)
    WINDOW = seen = []
    engine(work)
    loop_callback(work)
    lightning_callback(work)
    codes = command_line(work)
    WINDOW = controls = []
    control()
    WINDOW = None
    from tracker import load_runs

    rows = {name: len(load_runs(work / name)[0].epochs) for name in ("engine", "loop", "lightning")}
    print(json.dumps({"events": seen, "controls": [e for e, _ in controls], "codes": codes, "rows": rows}))


if __name__ == "__main__":
    main()
