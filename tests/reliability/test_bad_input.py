"""Bad input, table-driven: the right exception, a message naming the value, and nothing written lost.

Every public option of ``EnergyTracker`` and ``EnergyLoopCallback`` (construction), their methods
called wrongly or out of order (during a run that has already written rows), and the CLI's
subcommands (exit code 2 and one line on stderr naming the value).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from integrations.loop import EnergyLoopCallback
from tests.helpers import PATIENT
from tests.reliability.bad_options import OPTIONS, defaults, options_for, sensor
from tests.reliability.support import epochs, train_rows
from tracker import EnergyTracker, cli
from tracker.errors import ConfigurationError, UsageError
from tracker.session.config import Config
from tracker.testing import FakeClock, FakeSensor, steady


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_energy_tracker_rejects_bad_options_at_construction(case, paths):
    options, error, needle = options_for(case, paths)
    before = sorted(paths["dir"].rglob("*"))
    with pytest.raises(error) as raised:
        EnergyTracker(**defaults(options, paths))
    assert needle in str(raised.value)
    assert sorted(paths["dir"].rglob("*")) == before  # nothing created, nothing removed


@pytest.mark.parametrize("case", sorted(c for c in OPTIONS if c not in ("launch-type", "config-type")))
def test_loop_callback_rejects_bad_options_at_construction(case, paths):
    options, error, needle = options_for(case, paths)
    before = sorted(paths["dir"].rglob("*"))
    with pytest.raises(error) as raised:
        EnergyLoopCallback(**defaults(options, paths))
    assert needle in str(raised.value)
    assert sorted(paths["dir"].rglob("*")) == before


def test_config_and_tracker_give_the_same_message(paths):
    with pytest.raises(ConfigurationError) as from_config:
        Config(pue=0.5)
    with pytest.raises(ConfigurationError) as from_tracker:
        EnergyTracker(None, pue=0.5, sensors=[sensor()])
    assert str(from_config.value) == str(from_tracker.value)


# ---- methods called wrongly or out of order, in a run that has already written rows ----------------------------


@pytest.fixture
def running(tmp_path):
    """A tracker that has written epoch 0; the test misuses it, then the run must go on and finish."""
    clock = FakeClock()
    energy = EnergyTracker(
        tmp_path,
        sensors=[FakeSensor("gpu:0", "gpu", steady(100.0), clock)],
        clock=clock,
        sampling="manual",
        carbon_intensity_g_per_kwh=300.0,
        **PATIENT,
    )
    energy.start()
    with energy.epoch(0):
        clock.advance(1.0)
        energy.log_metrics({"loss": 1.0})
    written = (energy.run_dir / "epochs.csv").read_text()
    yield energy, clock
    assert (energy.run_dir / "epochs.csv").read_text().startswith(written)  # nothing written is lost
    energy.stop()
    assert [r["epoch"] for r in train_rows(epochs(energy))][:1] == [0]


def open_epoch(energy, index=1):
    energy.begin_epoch(index)


def open_phase(energy, name="validation"):
    energy.begin_phase(name)


MISUSE = {
    "epoch-negative": (None, lambda e: e.begin_epoch(-1), ConfigurationError, "-1"),
    "epoch-float": (None, lambda e: e.begin_epoch(1.0), ConfigurationError, "1.0"),
    "epoch-str": (None, lambda e: e.begin_epoch("1"), ConfigurationError, "'1'"),
    "epoch-bool": (None, lambda e: e.begin_epoch(True), ConfigurationError, "True"),
    "epoch-duplicate": (None, lambda e: e.begin_epoch(0), UsageError, "epoch(0)"),
    "epoch-duplicate-context": (None, lambda e: e.epoch(0).__enter__(), UsageError, "epoch(0)"),
    "epoch-inside-epoch": (open_epoch, lambda e: e.begin_epoch(2), UsageError, "epoch 1"),
    "epoch-inside-phase-of-epoch": (
        lambda e: (open_epoch(e), open_phase(e)),
        lambda e: e.begin_epoch(2),
        UsageError,
        "epoch(2)",
    ),
    "phase-inside-itself": (open_phase, lambda e: e.begin_phase("validation"), UsageError, "'validation'"),
    "phase-inside-itself-nested": (
        lambda e: (open_epoch(e), open_phase(e), open_phase(e, "test")),
        lambda e: e.begin_phase("validation"),
        UsageError,
        "'validation'",
    ),
    "phase-train": (None, lambda e: e.begin_phase("train"), ConfigurationError, "'train'"),
    "phase-other": (None, lambda e: e.begin_phase("other"), ConfigurationError, "'other'"),
    "phase-empty": (None, lambda e: e.begin_phase(""), ConfigurationError, "''"),
    "phase-type": (None, lambda e: e.begin_phase(3), ConfigurationError, "3"),
    "samples-negative": (None, lambda e: e.begin_epoch(1, samples=-5), ConfigurationError, "-5"),
    "samples-str": (None, lambda e: e.begin_phase("test", samples="10"), ConfigurationError, "'10'"),
    "add_samples-negative": (open_epoch, lambda e: e.add_samples(-1), ConfigurationError, "-1"),
    "add_samples-float": (open_epoch, lambda e: e.add_samples(2.5), ConfigurationError, "2.5"),
    "metrics-clash": (open_epoch, lambda e: e.log_metrics({"energy_kwh": 1}), ConfigurationError, "'energy_kwh'"),
    "metrics-type": (open_epoch, lambda e: e.log_metrics(5), ConfigurationError, "5"),
    "metrics-outside": (None, lambda e: e.log_metrics({"loss": 1}), UsageError, "log_metrics()"),
    "end-nothing-open": (None, lambda e: e.end(), UsageError, "end()"),
    "end-bad-status": (open_epoch, lambda e: e.end("failed"), ConfigurationError, "'failed'"),
    "stop-bad-status": (None, lambda e: e.stop("done"), ConfigurationError, "'done'"),
    "start-twice": (None, lambda e: e.start(), UsageError, "start()"),
    "resume-after-start": (None, lambda e: e.resume(e.state()), UsageError, "resume()"),
}


@pytest.mark.parametrize("case", sorted(MISUSE))
def test_methods_called_wrongly_raise_at_the_call_and_lose_nothing(case, running):
    energy, clock = running
    prepare, misuse, error, needle = MISUSE[case]
    if prepare:
        prepare(energy)
    with pytest.raises(error) as raised:
        misuse(energy)
    assert needle in str(raised.value)
    with contextlib.suppress(UsageError):  # the run goes on: close what the case opened, then one more epoch
        while True:
            energy.end()
    with energy.epoch(5):
        clock.advance(1.0)


def test_methods_before_start_and_after_stop(tmp_path):
    energy = EnergyTracker(tmp_path, sensors=[sensor()], carbon_intensity_g_per_kwh=300.0, **PATIENT)
    for call, needle in [
        (lambda: energy.begin_epoch(0), "epoch(0)"),
        (lambda: energy.begin_phase("test"), "test"),
        (lambda: energy.end(), "end()"),
        (lambda: energy.log_metrics({"a": 1}), "log_metrics"),
    ]:
        with pytest.raises(UsageError, match=r"not running|no epoch or phase open|outside") as raised:
            call()
        assert needle in str(raised.value) or "end()" in str(raised.value)
    assert energy.stop().rows == 0 and not list(tmp_path.iterdir())  # stop before start: a no-op
    with energy:
        with energy.epoch(0):
            pass
    rows = (energy.run_dir / "epochs.csv").read_text()
    with pytest.raises(UsageError, match=r"epoch\(1\)"):
        energy.begin_epoch(1)
    with pytest.raises(UsageError, match="start"):
        energy.start()
    assert (energy.run_dir / "epochs.csv").read_text() == rows


def test_resume_with_a_bad_state_names_it(tmp_path):
    energy = EnergyTracker(tmp_path, sensors=[sensor()], carbon_intensity_g_per_kwh=300.0, **PATIENT)
    with pytest.raises(ConfigurationError, match="nonsense"):
        energy.resume({"nonsense": 1})


# ---- the loop callbacks, out of order -------------------------------------------------------------------------


@pytest.fixture
def callback(tmp_path):
    cb = EnergyLoopCallback(log_dir=tmp_path, sensors=[sensor()], carbon_intensity_g_per_kwh=300.0, **PATIENT)
    yield cb
    if cb.tracker is not None:
        cb.on_train_end()


LOOP_MISUSE = {
    "epoch_begin-before-train": ([], lambda cb: cb.on_epoch_begin(0), UsageError, "on_epoch_begin()"),
    "epoch_end-before-train": ([], lambda cb: cb.on_epoch_end(0), UsageError, "on_epoch_end()"),
    "train_end-before-train": ([], lambda cb: cb.on_train_end(), UsageError, "on_train_end()"),
    "train_begin-twice": (["train"], lambda cb: cb.on_train_begin(), UsageError, "on_train_begin()"),
    "epoch-negative": (["train"], lambda cb: cb.on_epoch_begin(-2), ConfigurationError, "-2"),
    "epoch-duplicate": (["train", 0], lambda cb: cb.on_epoch_begin(0), UsageError, "epoch(0)"),
    "epoch_end-none-open": (["train", 0], lambda cb: cb.on_epoch_end(1), UsageError, "on_epoch_end(1)"),
    "epoch_end-other-epoch": (["train", "open1"], lambda cb: cb.on_epoch_end(3), UsageError, "epoch 1"),
    "epoch_end-phase-open": (["train", "open1", "val"], lambda cb: cb.on_epoch_end(1), UsageError, "'validation'"),
    "phase_end-none-open": (["train", "open1"], lambda cb: cb.on_phase_end(), UsageError, "on_epoch_end(1)"),
    "phase-inside-itself": (["train", "val"], lambda cb: cb.on_phase_begin("validation"), UsageError, "'validation'"),
    "epoch_end-bad-samples": (["train", "open1"], lambda cb: cb.on_epoch_end(1, samples=-4), ConfigurationError, "-4"),
    "epoch_end-bad-logs": (
        ["train", "open1"],
        lambda cb: cb.on_epoch_end(1, logs={"co2_kg": 1}),
        ConfigurationError,
        "'co2_kg'",
    ),
}


def loop_steps(cb, steps):
    for step in steps:
        if step == "train":
            cb.on_train_begin()
        elif step == "open1":
            cb.on_epoch_begin(1)
        elif step == "val":
            cb.on_phase_begin("validation")
        else:
            cb.on_epoch_begin(step)
            cb.on_epoch_end(step, logs={"loss": 0.5})


@pytest.mark.parametrize("case", sorted(LOOP_MISUSE))
def test_loop_callback_hooks_out_of_order(case, callback):
    steps, misuse, error, needle = LOOP_MISUSE[case]
    loop_steps(callback, steps)
    written = _epochs_text(callback)
    with pytest.raises(error) as raised:
        misuse(callback)
    assert needle in str(raised.value)
    assert _epochs_text(callback).startswith(written)
    if callback.tracker is not None:  # the run goes on after the error and finishes cleanly
        for kind, _ in reversed(callback._open):
            callback.on_phase_end() if kind == "phase" else callback.on_epoch_end(callback._open[-1][1])
        callback.on_epoch_begin(7)
        callback.on_epoch_end(7, logs={"loss": 0.1})
        rows = epochs(callback.tracker)
        assert rows[-1]["epoch"] == 7 and rows[-1]["status"] == "complete"


def _epochs_text(callback):
    if callback.tracker is None or callback.tracker.run_dir is None:
        return ""
    path = callback.tracker.run_dir / "epochs.csv"
    return path.read_text() if path.exists() else ""


# ---- the CLI ------------------------------------------------------------------------------------------------------


@pytest.fixture
def logs(tmp_path):
    """A log_dir holding one finished run, whose files must come out of every bad command unchanged."""
    with EnergyTracker(tmp_path / "logs", sensors=[sensor()], carbon_intensity_g_per_kwh=300.0, **PATIENT) as energy:
        with energy.epoch(0):
            pass
    return tmp_path / "logs"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(argv):
    """The exit code of ``cli.main(argv)``: returned for tracker errors, SystemExit for argparse's own."""
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


CLI = {
    "no-subcommand": ([], "required"),
    "unknown-subcommand": (["reprot", "{logs}"], "'reprot'"),
    "report-missing": (["report", "{tmp}/missing"], "missing"),
    "report-empty-dir": (["report", "{tmp}/empty"], "empty"),
    "report-file": (["report", "{tmp}/a_file"], "a_file"),
    "report-format": (["report", "{logs}", "--format", "xml"], "'xml'"),
    "report-paper-csv": (["report", "{logs}", "--paper", "--format", "csv"], "--paper"),
    "plot-no-runs": (["plot", "-o", "{tmp}/plot.png"], "RUN_OR_DIR"),
    "plot-output-under-file": (["plot", "{logs}", "-o", "{tmp}/a_file/plot.png"], "a_file"),
    "run-pue": (["run", "--log-dir", "{tmp}/runs", "--pue", "0.5", "--", "touch", "{tmp}/ran"], "0.5"),
    "run-pue-text": (["run", "--pue", "high", "--", "touch", "{tmp}/ran"], "'high'"),
    "run-interval": (
        ["run", "--log-dir", "{tmp}/runs", "--interval-s", "0", "--", "touch", "{tmp}/ran"],
        "--interval-s 0",  # the flag, not the Python keyword interval_s=
    ),
    "run-country": (["run", "--log-dir", "{tmp}/runs", "--country", "ZZZ", "--", "touch", "{tmp}/ran"], "'ZZZ'"),
    "run-region": (
        ["run", "--log-dir", "{tmp}/runs", "--country", "USA", "--region", "XX", "--", "touch", "{tmp}/ran"],
        "'XX'",
    ),
    "run-cloud": (
        [
            "run",
            "--log-dir",
            "{tmp}/runs",
            "--cloud-provider",
            "gcp",
            "--cloud-region",
            "mars-1",
            "--",
            "touch",
            "{tmp}/ran",
        ],
        "'mars-1'",
    ),
    "run-intensity-csv": (
        ["run", "--log-dir", "{tmp}/runs", "--intensity-csv", "{tmp}/bad.csv", "--", "touch", "{tmp}/ran"],
        "when,value",
    ),
    "run-intensity-negative": (
        ["run", "--log-dir", "{tmp}/runs", "--carbon-intensity", "-5", "--", "touch", "{tmp}/ran"],
        "-5",
    ),
    "run-log-dir-file": (["run", "--log-dir", "{tmp}/a_file", "--", "touch", "{tmp}/ran"], "a_file"),
    "run-log-dir-proc": (["run", "--log-dir", "/proc/self/energy", "--", "touch", "{tmp}/ran"], "/proc/self/energy"),
    "run-measure": (["run", "--log-dir", "{tmp}/runs", "--measure", "gpu,disk", "--", "touch", "{tmp}/ran"], "'disk'"),
    "run-cpu-tdp": (["run", "--log-dir", "{tmp}/runs", "--cpu-tdp-w", "-65", "--", "touch", "{tmp}/ran"], "-65"),
    "run-ram-w": (["run", "--log-dir", "{tmp}/runs", "--ram-w", "0", "--", "touch", "{tmp}/ran"], "--ram-w 0"),
    "run-run-name": (["run", "--log-dir", "{tmp}/runs", "--run-name", "a/b", "--", "touch", "{tmp}/ran"], "'a/b'"),
    "reconcile-no-meter": (["reconcile", "{logs}"], "--dcgm"),
    "reconcile-log-dir": (["reconcile", "{logs}", "--dcgm", "{tmp}/a_file"], "is not a run directory"),
    "reconcile-at": (["reconcile", "{logs}", "--dcgm", "{tmp}/a_file", "--at", "a_file=noon"], "'noon'"),
    "reconcile-plugin": (["reconcile", "{logs}", "--sacct", "{tmp}/a_file", "--slurm-plugin", "lustre"], "'lustre'"),
    "run-no-command": (["run", "--log-dir", "{tmp}/runs"], "command"),
    "run-unknown-command": (["run", "--log-dir", "{tmp}/runs", "--", "no-such-command-xyz"], "no-such-command-xyz"),
}


@pytest.mark.parametrize("case", sorted(CLI))
def test_cli_bad_input_exits_2_naming_the_value(case, logs, capsys, monkeypatch):
    tmp = logs.parent
    monkeypatch.chdir(tmp)  # whatever a command would write by default lands here, never in the repository
    (tmp / "empty").mkdir(exist_ok=True)
    (tmp / "a_file").write_text("x\n")
    (tmp / "bad.csv").write_text("when,value\n2024-01-01T00:00Z,300\n")
    argv, needle = CLI[case]
    argv = [a.format(tmp=tmp, logs=logs) for a in argv]
    before = snapshot(logs)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse prints its usage lines first
    assert last.startswith("energy-tracker") and "error:" in last and needle.format(tmp=tmp) in last
    assert not (tmp / "ran").exists() and not (tmp / "plot.png").exists()  # nothing ran
    assert not (tmp / "runs").exists() or not any((tmp / "runs").iterdir())
    assert snapshot(logs) == before
