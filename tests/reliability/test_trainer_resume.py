"""The Hugging Face ``Trainer`` resumed from a mid-epoch checkpoint, or retried after an exception (issue #20, item 5).

The real ``Trainer`` (a 1-layer GPT-2 built from a config, on CPU) saves a checkpoint every 2 of its
4 steps per epoch (``save_strategy="steps"``, the default kind), so ``checkpoint-6`` lies in the
middle of epoch 1 (the Trainer's float epoch 1.5). Resuming from it must measure the rest of epoch 1
as epoch 1 (said so in its row), then epoch 2; a second ``train()`` after an exception continues the
same run; and nothing the tracker raises reaches the training loop.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tests.reliability.support import tracker_warnings  # noqa: E402
from tracker import load_run  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "distributed"))
import hf_script  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

pytestmark = pytest.mark.slow
tqdm = pytest.importorskip("tqdm")
tqdm.tqdm.monitor_interval = 0  # the checkpoints' progress bars would leave tqdm's monitor thread running


class Crash(TrainerCallback):
    """Raises once, at the end of global step ``at`` (a failing batch, a NaN check, a preempted node)."""

    def __init__(self, at: int) -> None:
        self.at, self.fired = at, False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at and not self.fired:
            self.fired = True
            raise RuntimeError(f"crash at step {self.at}")


def trainer(out: Path, epochs: int, callbacks: list) -> Trainer:
    """A 1-layer GPT-2 on 16 sequences, 4 steps per epoch, a checkpoint every 2 steps."""
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=4,
        eval_strategy="no", logging_strategy="no", save_strategy="steps", save_steps=2, report_to="none",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    return Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=hf_script.Sequences(16), callbacks=callbacks)


def train_rows(run_dir: Path) -> list[tuple[int, str]]:
    return [(r["epoch"], r["status"]) for r in load_run(run_dir).epochs if r["phase"] == "train"]


def test_resuming_from_a_mid_epoch_checkpoint_measures_the_rest_of_that_epoch(tmp_path, caplog):
    first = hf_script.energy_callback(tmp_path / "first", hf_script.fake_nvml())
    with pytest.raises(RuntimeError, match="crash at step 7"):
        trainer(tmp_path, 3, [first, Crash(7)]).train()
    first.close("interrupted")
    assert (tmp_path / "trainer" / "checkpoint-6").is_dir()  # global step 6 of 12: epoch 1.5
    callback = hf_script.energy_callback(tmp_path / "second", hf_script.fake_nvml())
    resumed = trainer(tmp_path, 3, [callback])
    resumed.train(resume_from_checkpoint=str(tmp_path / "trainer" / "checkpoint-6"))  # bf1c16a: UsageError
    (run_dir,) = (tmp_path / "second" / "logs").iterdir()
    assert train_rows(run_dir) == [(1, "complete"), (2, "complete")]
    rows = [r for r in load_run(run_dir).epochs if r["phase"] == "train"]
    assert "resumed at epoch 1.5" in rows[0]["notes"] and "resumed" not in (rows[1]["notes"] or "")
    assert load_run(run_dir).info["status"] == "complete"
    assert tracker_warnings(caplog) == []


def test_a_second_train_after_an_exception_continues_the_run(tmp_path, caplog):
    callback = hf_script.energy_callback(tmp_path, hf_script.fake_nvml())
    crash = Crash(6)
    retried = trainer(tmp_path, 2, [callback, crash])
    with pytest.raises(RuntimeError, match="crash at step 6"):
        retried.train()
    retried.train()  # no close() in between; bf1c16a: UsageError out of on_epoch_begin
    (run_dir,) = (tmp_path / "logs").iterdir()
    # the failed try's open epoch is written interrupted; the retry measures epochs 0 and 1 again
    assert train_rows(run_dir) == [(0, "complete"), (1, "interrupted"), (0, "complete"), (1, "complete")]
    run = load_run(run_dir)
    assert run.info["status"] == "complete" and callback.summary().epochs == 3
    assert tracker_warnings(caplog) == []


def test_a_retry_resuming_from_a_checkpoint_in_the_same_process(tmp_path, caplog):
    callback = hf_script.energy_callback(tmp_path, hf_script.fake_nvml())
    retried = trainer(tmp_path, 3, [callback, Crash(7)])
    with pytest.raises(RuntimeError):
        retried.train()
    retried.train(resume_from_checkpoint=str(tmp_path / "trainer" / "checkpoint-6"))
    (run_dir,) = (tmp_path / "logs").iterdir()
    assert train_rows(run_dir) == [(0, "complete"), (1, "interrupted"), (1, "complete"), (2, "complete")]
    assert load_run(run_dir).info["status"] == "complete"
    assert tracker_warnings(caplog) == []


class StopsTheTracker(TrainerCallback):
    """Stops the energy tracker behind its callback's back mid-epoch: every later tracker call raises."""

    def __init__(self, energy) -> None:
        self.energy = energy

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            self.energy.tracker.stop()


def test_no_exception_of_the_tracker_reaches_training(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    callback = hf_script.energy_callback(tmp_path, hf_script.fake_nvml())
    run = trainer(tmp_path, 3, [callback, StopsTheTracker(callback)])
    run.train()  # bf1c16a: UsageError out of on_epoch_end
    assert run.state.global_step == 12  # training went on to the end
    warned = tracker_warnings(caplog)
    assert len(warned) == 1 and "UsageError" in warned[0].getMessage()  # once, however many hooks failed
