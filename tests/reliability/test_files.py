"""Files (issue 20, items 14 and 15): text cells never cost a row, names never corrupt a CSV, a new
metric key never rewrites a long file.

Runs are made through the public API on a fake clock and a fake GPU; the files are read back by
:func:`tracker.load_run`, the report's CSV and ``pandas.read_csv``.
"""

from __future__ import annotations

import io
import json
import os

import pandas as pd
import pytest

from tests.helpers import PATIENT
from tracker import ConfigurationError, EnergyTracker, cli, load_run
from tracker.energy import J_PER_KWH
from tracker.testing import FakeSensor, steady

GPU_W = 100.0


def make_run(tmp_path, clock, epochs=3, metrics=None, run_name="r"):
    """A run of ``epochs`` 2 s epochs at 100 W; ``metrics(epoch)`` gives each epoch's metrics."""
    sensor = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock)
    energy = EnergyTracker(tmp_path, clock=clock, sensors=[sensor], run_name=run_name,
                           carbon_intensity_g_per_kwh=400.0, sampling="manual", **PATIENT)  # fmt: skip
    with energy:
        for epoch in range(epochs):
            with energy.epoch(epoch):
                clock.advance(2.0)
                if metrics is not None:
                    energy.log_metrics(metrics(epoch))
    return energy.run_dir


def train_joules(run):
    return sum(r["gpu_kwh"] for r in run.epochs if r["phase"] == "train") * J_PER_KWH


# ---- 14: a text cell's content never costs its row's energy ----------------------------------------------------------


@pytest.mark.parametrize("text", ["bad \ufffd byte", "nul \x00 here"])
def test_a_text_metric_with_unreadable_bytes_keeps_its_row_and_says_so(tmp_path, clock, text):
    run_dir = make_run(tmp_path, clock, metrics=lambda e: {"tag": text if e == 1 else "ok"})
    run = load_run(run_dir)
    assert [r["epoch"] for r in run.epochs if r["phase"] == "train"] == [0, 1, 2]  # bf1c16a: [0, 2], -33 %
    assert train_joules(run) == pytest.approx(3 * 2 * GPU_W)
    assert run.skipped_rows == {}
    (row,) = [r for r in run.epochs if r["epoch"] == 1]
    assert "unreadable" in row["notes"] and "tag" in row["notes"]


def test_undecodable_bytes_in_a_text_cell_keep_the_row(tmp_path, clock):
    run_dir = make_run(tmp_path, clock, metrics=lambda e: {"tag": f"name-{e}"})
    path = run_dir / "epochs.csv"
    path.write_bytes(path.read_bytes().replace(b"name-1", b"name-\xff\xfe"))
    run = load_run(run_dir)
    assert train_joules(run) == pytest.approx(3 * 2 * GPU_W) and run.skipped_rows == {}
    assert "tag" in next(r for r in run.epochs if r["epoch"] == 1)["notes"]


@pytest.mark.parametrize(
    "name",
    ["loss\nextra_column", "loss\rx", "a\x00b", '=HYPERLINK("http://x")', "@SUM(A1)", "+1+1", "-2+3"],
)
def test_a_metric_name_that_would_break_or_arm_the_csv_is_refused(tmp_path, clock, name):
    with pytest.raises(ConfigurationError) as caught:
        make_run(tmp_path, clock, epochs=1, metrics=lambda e: {name: 1.0})
    assert repr(name) in str(caught.value) and "instead" in str(caught.value)


def test_a_lightning_metric_by_a_refused_name_is_renamed_not_raised_into_training(tmp_path, clock):
    from tests.test_lightning import ClockedModel, callback_for, only_run, trainer_for

    class OddNames(ClockedModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            for name in ("-delta", "more_metrics", "loss"):
                self.log(name, out["loss"], on_step=False, on_epoch=True)
            return out

    trainer_for(tmp_path, callback_for(clock), num_sanity_val_steps=0, max_epochs=1).fit(OddNames(clock))
    (train,) = [r for r in only_run(tmp_path).epochs if r["phase"] == "train"]
    assert train["user_-delta"] == train["user_more_metrics"] == train["loss"]


def test_the_report_csv_neutralises_formulas_but_not_numbers(tmp_path, clock, capsys):
    make_run(tmp_path, clock, run_name="=SUM(1+1)", metrics=lambda e: {"note": "@SUM(1+1)", "delta": -1.5})
    assert cli.main(["report", "--format", "csv", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    frame = pd.read_csv(io.StringIO(out))
    assert set(frame["run"]) == {"'=SUM(1+1)"}  # bf1c16a: the formula raw
    assert set(frame["note"]) == {"'@SUM(1+1)"}
    assert list(frame["delta"]) == [-1.5, -1.5, -1.5]  # a negative number stays a number
    assert not any(cell[:1] in "=+-@\t\r" for line in out.splitlines() for cell in line.split(",")
                   if cell and not _is_number(cell))  # fmt: skip


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_text_metrics_round_trip_through_pandas(tmp_path, clock):
    run_dir = make_run(tmp_path, clock, metrics=lambda e: {"tag": f'a,b "q" {e}', "loss": 1.0 / (e + 1)})
    frame = pd.read_csv(run_dir / "epochs.csv")
    train = frame[frame["phase"] == "train"]
    assert list(train["tag"]) == ['a,b "q" 0', 'a,b "q" 1', 'a,b "q" 2']
    assert list(train["loss"]) == [1.0, 0.5, 1.0 / 3]


# ---- 15: a new metric key late in a run does not rewrite the file ------------------------------------------------


def test_a_late_new_metric_key_is_not_a_file_rewrite_and_reads_back(tmp_path, clock):
    def metrics(epoch):
        return {"loss": float(epoch), **({f"late_{epoch}": epoch} if epoch >= 150 else {})}

    sensor = FakeSensor("gpu:0", "gpu", steady(GPU_W), clock)
    energy = EnergyTracker(tmp_path, clock=clock, sensors=[sensor], run_name="long",
                           carbon_intensity_g_per_kwh=400.0, sampling="manual", **PATIENT)  # fmt: skip
    inodes = []
    with energy:
        for epoch in range(160):
            with energy.epoch(epoch):
                clock.advance(1.0)
                energy.log_metrics(metrics(epoch))
            if epoch >= 150:
                inodes.append(os.stat(energy.run_dir / "epochs.csv").st_ino)
    assert len(set(inodes[1:])) == 1  # bf1c16a: a new inode (a whole-file rewrite) at every epoch
    run = load_run(energy.run_dir)
    train = [r for r in run.epochs if r["phase"] == "train"]
    assert [r["loss"] for r in train] == [float(e) for e in range(160)]
    assert [r.get(f"late_{e}") for e, r in enumerate(train) if e >= 150] == list(range(150, 160))
    frame = pd.read_csv(energy.run_dir / "epochs.csv")
    assert list(frame["loss"].dropna()) == [float(e) for e in range(160)]
    late = [json.loads(c) for c in frame["more_metrics"].dropna()]
    assert late == [{f"late_{e}": e} for e in range(150, 160)]


def test_a_reopened_long_file_keeps_late_keys_in_the_json_column(tmp_path):
    from tracker.logs.reader import read_csv_rows
    from tracker.logs.writer import CsvLog

    path = tmp_path / "epochs.csv"
    first = CsvLog(path, ["run", "epoch"], more="more_metrics")
    for epoch in range(120):
        first.append({"run": "r", "epoch": epoch, "loss": 1.0})
    inode = os.stat(path).st_ino
    CsvLog(path, ["run", "epoch"], more="more_metrics").append({"run": "r", "epoch": 120, "loss": 1.0, "acc": 0.5})
    assert os.stat(path).st_ino != inode  # the JSON column is added once, by one rewrite
    inode = os.stat(path).st_ino
    CsvLog(path, ["run", "epoch"], more="more_metrics").append({"run": "r", "epoch": 121, "f1": 0.25})
    assert os.stat(path).st_ino == inode  # then never again
    rows = read_csv_rows(path)
    assert (rows[120]["acc"], rows[121]["f1"], rows[121]["loss"]) == (0.5, 0.25, None)
    assert len(rows) == 122 and "more_metrics" not in rows[0]
