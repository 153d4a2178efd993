"""The ``energy-tracker`` command, in-process (``main([...])``) and as real subprocesses.

Run directories are written by ``EnergyTracker`` with fake sensors of known power (GPU 250 W,
CPU 50 W, RAM 6 W) driven by a fake clock, so every figure in the output is known.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread

from tests.helpers import PATIENT, free_port, wait_http
from tracker import EnergyTracker, load_run
from tracker.cli import main
from tracker.testing import FakeClock, FakeSensor, steady

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
J_PER_KWH = 3_600_000


def make_run(log_dir: Path, name: str, epochs: int = 2, gpu: bool = True) -> Path:
    """``epochs`` epochs of 60 s at 306 W (250 GPU counter + 50 CPU estimate + 6 RAM model), 400 g/kWh, PUE 1.5."""
    clock = FakeClock()
    sensors = [
        FakeSensor("cpu", "cpu", steady(50.0), clock, method="tdp_estimate", info={"model": "AMD EPYC 7763"}),
        FakeSensor("ram", "ram", steady(6.0), clock, method="ram_model", info={"model": "0.375 W/GiB"}),
    ]
    if gpu:
        sensors.append(FakeSensor("gpu:0", "gpu", steady(250.0), clock, info={"name": "NVIDIA H100 80GB HBM3"}))
    options = {"sensors": sensors, "clock": clock, "carbon_intensity_g_per_kwh": 400.0, "pue": 1.5}
    with EnergyTracker(log_dir, run_name=name, **options, **PATIENT) as energy:
        for i in range(epochs):
            with energy.epoch(i):
                clock.advance(60.0)
                energy.log_metrics({"loss": 2.0 - i})
    return log_dir / name


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tracker ARGS`` as a subprocess."""
    return subprocess.run([sys.executable, "-m", "tracker", *args], capture_output=True, text=True, cwd=cwd)


def script() -> str:
    found = Path(sys.executable).with_name("energy-tracker")
    path = str(found) if found.exists() else shutil.which("energy-tracker")
    assert path, "the energy-tracker console script is not installed (pip install -e .)"
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    make_run(tmp_path / "logs", "first", epochs=2)
    make_run(tmp_path / "logs", "second", epochs=4, gpu=False)
    return tmp_path / "logs"


# ---- report ---------------------------------------------------------------------------------------------------------


def test_report_json_in_process(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    first, second = document["runs"]
    assert first["totals"]["energy_kwh"] == pytest.approx(2 * 60 * 306 / J_PER_KWH, rel=1e-12)
    assert first["totals"]["co2_kg"] == pytest.approx(2 * 60 * 306 / J_PER_KWH * 1.5 * 0.4, rel=1e-12)
    assert second["totals"]["energy_kwh"] == pytest.approx(4 * 60 * 56 / J_PER_KWH, rel=1e-12)
    assert document["comparison"][1]["kwh_per_epoch_ratio"] == pytest.approx(56 / 306, rel=1e-12)
    assert document["comparison"][1]["duration_s_ratio"] == 2.0


def test_report_csv_parses_with_pandas(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs / "first"), str(runs / "second"), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.groupby("run")["energy_kwh"].count().to_dict() == {"first": 2, "second": 4}
    logged = pd.read_csv(runs / "second" / "epochs.csv")
    assert table[table["run"] == "second"]["energy_kwh"].tolist() == logged["energy_kwh"].tolist()
    assert table["loss"].tolist() == [2.0, 1.0, 2.0, 1.0, 0.0, -1.0]


def test_report_text_compares_two_runs(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index("Experiment logs: total and comparison (ratios to the first run)")
    header, first, second, total = (line.split("  ") for line in lines[start + 1 : start + 5])
    cells = [[c.strip() for c in line if c.strip()] for line in (header, first, second, total)]
    assert cells[0][:4] == ["run", "epochs", "time (min)", "energy (Wh)"]
    assert cells[1][:4] == ["first", "2", "2.00", "10.2"] and cells[2][:4] == ["second", "4", "4.00", "3.73"]
    assert cells[2][-4:] == ["2.00", "0.366", "0.183", "0.366"]  # time, energy, energy per epoch, CO2e ratios
    assert cells[3][:4] == ["total", "6", "6.00", "13.9"]


def test_report_markdown(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "## Run first" in out and "## Experiment logs: total and comparison (ratios to the first run)" in out
    assert "| GPU | 8.33 Wh [energy_counter] |" in out


def test_report_paper(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs / "first"), "--paper"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Training took 2.00 min on 1 × NVIDIA H100 80GB HBM3 GPU and an AMD EPYC 7763 CPU and ")
    assert "used 10.2 Wh of electricity" in out and "GPU energy was measured with the GPU's built-in energy" in out
    assert "CPU energy was estimated from CPU utilisation" in out and "RAM energy was estimated at 0.375 W" in out
    assert "400 g CO2e/kWh, a figure given by the authors, and a PUE of 1.50, this amounts to 6.12 g CO2e" in out
    assert main(["report", str(runs), "--paper", "--format", "json"]) == 0
    (paragraph,) = json.loads(capsys.readouterr().out)["paper"]  # one experiment: the directory
    assert paragraph["experiment"] == "logs" and paragraph["runs"] == ["first", "second"]
    assert "Training (2 runs) took 6.00 min in all" in paragraph["paper"]


def test_report_recosts_without_remeasuring(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs / "first"), "--country", "FRA", "--pue", "1.1", "--format", "json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    energy = 2 * 60 * 306 / J_PER_KWH
    assert run["totals"]["co2_kg"] == pytest.approx(energy * 1.5 * 0.4, rel=1e-12)  # as recorded
    assert run["recosted"]["co2_kg"] == pytest.approx(energy * 1.1 * run["recosted"]["g_per_kwh"] / 1000, rel=1e-12)
    assert run["recosted"]["country"] == "FRA" and "Ember" in run["recosted"]["source"]
    assert main(["report", str(runs / "first"), "--region", "US-CA"]) == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())  # a long fact wraps under its value
    assert "CO2e re-costed  " in out and "for USA/US-CA [argument: codecarbon usa_emissions.json" in words
    assert "CO2e            6.12 g" in out  # the recorded figure stays


def test_recosting_reaches_every_format_beside_the_recorded_figures(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(runs), "--country", "FRA", "--pue", "1.2", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["co2_kg"].tolist() == pytest.approx((table["energy_kwh"] * 1.5 * 0.4).tolist())  # as recorded
    assert (table["recosted_pue"] == 1.2).all() and (table["recosted_intensity_method"] == "argument").all()
    g = table["recosted_g_per_kwh"]
    assert g.nunique() == 1 and 40 < g[0] < 80  # France's figure, named in its column
    assert table["recosted_co2_kg"].tolist() == pytest.approx((table["energy_kwh"] * 1.2 * g / 1000).tolist())
    assert table["recosted_co2_kg_low"].tolist() == pytest.approx((table["energy_kwh_low"] * 1.2 * g / 1000).tolist())
    assert main(["report", str(runs / "first"), "--pue", "1.2", "--format", "json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert [r["recosted_co2_kg"] for r in run["rows"]] == pytest.approx([r["co2_kg"] * 1.2 / 1.5 for r in run["rows"]])
    assert {(r["recosted_pue"], r["recosted_g_per_kwh"]) for r in run["rows"]} == {(1.2, 400.0)}
    assert main(["report", str(runs / "first"), "--pue", "1.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("epoch "))
    assert "CO2e (g)  CO2e band (g)  CO2e re-costed (g)  loss" in header
    first, total = next(line for line in lines if line.startswith("  0 ")), lines[-1]
    assert first.split()[-4:] == ["3.06", "2.70–3.45", "2.45", "2.00"]  # recorded, band, re-costed at PUE 1.2, loss
    assert total.split()[-3:] == ["6.12", "5.41–6.89", "4.90"]


def test_report_reads_an_epochs_csv_and_stays_in_the_directory_given(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(runs / "first" / "epochs.csv"), "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["first"]
    assert main(["report", str(runs.parent)]) == 2  # the runs are two levels down
    assert "add --recursive" in capsys.readouterr().err
    assert main(["report", str(runs.parent), "--recursive", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 2


def test_report_paper_with_csv_is_a_usage_error(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs), "--paper", "--format", "csv"])
    assert exit_info.value.code == 2 and "--paper prints a paragraph" in capsys.readouterr().err


def test_report_without_runs_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"energy-tracker report: error: no runs in {str(tmp_path)!r}: give a run directory, its epochs.csv, or a "
        "log_dir whose subdirectories are runs (each has epochs.csv); to look in every directory below it, add "
        "--recursive (recursive=True)\n"
    )
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_subprocesses(runs: Path, tmp_path: Path) -> None:
    done = cli("report", str(runs), "--format", "json")
    assert done.returncode == 0 and len(json.loads(done.stdout)["runs"]) == 2
    done = subprocess.run([script(), "report", str(runs / "first"), "--paper"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("Training took 2.00 min")
    (tmp_path / "empty").mkdir()
    done = cli("report", str(tmp_path / "empty"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("energy-tracker report: error: no runs in") and "Traceback" not in done.stderr


# ---- plot -----------------------------------------------------------------------------------------------------------


def test_plot_writes_a_png(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "energy.png"
    assert main(["plot", str(runs), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (2 runs)\n"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(out).shape[1] == 1050  # single column: 3.5 in at 300 dpi


def test_plot_keeps_one_column_size_for_many_runs(tmp_path: Path) -> None:
    for i in range(5):
        make_run(tmp_path / "logs", f"run{i}", epochs=1 + i % 2)
    done = cli("plot", str(tmp_path / "logs"), "-o", str(tmp_path / "many.png"))
    assert done.returncode == 0, done.stderr
    assert imread(tmp_path / "many.png").shape[:2] == (1260, 1050)  # 3.5 x 4.2 in, whatever the run count


def test_plot_without_matplotlib_names_the_extra(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(runs), "-o", str(tmp_path / "x.png")]) == 2
    assert "pip install 'training-energy-tracker[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


# ---- run ------------------------------------------------------------------------------------------------------------


def test_run_returns_the_command_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    args = ["run", "--log-dir", str(tmp_path), "--run-name", "cmd", "--carbon-intensity", "300", "--pue", "1.1"]
    assert main([*args, "--", *command]) == 3
    assert "Energy tracker — cmd (interrupted)" in capsys.readouterr().err
    run = load_run(tmp_path / "cmd")
    (row,) = [r for r in run.epochs if r["phase"] == "command"]
    assert (row["status"], row["exit_code"], row["pue"], row["carbon_intensity_g_per_kwh"]) == (
        "interrupted",
        3,
        1.1,
        300.0,
    )
    assert run.info["status"] == "interrupted"


def test_run_as_console_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [script(), "run", "--run-name", "ok", "--country", "FRA", "--", sys.executable, "-c", "print('hello')"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n" and "Energy tracker — ok (complete)" in done.stderr
    run = load_run(tmp_path / "energy_logs" / "ok")
    assert run.info["carbon_intensity"]["country"] == "FRA"
    assert [r["exit_code"] for r in run.epochs if r["phase"] == "command"] == [0]


def test_run_passes_sigterm_to_the_command_and_writes_its_row(tmp_path: Path) -> None:
    child = "import time; print('ready', flush=True); time.sleep(60)"
    args = [script(), "run", "--log-dir", str(tmp_path), "--run-name", "term", "--", sys.executable, "-c", child]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "Energy tracker — term (interrupted)" in err
    (row,) = [r for r in load_run(tmp_path / "term").epochs if r["phase"] == "command"]
    assert (row["status"], row["exit_code"]) == ("interrupted", 128 + signal.SIGTERM)


def test_run_sinks_flag_reaches_the_tracker(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = [
        "run",
        "--log-dir",
        str(tmp_path),
        "--run-name",
        "tb",
        "--carbon-intensity",
        "300",
        "--sinks",
        "tensorboard",
    ]
    assert main([*args, "--", sys.executable, "-c", "pass"]) == 0
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))  # the sink's default: <run>/tensorboard
    events.Reload()
    rows = load_run(tmp_path / "tb").epochs
    logged = [e.value for e in events.Scalars("energy/total_kwh")]
    assert len(logged) == len(rows) and logged[-1] == pytest.approx(rows[-1]["cumulative_energy_kwh"], rel=1e-6)


def test_run_prometheus_flags_serve_and_push_during_the_command(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    port, gateway = free_port(), shutil.which("prometheus-pushgateway")
    # the command itself scrapes the endpoint the tracker serves while it runs
    scrape = (f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=10)"
              ".read().decode())")  # fmt: skip
    args = ["run", "--log-dir", str(tmp_path), "--run-name", "served", "--prometheus-port", f"127.0.0.1:{port}"]
    with contextlib.ExitStack() as stack:
        if gateway:
            gateway_port = free_port()
            stack.enter_context(serving([gateway, f"--web.listen-address=127.0.0.1:{gateway_port}"], gateway_port))
            args += ["--prometheus-pushgateway", f"http://127.0.0.1:{gateway_port}"]
        done = subprocess.run([script(), *args, "--", sys.executable, "-c", scrape], capture_output=True, text=True)
        pushed = read_url(f"http://127.0.0.1:{gateway_port}/metrics") if gateway else None
    assert done.returncode == 0, done.stderr
    assert "energy_tracker_co2e_kilograms_total{" in done.stdout and 'run="served"' in done.stdout
    if pushed is not None:  # the push gateway holds the series pushed at the end
        assert 'run="served"' in pushed and "energy_tracker_co2e_kilograms_total" in pushed


def read_url(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5.0) as reply:
        return reply.read().decode()


@contextlib.contextmanager
def serving(command: list[str], port: int):
    """Run a server until the block ends, once it answers on ``port``."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        yield process
    finally:
        process.terminate()
        process.wait(10)


def test_run_bad_input_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--log-dir", str(tmp_path / "logs"), "--pue", "0.8", "--", "true"]) == 2
    assert capsys.readouterr().err.startswith("energy-tracker run: error: --pue 0.8: PUE is facility energy")
    assert main(["run", "--log-dir", str(tmp_path / "logs"), "--", "no-such-command-here"]) == 2
    assert "command 'no-such-command-here' not found" in capsys.readouterr().err
    assert main(["run", "--log-dir", str(tmp_path / "logs")]) == 2
    assert "run needs a command after --" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


# ---- devices, help --------------------------------------------------------------------------------------------------


def test_devices_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    kinds = {s["kind"] for s in found["sensors"]}
    assert {"cpu", "ram"} <= kinds
    for absent in found["absent"]:
        assert f"{absent['source']} ({absent['kind']}): {absent['reason']}" in text
    if "gpu" not in kinds:
        assert any(a["source"] == "nvml" for a in found["absent"])
    if not any(s["method"] in ("energy_counter", "power_polling", "rapl", "rapl_dram") for s in found["sensors"]):
        assert any(a["source"] == "rapl" for a in found["absent"])
        assert "No GPU and no readable RAPL here" in text and "W/GiB" in text and "tdp_" in text


def test_devices_subprocess() -> None:
    done = cli("devices")
    assert done.returncode == 0 and done.stdout.startswith("Sensors found (power over 0.5 s):")


@pytest.mark.parametrize("command", [[], ["report"], ["plot"], ["devices"], ["run"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage: energy-tracker")


def test_cli_import_is_light() -> None:
    code = "import sys, tracker.cli; print(sorted(m for m in ('matplotlib', 'pandas', 'torch') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert done.stdout == "[]\n"


# ---- words for command-line users ------------------------------------------------------------------------------------


def test_messages_name_flags_not_keywords(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs), "--country", "XYZ"]) == 2
    err = capsys.readouterr().err
    assert "--country 'XYZ'" in err and "country=" not in err
    assert main(["report", str(runs), "--intensity", "-5"]) == 2
    err = capsys.readouterr().err
    assert "--intensity" in err and "g_per_kwh=" not in err


def test_a_mistyped_option_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--countyr", "FRA", "--", "true"])
    assert exit_.value.code == 2
    assert "unrecognized option --countyr: did you mean --country?" in capsys.readouterr().err
    with pytest.raises(TypeError, match=r"EnergyTracker\(countyr=\.\.\.\) is not an option; did you mean country\?"):
        EnergyTracker(countyr="FRA")


@pytest.mark.parametrize("spelling", ["None", "none"])
def test_log_dir_none_writes_nothing_as_its_help_says(tmp_path: Path, spelling: str) -> None:
    done = subprocess.run([script(), "run", "--log-dir", spelling, "--", "true"], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []  # no folder named None/, no energy_logs/
    assert "--country" in done.stderr and "country=" not in done.stderr  # the start line, in the CLI's words


def test_a_users_own_tracker_py_is_named_when_it_shadows_the_package(tmp_path: Path) -> None:
    (tmp_path / "tracker.py").write_text("GPU = None\n")
    done = subprocess.run([sys.executable, "-c", "import integrations.lightning"], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 1
    assert f"'tracker' is {tmp_path / 'tracker.py'}, not training-energy-tracker's package" in done.stderr
    assert "rename it" in done.stderr
