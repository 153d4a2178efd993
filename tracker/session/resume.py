"""Continuing a run after a restart: the state a checkpoint keeps, and the totals a run directory holds.

:meth:`EnergyTracker.state <tracker.session.energy_tracker.EnergyTracker.state>` gives a small JSON-ready dict
(run directory, cumulative totals, seconds measured); a new tracker given it through
:meth:`~tracker.session.energy_tracker.EnergyTracker.resume` appends to the same run directory and continues the
totals. When that directory still holds ``epochs.csv``, the totals are summed from its rows
instead: they include everything spent after the checkpoint was taken (an epoch that crashed, a
row written after a mid-epoch checkpoint), which is what the run really cost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tracker.errors import ConfigurationError
from tracker.logs.reader import EPOCHS_CSV, read_csv_rows
from tracker.logs.schema import COMPLETE, EPOCH_TYPES, INFERENCE, TRAIN
from tracker.measure.meter import J_PER_KWH
from tracker.sensors import KINDS
from tracker.session.accounting import Energy
from tracker.session.rows import Totals

logger = logging.getLogger(__name__)

STATE_VERSION = 1


def initial_state() -> dict[str, Any]:
    """The state of a run that has measured nothing yet."""
    return totals_as_dict(Totals(), 0.0, None)


def totals_as_dict(totals: Totals, elapsed_s: float, run_dir: Path | None) -> dict[str, Any]:
    """The state of a run: its directory, totals and seconds measured (JSON-ready, picklable)."""
    return {
        "version": STATE_VERSION,
        "run_dir": None if run_dir is None else str(run_dir),
        "elapsed_s": float(elapsed_s),
        "totals": asdict(totals),
    }


def check_state(state: Any) -> dict[str, Any]:
    """Check a state from :func:`totals_as_dict`; returns a copy.

    Raises:
        ConfigurationError: it is not such a state.
    """
    keys = ("version", "run_dir", "elapsed_s", "totals")
    if not isinstance(state, Mapping) or any(k not in state for k in keys) or state["version"] != STATE_VERSION:
        raise ConfigurationError(
            f"resume({state!r:.80}): give the dict that EnergyTracker.state() returned (version {STATE_VERSION})"
        )
    totals_from_state(state)
    return dict(state)


def totals_from_state(state: Mapping[str, Any]) -> Totals:
    """The :class:`~tracker.session.rows.Totals` saved in a state.

    Raises:
        ConfigurationError: the totals are not those of :func:`totals_as_dict`.
    """
    saved = dict(state["totals"])
    totals = Totals()
    try:
        totals.by_kind_j.update(saved.pop("by_kind_j", None) or {})
        return Totals(energy=Energy(**saved.pop("energy")), by_kind_j=totals.by_kind_j, **saved)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"resume(): the state's totals are not EnergyTracker.state()'s ({exc})") from exc


def totals_from_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[Totals, float]:
    """The totals of an ``epochs.csv``'s rows (as :func:`~tracker.logs.reader.read_csv_rows` reads them)."""

    def kwh_to_j(column: str, keep: Any = lambda row: True) -> float:
        return sum(float(r.get(column) or 0.0) for r in rows if keep(r)) * J_PER_KWH

    totals = Totals(
        energy=Energy(kwh_to_j("energy_kwh"), kwh_to_j("energy_kwh_low"), kwh_to_j("energy_kwh_high")),
        co2_kg=sum(float(r.get("co2_kg") or 0.0) for r in rows),
        co2_kg_low=sum(float(r.get("co2_kg_low") or 0.0) for r in rows),
        co2_kg_high=sum(float(r.get("co2_kg_high") or 0.0) for r in rows),
        epochs_done=sum(1 for r in rows if r.get("phase") == TRAIN and r.get("status") == COMPLETE),
        training_j=kwh_to_j("energy_kwh", lambda r: r.get("phase") != INFERENCE),
        by_kind_j={kind: kwh_to_j(f"{kind}_kwh") for kind in KINDS},
    )
    return totals, sum(float(r.get("duration_s") or 0.0) for r in rows)


def reopen(state: Mapping[str, Any] | None) -> Path | None:
    """The run directory that a state names, if it still exists (if it is gone: ``None`` and a warning)."""
    saved = state["run_dir"] if state else None
    if saved is None:
        return None
    if Path(saved).is_dir():
        return Path(saved)
    logger.warning("energy-tracker: the run directory to resume, %s, is gone; starting a new one", saved)
    return None


def continued_totals(state: Mapping[str, Any] | None, run_dir: Path | None) -> tuple[Totals, float]:
    """The totals and seconds (s) a run continues from (a new run: nothing, 0 s).

    Args:
        state: the checked state from :meth:`EnergyTracker.state <tracker.session.energy_tracker.EnergyTracker.state>`,
            or ``None`` for a run that is not resumed.
        run_dir: the run directory the run goes on in, if it writes one.

    Returns:
        The sums of ``run_dir``'s ``epochs.csv`` rows when it has any, else the state's own.
    """
    if state is None:
        return Totals(), 0.0
    on_disk = read_csv_rows(run_dir / EPOCHS_CSV, EPOCH_TYPES) if run_dir is not None else []
    if on_disk:
        return totals_from_rows(on_disk)
    return totals_from_state(state), float(state["elapsed_s"])
