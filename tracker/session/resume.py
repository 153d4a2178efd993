"""Continuing a run after a restart: the state a checkpoint keeps, and the totals a run directory holds.

:meth:`EnergyTracker.state <tracker.session.energy_tracker.EnergyTracker.state>` gives a small JSON-ready dict
(run directory, cumulative totals, seconds measured); a new tracker given it through
:meth:`~tracker.session.energy_tracker.EnergyTracker.resume` appends to the same run directory and continues the
totals. When that directory still holds ``epochs.csv``, the totals are summed from its rows
instead: they include everything spent after the checkpoint was taken (an epoch that crashed, a
row written after a mid-epoch checkpoint), which is what the run really cost.

A run whose process was killed (SIGKILL, the OOM killer) left its open epoch only in ``heartbeat.json``;
before the resumed run appends, :func:`recover_killed` writes that epoch back as the ``interrupted`` rows
the reader shows for a killed run (:func:`tracker.logs.reader.killed_rows`), so the totals hold it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracker.energy import joules_to_kwh
from tracker.errors import ConfigurationError
from tracker.logs.schema import EPOCH_TYPES, EPOCHS_CSV
from tracker.logs.totals import Totals
from tracker.sensors import CPU, GPU, RAM

logger = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: totals in kWh, as the records hold them; 1 (totals in J) is still read


def initial_state() -> dict[str, Any]:
    """The state of a run that has measured nothing yet."""
    return totals_as_dict(Totals(), 0.0, None)


def totals_as_dict(totals: Totals, elapsed_s: float, run_dir: Path | None, steps: int = 0) -> dict[str, Any]:
    """The state of a run: its directory, totals, seconds measured and optimizer steps counted (JSON-ready)."""
    return {
        "version": STATE_VERSION,
        "run_dir": None if run_dir is None else str(run_dir),
        "elapsed_s": float(elapsed_s),
        "totals": totals.as_dict(),
        "steps": int(steps),
    }


def check_state(state: Any) -> dict[str, Any]:
    """Check a state from :func:`totals_as_dict`; returns a copy.

    Raises:
        ConfigurationError: it is not such a state.
    """
    keys = ("version", "run_dir", "elapsed_s", "totals")
    if not isinstance(state, Mapping) or any(k not in state for k in keys) or state["version"] not in (1, 2):
        raise ConfigurationError(
            f"resume({state!r:.80}): give the dict that EnergyTracker.state() returned (version {STATE_VERSION})"
        )
    totals_from_state(state)
    return dict(state)


def totals_from_state(state: Mapping[str, Any]) -> Totals:
    """The :class:`~tracker.logs.totals.Totals` saved in a state.

    Raises:
        ConfigurationError: the totals are not those of :func:`totals_as_dict`.
    """
    try:
        saved = state["totals"]
        return Totals.from_dict(saved) if state["version"] == STATE_VERSION else _from_joules(saved)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigurationError(f"resume(): the state's totals are not EnergyTracker.state()'s ({exc})") from exc


def _from_joules(saved: Mapping[str, Any]) -> Totals:
    # Version 1 kept energy in J: {"energy": {"value_j", "low_j", "high_j"}, "by_kind_j", "training_j", ...}.
    energy, by_kind = saved["energy"], saved.get("by_kind_j") or {}
    return Totals(
        gpu_kwh=joules_to_kwh(by_kind.get(GPU, 0.0)),
        cpu_kwh=joules_to_kwh(by_kind.get(CPU, 0.0)),
        ram_kwh=joules_to_kwh(by_kind.get(RAM, 0.0)),
        energy_kwh=joules_to_kwh(energy["value_j"]),
        energy_kwh_low=joules_to_kwh(energy["low_j"]),
        energy_kwh_high=joules_to_kwh(energy["high_j"]),
        co2_kg=float(saved["co2_kg"]),
        co2_kg_low=float(saved["co2_kg_low"]),
        co2_kg_high=float(saved["co2_kg_high"]),
        epochs=int(saved["epochs_done"]),
        training_kwh=joules_to_kwh(saved["training_j"]),
    )


def reopen(state: Mapping[str, Any] | None) -> Path | None:
    """The run directory that a state names, if it still exists (if it is gone: ``None`` and a warning)."""
    saved = state["run_dir"] if state else None
    if saved is None:
        return None
    if Path(saved).is_dir():
        return Path(saved)
    logger.warning("energy-tracker: the run directory to resume, %s, is gone; starting a new one", saved)
    return None


def continued_totals(state: Mapping[str, Any] | None, run_dir: Path | None) -> tuple[Totals, float, int]:
    """The totals, seconds (s) and optimizer steps a run continues from (a new run: nothing, 0 s, 0 steps).

    Args:
        state: the checked state from :meth:`EnergyTracker.state <tracker.session.energy_tracker.EnergyTracker.state>`,
            or ``None`` for a run that is not resumed.
        run_dir: the run directory the run goes on in, if it writes one.

    Returns:
        The sums of ``run_dir``'s ``epochs.csv`` rows when it has any, else the state's own; the steps:
        the state's (a state without them: 0), or the rows' last step when higher.
    """
    if state is None:
        return Totals(), 0.0, 0
    from tracker.logs.reader import read_csv_rows  # the reader only for a resumed run

    on_disk = read_csv_rows(run_dir / EPOCHS_CSV, EPOCH_TYPES) if run_dir is not None else []
    saved = state.get("steps")
    steps = max([saved if isinstance(saved, int) and saved >= 0 else 0, *(r.get("last_step") or 0 for r in on_disk)])
    if on_disk:
        totals = Totals.of(on_disk)
        return totals, totals.duration_s, steps
    return totals_from_state(state), float(state["elapsed_s"]), steps


def recover_killed(run_dir: Path) -> None:
    """Write back the open rows of the killed process that last wrote ``run_dir``, once, before this one appends.

    The reader's one recovery (:func:`tracker.logs.reader.write_back_killed`): the rows a reader shows
    for a killed run (``interrupted``, their ``notes`` saying they end at the last heartbeat), appended in
    one write under its lock, the heartbeat removed after. Nothing when the run ended (``stop()``
    removed its heartbeat), a reader already wrote them back, or its process still lives.
    """
    from tracker.logs.reader import write_back_killed  # the reader only for a resumed run

    rows = write_back_killed(run_dir)
    if rows:
        kwh = sum(float(r.get("energy_kwh") or 0.0) for r in rows)
        logger.info("energy-tracker: %s: the killed run's open rows (%.4g kWh) written back, interrupted", run_dir, kwh)
