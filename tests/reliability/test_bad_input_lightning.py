"""Bad input to the Lightning callback, table-driven (the same table as ``EnergyTracker``'s).

Every option is checked when ``EnergyCallback`` is constructed, except the log directory, which the
callback checks at ``setup`` (its default lies under ``trainer.log_dir``): there the fit
must fail before the first batch, writing nothing.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from integrations.lightning import EnergyCallback
from tests.helpers import PATIENT
from tests.reliability.bad_options import OPTIONS, defaults, options_for
from tracker.errors import ConfigurationError

NOT_OPTIONS = {"rank-negative", "rank-str", "rank-bool", "launch-type", "config-type"}
AT_SETUP = {"log_dir-file", "log_dir-under-file", "log_dir-proc"}


def callback_options(case, paths):
    options, error, needle = options_for(case, paths)
    options = defaults(options, paths)
    options.pop("log_dir", None) if options.get("log_dir") is None else None
    return options, error, needle


@pytest.mark.parametrize("case", sorted(set(OPTIONS) - NOT_OPTIONS - AT_SETUP - {"unknown-option"}))
def test_energy_callback_rejects_bad_options_at_construction(case, paths):
    options, error, needle = callback_options(case, paths)
    before = sorted(paths["dir"].rglob("*"))
    with pytest.raises(error) as raised:
        EnergyCallback(**options)
    assert needle in str(raised.value)
    assert sorted(paths["dir"].rglob("*")) == before


@pytest.mark.parametrize("option", ["rank", "launch", "config", "cuntry"])
def test_energy_callback_names_an_option_it_does_not_take(option):
    with pytest.raises(ConfigurationError, match=rf"EnergyCallback\({option}=\.\.\.\) is not an option"):
        EnergyCallback(**{option: 1})


class CountingModel(BoringModel):
    batches = 0

    def training_step(self, batch, batch_idx):
        CountingModel.batches += 1
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("case", sorted(AT_SETUP))
def test_energy_callback_bad_log_dir_fails_the_fit_before_the_first_batch(case, paths, tmp_path):
    options, error, needle = callback_options(case, paths)
    callback = EnergyCallback(**options, **PATIENT)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path / "root",
        callbacks=[callback],
    )
    CountingModel.batches = 0
    before = sorted(paths["dir"].rglob("*"))
    with pytest.raises(error) as raised:
        trainer.fit(CountingModel())
    assert needle in str(raised.value)
    assert CountingModel.batches == 0
    assert sorted(p for p in paths["dir"].rglob("*") if "root" not in p.parts) == before
    assert callback.summary() is None
