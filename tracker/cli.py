"""The ``energy-tracker`` command (also ``python -m tracker``).

Subcommands (each has ``--help``):

- ``report RUN_OR_DIR... [--format text|markdown|csv|json] [--paper]``: a table per run and a
  comparison of runs, grouped into experiments; ``--paper`` prints a ready-to-paste paragraph per
  experiment instead; ``--country/--region/--intensity/--pue`` re-cost the recorded energy;
  ``--recursive`` looks below the directories given.
- ``plot RUN_OR_DIR... -o out.png``: energy per epoch by component and cumulative CO2e.
- ``watch RUN_OR_DIR [--interval S]``: a live view of a run while it trains (rows, totals, forecast),
  ending when the run ends.
- ``devices [--json]``: the sensors found here, their method and current power, and why each
  absent source is absent.
- ``reconcile RUN --dcgm FILE... [--at FILE=TIME]`` or ``reconcile RUN --sacct FILE``: the run's energy
  beside an independent meter's for the same window: GPU by GPU (dcgm-exporter's energy counter, from
  scrapes of its endpoint or a Prometheus query answer) or the job's (Slurm's accounting), with the
  difference and which devices and time each side covers.
- ``run [options] -- COMMAND ...``: measures COMMAND as one run (one phase named ``command``),
  prints the summary to stderr and exits with COMMAND's exit code. SIGTERM, SIGINT, SIGHUP, SIGUSR1
  and SIGUSR2 are passed on to COMMAND; processes COMMAND leaves running when it exits (a launcher
  that forks its work) are measured until they end (a warning names them; the row's ``left_running``
  counts them).

Exit codes: 0 success; 2 bad input (an invalid option, a path without runs), with one line on
stderr; 3 (``report`` and ``plot``) some runs could not be read: the readable ones are reported,
and each one skipped is named on stderr with the reason. ``run`` exits with COMMAND's code.
Only :mod:`argparse` and the option declarations (:mod:`tracker.session.config`, from which
``run``'s flags are made) are imported up front, so ``--help`` is quick; each subcommand imports
what it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

PROG = "energy-tracker"
USAGE_ERROR = 2
SOME_UNREADABLE = 3


def _report(args: argparse.Namespace) -> int:
    from tracker.report import paper
    from tracker.report import render as report
    from tracker.report.experiments import Recost, group, recost

    skipped: list[tuple[Any, str]] = []
    cost = Recost.build(args.country, args.region, args.intensity, args.pue)
    summaries = recost(report.load_summaries(args.runs, skipped, recursive=args.recursive), cost)
    if args.model_card:
        from tracker.report.model_card import model_card_text

        sys.stdout.write(model_card_text(summaries, args.training_type))
    elif not args.paper:
        sys.stdout.write(report.render(summaries, args.format))
    elif args.format == "json":
        texts = []
        for experiment in group(summaries):
            text, refs = paper.experiment_paragraph(experiment)
            texts.append({"experiment": experiment.name, "runs": [s.name for s in experiment.runs], "paper": text,
                          "references": refs.items})  # fmt: skip
        sys.stdout.write(json.dumps({"paper": texts}, indent=2) + "\n")
    else:
        sys.stdout.write(paper.paper_text(summaries))
    return _skipped(args, skipped)


def _skipped(args: argparse.Namespace, skipped: list[tuple[Any, str]]) -> int:
    """Name each run that could not be read on stderr; the exit code: 0, or 3 if any was skipped."""
    for path, reason in skipped:
        print(f"{PROG} {args.subcommand}: skipped {path}: {reason}", file=sys.stderr)
    return SOME_UNREADABLE if skipped else 0


def _plot(args: argparse.Namespace) -> int:
    from tracker.report import plot
    from tracker.report import render as report

    skipped: list[tuple[Any, str]] = []
    summaries = report.load_summaries(args.runs, skipped, recursive=args.recursive)
    path = plot.plot_runs(summaries, args.output)
    print(f"wrote {path} ({len(summaries)} run{'s' if len(summaries) != 1 else ''})")
    return _skipped(args, skipped)


def _watch(args: argparse.Namespace) -> int:
    from tracker.report.watch import watch

    try:
        status = watch(args.run, sys.stdout, interval_s=args.interval, redraw=sys.stdout.isatty())
    except KeyboardInterrupt:
        return 0
    return 0 if status == "complete" else 1


def _devices(args: argparse.Namespace) -> int:
    from tracker.report import devices

    found = devices.survey()
    sys.stdout.write(json.dumps(found, indent=2, default=str) + "\n" if args.json else devices.describe(found))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from tracker.errors import ConfigurationError
    from tracker.report import reconcile

    try:
        if args.sacct:
            rec = reconcile.reconcile_sacct(args.run, args.sacct, args.job_id, args.slurm_plugin)
        else:
            rec = reconcile.reconcile_dcgm(args.run, args.dcgm, reconcile.parse_at(args.at))
    except ValueError as exc:  # a run's file the tracker did not write (reader.load_run)
        raise ConfigurationError(str(exc)) from exc
    sys.stdout.write(reconcile.render(rec, args.format))
    return 0


def _run(args: argparse.Namespace) -> int:
    import shutil

    from tracker.errors import ConfigurationError
    from tracker.session.config import options_from_flags
    from tracker.session.energy_tracker import EnergyTracker

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigurationError("run needs a command after --, e.g. energy-tracker run -- python train.py")
    if shutil.which(command[0]) is None:
        raise ConfigurationError(f"command {command[0]!r} not found: give an executable on PATH or a path to one")
    with _cli_words_in_logs():
        return _measure(command, EnergyTracker(**options_from_flags(args)))


def _measure(command: list[str], tracker: Any) -> int:
    """Run ``command`` as the ``command`` phase of ``tracker``'s run; the command's exit code."""
    from tracker.logs.schema import COMMAND, COMPLETE, INTERRUPTED

    tracker.start()
    code, status = 130, INTERRUPTED
    try:
        tracker.begin_phase(COMMAND)
        returned, left, stopped = _execute(command)
        code = returned if returned >= 0 else 128 - returned  # killed by signal N: the shell's 128 + N
        tracker.log_metrics({"exit_code": code, **({"left_running": left} if left else {})})
        status = COMPLETE if code == 0 and not stopped else INTERRUPTED
        tracker.end(status)
    finally:
        summary = tracker.stop(status)
    print(summary, file=sys.stderr)
    return code


# Signals passed on to the command: termination (kill, scancel), interruption, hang-up, and the
# user signals schedulers send before a time limit (SLURM's --signal, Lightning's requeue on USR1).
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
GRACE_S = 10.0  # after SIGTERM or SIGINT, the command's time to stop before it is killed


def _execute(command: list[str]) -> tuple[int, int, bool]:
    """Run ``command`` until it and whatever it left running have ended.

    Returns:
        the command's exit status (``-N`` if signal N ended it), and how many processes it left
        running when it exited (a launcher that forks its work and returns), measured until they ended,
        and whether those were sent SIGTERM, SIGINT or SIGHUP (the work was stopped, whatever the exit status).

    SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to the command (to what it left running,
    once it has exited), so that the run's row is still written. SIGINT too, when it was sent to
    this process alone (``kill -INT``, a job scheduler): a Ctrl-C at the terminal reaches the whole
    foreground process group, the command included, and is not sent twice. After SIGTERM or
    SIGINT the command is given 10 s to stop, then killed. On Linux this process becomes a child
    subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so the command's orphaned descendants become
    its children and are waited for.
    """
    import signal
    import subprocess
    import threading

    watch = _Watch()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if main_thread:
        for name in FORWARDED:
            previous[name] = signal.signal(getattr(signal, name), watch.forward)
    watch.ours = _children()  # called from Python (main([...])), this process may have children of its own
    subreaper = _set_subreaper(True)
    try:
        watch.child = subprocess.Popen(command)
        code = watch.child.wait()
        left = watch.wait_left() if subreaper else 0
        return code, left, watch.stopped
    finally:
        watch.cancel()
        if subreaper:  # the calling process is left as it was: it adopts no orphan of anyone else's later
            _set_subreaper(False)
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


class _Watch:
    """The command and what it leaves running: where a signal goes, and the grace timer after SIGTERM/SIGINT."""

    def __init__(self) -> None:
        self.child: Any = None
        self.ours: set[int] = set()  # children this process had before the command: not the command's
        self.left: list[int] = []
        self.stopped = False  # what the command left running was sent SIGTERM, SIGINT or SIGHUP
        self._timer: Any = None

    def forward(self, signum: int, frame: Any) -> None:
        """Pass ``signum`` on: to the command, or once it has exited, to what it left running."""
        import os
        import signal
        import threading

        if self.child is None:
            raise SystemExit(128 + signum)
        if self.child.returncode is None and self.child.poll() is None:
            if not (signum == signal.SIGINT and _terminal_interrupt()):
                self.child.send_signal(signum)
        else:
            self.stopped = self.stopped or signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
            for pid in self.left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)
        if signum in (signal.SIGTERM, signal.SIGINT) and self._timer is None:
            self._timer = threading.Timer(GRACE_S, self._kill)
            self._timer.daemon = True
            self._timer.start()

    def _kill(self) -> None:
        import os
        import signal

        with contextlib.suppress(OSError):
            self.child.kill()
        for pid in self.left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def cancel(self) -> None:
        """Stop the grace timer, if one runs."""
        if self._timer is not None:
            self._timer.cancel()

    def wait_left(self) -> int:
        """Wait for the processes the command left running (our children now); returns how many there were."""
        import logging
        import os

        self.left = sorted(_children() - self.ours)
        if self.left:
            logging.getLogger("tracker").warning(
                "energy-tracker run: the command exited but left %d process%s running (pid %s); measuring until "
                "they end (signals are passed on to them)", len(self.left), "" if len(self.left) == 1 else "es",
                ", ".join(map(str, self.left)),
            )  # fmt: skip
        count = len(self.left)
        while True:  # what they leave behind in turn is adopted too, and waited for
            for pid in self.left:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            self.left = sorted(_children() - self.ours)
            if not self.left:
                return count
            count += len(self.left)


def _children() -> set[int]:
    """The pids of this process's children."""
    import psutil

    return {p.pid for p in psutil.Process().children()}


def _set_subreaper(on: bool) -> bool:
    """Make this process adopt its orphaned descendants, or stop (Linux 3.4+); whether the call succeeded."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:  # this process's own symbols, libc's among them (ctypes.util.find_library would start ldconfig)
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _terminal_interrupt() -> bool:
    """Whether a SIGINT can have come from the terminal to our whole process group (we are its foreground)."""
    import os

    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _add_report(commands: Any) -> None:
    p = commands.add_parser(
        "report", help="tables of runs and a comparison", description="A table per run and a comparison of runs."
    )
    p.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                   help="a run directory, its epochs.csv, or a directory of runs")  # fmt: skip
    p.add_argument("--format", choices=("text", "markdown", "csv", "json"), default="text",
                   help="text (default), markdown, csv (the rows of every run) or json (everything)")  # fmt: skip
    p.add_argument("--paper", action="store_true",
                   help="print a ready-to-paste paragraph per experiment (text, markdown or json)")  # fmt: skip
    p.add_argument("--model-card", action="store_true",
                   help="print the Hugging Face model card's co2_eq_emissions YAML block per experiment")  # fmt: skip
    p.add_argument("--training-type", choices=("pre-training", "fine-tuning"), default="pre-training",
                   help="the model card's training_type (default pre-training)")  # fmt: skip
    p.add_argument(
        "--recursive",
        action="store_true",
        help="look for runs in every directory below (default: the directories given and their runs)",
    )
    recost = p.add_argument_group("re-costing", "CO2e with another grid or PUE, from the recorded energy "
                                  "(nothing is measured again; the recorded CO2e is shown beside it)")  # fmt: skip
    recost.add_argument("--country", help="ISO 3166 code of the grid, e.g. FRA")
    recost.add_argument("--region", help="a region: US-CA, CN-BJ, SE3 (with or without --country)")
    recost.add_argument("--intensity", type=float, metavar="G_PER_KWH", help="an explicit intensity, g CO2e/kWh")
    recost.add_argument("--pue", type=float, help="power usage effectiveness, >= 1.0")
    p.set_defaults(handler=_report)


def _add_plot(commands: Any) -> None:
    p = commands.add_parser(
        "plot", help="a paper figure: energy per epoch and cumulative CO2e",
        description="A single-column figure: energy per epoch by component (stacked bars, one panel per run, "
        "one scale) and every run's cumulative CO2e with its band. Needs matplotlib: "
        "pip install 'training-energy-tracker[plot]'.",
    )  # fmt: skip
    p.add_argument("--recursive", action="store_true", help="look for runs in every directory below")
    p.add_argument("runs", nargs="+", metavar="RUN_OR_DIR", help="a run directory, or a directory of runs")
    p.add_argument(
        "-o", "--output", default="energy.png",
        help="image file to write (.png at 300 dpi, .pdf, .svg; default energy.png)",
    )  # fmt: skip
    p.set_defaults(handler=_plot)


def _add_watch(commands: Any) -> None:
    p = commands.add_parser(
        "watch", help="a live view of a run while it trains",
        description="Refreshes a compact table of the run's rows, its totals and the forecast of the whole run "
        "while training writes them; ends when the run ends (exit code 0 if complete, 1 if interrupted).",
    )  # fmt: skip
    p.add_argument("run", metavar="RUN_OR_DIR", help="a run directory, or the log_dir a run writes into (its newest)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.set_defaults(handler=_watch)


def _add_devices(commands: Any) -> None:
    p = commands.add_parser(
        "devices",
        help="sensors found on this machine",
        description="Each sensor found, its method and current power (over 0.5 s), and why each absent source "
        "is absent.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=_devices)


def _add_reconcile(commands: Any) -> None:
    p = commands.add_parser(
        "reconcile", help="a run's energy beside an independent meter's (dcgm-exporter, Slurm's sacct)",
        description="The run's energy beside an independent meter's for the same window: each side's figure, the "
        "difference and which devices and time each covers. dcgm-exporter: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION "
        "(mJ per GPU, matched to the run's devices.csv by UUID), from scrapes of its /metrics endpoint (e.g. "
        "curl host:9400/metrics > before.prom, and another after the run) or a Prometheus query_range answer "
        "saved as JSON. Slurm: a saved sacct --format=JobID,ConsumedEnergyRaw,ElapsedRaw,NNodes output "
        "(--parsable2 or the default table) for the run's job_id. Exit code 0 when compared, 2 on unusable input.",
    )  # fmt: skip
    p.add_argument("run", metavar="RUN", help="a run directory (or a distributed job's directory)")
    meter = p.add_mutually_exclusive_group(required=True)
    meter.add_argument("--dcgm", nargs="+", metavar="FILE",
                       help="dcgm-exporter scrapes (Prometheus text format), Prometheus answers (JSON)")  # fmt: skip
    meter.add_argument("--sacct", metavar="FILE", help="a saved sacct output with JobID and ConsumedEnergyRaw")
    p.add_argument("--at", action="append", default=[], metavar="FILE=TIME",
                   help="when a scrape without sample timestamps was taken (ISO 8601 with offset, or UNIX "
                   "seconds); default: the file's modification time")  # fmt: skip
    p.add_argument("--job-id", help="with --sacct: the job to look up (default: the run's job_id)")
    p.add_argument("--slurm-plugin", choices=("ipmi", "pm_counters", "xcc", "rapl", "gpu"),
                   help="with --sacct: the site's AcctGatherEnergyType (acct_gather_energy/...), which chooses the "
                   "tracker's figure beside it (node, CPU+RAM or GPU); default: the node's")  # fmt: skip
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    p.set_defaults(handler=_reconcile)


def _add_run(commands: Any) -> None:
    from tracker.session.config import add_flags

    p = commands.add_parser(
        "run",
        help="measure any command as one run",
        usage=f"{PROG} run [options] -- COMMAND [ARG ...]",
        description="Measure COMMAND as one run (one phase named 'command'); its exit code is returned and "
        "the summary printed to stderr.",
    )
    add_flags(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command to measure, after --")
    p.set_defaults(handler=_run)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``energy-tracker``."""
    from tracker._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Per-epoch energy and CO2e of machine-learning training: read logs back, "
        "check this machine's sensors, or measure any command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for add in (_add_report, _add_plot, _add_watch, _add_devices, _add_reconcile, _add_run):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``energy-tracker`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from tracker.errors import TrackerError

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _did_you_mean(parser, argv)
    args = parser.parse_args(argv)
    if getattr(args, "paper", False) and args.format == "csv":
        parser.error("--paper prints a paragraph: use it with --format text, markdown or json")
    try:
        return args.handler(args)
    except (TrackerError, OSError) as exc:
        print(f"{PROG} {args.subcommand}: error: {cli_words(str(exc))}", file=sys.stderr)
        return USAGE_ERROR


# Options whose report flag is not the option's own name with dashes (the report's --intensity).
REPORT_FLAGS = {"g_per_kwh": "--intensity", "carbon_intensity_g_per_kwh": "--intensity"}


def cli_words(message: str) -> str:
    """A message for a command-line user: ``country='XYZ'`` becomes ``--country 'XYZ'`` for each option with a flag."""
    import re

    from tracker.session.config import flag_names

    flags = {**flag_names(), **REPORT_FLAGS}
    pattern = r"(?<![\w.])(" + "|".join(sorted(map(re.escape, flags), key=len, reverse=True)) + r")=(?!=)"

    def flag(m: re.Match[str]) -> str:
        value_follows = m.end() < len(message) and message[m.end()] not in " ,;)"
        return flags[m.group(1)] + (" " if value_follows else "")

    return re.sub(pattern, flag, message)


@contextlib.contextmanager
def _cli_words_in_logs() -> Iterator[None]:
    """The tracker's log lines (the start line, warnings) in :func:`cli_words` while ``run`` measures.

    The filters go when it ends: ``main(["run", ...])`` called from Python leaves its caller's
    loggers speaking Python (``country=``) again.
    """
    import logging

    def rewrite(record: logging.LogRecord) -> bool:
        record.msg, record.args = cli_words(record.getMessage()), ()
        return True

    loggers = [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict) if n.startswith("tracker.")]
    for logger in loggers:
        logger.addFilter(rewrite)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(rewrite)


def _did_you_mean(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse an unknown ``--flag`` before the command's ``--`` with the closest known one (``--countyr``)."""
    import difflib

    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    sub = commands.choices.get(next((a for a in argv if not a.startswith("-")), ""))
    if sub is None:
        return
    known = [o for action in sub._actions for o in action.option_strings]  # noqa: SLF001
    for arg in argv[: argv.index("--") if "--" in argv else len(argv)]:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            close = difflib.get_close_matches(flag, known, n=1)
            if close:
                sub.error(f"unrecognized option {flag}: did you mean {close[0]}?")
