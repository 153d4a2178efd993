"""Ctrl-C in the middle of a Lightning fit, without and then with ``EnergyCallback`` (run as a subprocess).

Lightning turns a KeyboardInterrupt into a graceful shutdown and ``sys.exit(1)``, ignoring SIGINT from
then on, so this runs apart from the test process. Prints JSON: how each fit ended.

Usage: ``python lightning_script.py WORK_DIR``
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.demos.boring_classes import BoringModel  # noqa: E402

from integrations.lightning import EnergyCallback  # noqa: E402
from tracker.testing import FakeSensor, steady  # noqa: E402


class InterruptedModel(BoringModel):
    """Presses Ctrl-C at the third batch of the second epoch."""

    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 2:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5.0)  # the KeyboardInterrupt lands here, in the user's code
        return super().training_step(batch, batch_idx)


def fit(work: Path, callbacks: list) -> list:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left it ignored after the last fit
    trainer = pl.Trainer(
        max_epochs=3,
        limit_train_batches=4,
        limit_val_batches=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=work,
        callbacks=callbacks,
    )
    try:
        trainer.fit(InterruptedModel())
    except SystemExit as exit_:
        return ["SystemExit", exit_.code]
    except BaseException as error:  # whatever it is, the test compares it with the plain fit's
        return [type(error).__name__, str(error)]
    return ["returned", None]


def main() -> None:
    work = Path(sys.argv[1])
    plain = fit(work / "plain", [])
    sensors = [FakeSensor("gpu:0", "gpu", steady(200.0)), FakeSensor("cpu", "cpu", steady(20.0), method="rapl")]
    callback = EnergyCallback(
        log_dir=str(work / "energy"), sensors=sensors, interval_s=0.01, carbon_intensity_g_per_kwh=300.0
    )
    tracked = fit(work / "tracked", [callback])
    print(json.dumps({"plain": plain, "tracked": tracked}))


if __name__ == "__main__":
    main()
