"""Nothing the tracker raises in a Lightning hook ends the fit (issue #20, item 5, the same fault in Lightning).

A metric name that ``epochs.csv`` refuses (``-loss`` starts like a spreadsheet formula), or a tracker
stopped behind the callback's back, made the next hook raise into Lightning's loop on bf1c16a and the
fit died. Now the fit runs to its end, the failure is one warning, and the rows measured stay.
"""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("lightning")

from tests.reliability.support import tracker_warnings  # noqa: E402
from tests.test_lightning import ClockedModel, callback_for, only_run, trainer_for  # noqa: E402


class LogsAFormulaName(ClockedModel):
    def training_step(self, batch, batch_idx):
        self.log("-loss", 1.0)  # refused by epochs.csv: it would run as a formula in a spreadsheet
        return super().training_step(batch, batch_idx)


class StopsTheTracker(ClockedModel):
    def __init__(self, clock, energy):
        super().__init__(clock)
        self.energy = energy

    def training_step(self, batch, batch_idx):
        if (self.current_epoch, batch_idx) == (1, 1):
            self.energy.tracker.stop()  # every later call of the callback on it raises UsageError
        return super().training_step(batch, batch_idx)


def test_a_refused_metric_name_does_not_end_the_fit(tmp_path, clock, caplog):
    caplog.set_level(logging.WARNING)
    callback = callback_for(clock)
    model = LogsAFormulaName(clock)
    trainer = trainer_for(tmp_path, callback)
    trainer.fit(model)  # bf1c16a: ConfigurationError out of on_validation_end / on_train_epoch_end
    assert trainer.current_epoch == 2 and model.train_steps == 8  # both epochs trained
    assert tracker_warnings(caplog) == []  # the callback renames it (integrations/_metrics.py): nothing failed
    run = only_run(tmp_path)  # every row still closes, the refused name written as user_<name>
    assert any(isinstance(r.get("user_-loss"), float) for r in run.epochs)
    labels = [(r["epoch"], r["phase"], r["status"]) for r in run.epochs if r["phase"] in ("train", "validation")]
    assert labels == [(e, p, "complete") for e in (0, 1) for p in ("validation", "train")]
    assert run.info["status"] == "complete"


def test_a_tracker_stopped_behind_the_callbacks_back_does_not_end_the_fit(tmp_path, clock, caplog):
    caplog.set_level(logging.WARNING)
    callback = callback_for(clock)
    model = StopsTheTracker(clock, callback)
    trainer = trainer_for(tmp_path, callback)
    trainer.fit(model)  # bf1c16a: UsageError out of on_train_epoch_end
    assert trainer.current_epoch == 2 and model.train_steps == 8
    (warned,) = tracker_warnings(caplog)  # once, however many hooks failed after it
    assert "UsageError" in warned.getMessage()
    run = only_run(tmp_path)
    train = [(r["epoch"], r["status"]) for r in run.epochs if r["phase"] == "train"]
    assert train == [(0, "complete"), (1, "interrupted")]  # epoch 1 up to the stop, written by stop()
