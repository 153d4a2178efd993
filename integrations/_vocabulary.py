"""The energy metrics the integrations log, under the one vocabulary's keys (``tracker/session/vocabulary.py``).

Each key means the same wherever it is logged (Lightning's loggers, the Trainer's logs and
``state.log_history``, the tracker's own sinks). Pure functions of the tracker's summaries and
rows: no framework is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tracker import Summary, integration

J_PER_KWH, TRAIN, VALIDATION = integration.J_PER_KWH, integration.TRAIN, integration.VALIDATION
TOTAL_KWH, TOTAL_CO2_KG = integration.TOTAL_KWH, integration.TOTAL_CO2_KG
EPOCH_KWH, EPOCH_CO2_KG, GPU_POWER_W = integration.EPOCH_KWH, integration.EPOCH_CO2_KG, integration.GPU_POWER_W
EVAL_KWH, FORECAST_KWH, FORECAST_CO2_KG = integration.EVAL_KWH, integration.FORECAST_KWH, integration.FORECAST_CO2_KG
Totals, counted = integration.Totals, integration.counted  # the counted terms (embodied, water, node), when counted

METRICS = integration.ENERGY_METRICS  # the keys and their meanings are declared once, in tracker/session/vocabulary.py


def so_far_metrics(live: Summary, forecast: bool = True) -> dict[str, float]:
    """The run so far (the open epoch included) and, once known and ``forecast``, the forecast: every log's.

    ``forecast=False`` where every rank must log the same keys (a collective per key) and only the
    writing rank knows the forecast.
    """
    metrics = _totals(live)
    if forecast and live.forecast_total_kwh is not None and live.forecast_total_co2_kg is not None:
        metrics.update({FORECAST_KWH: live.forecast_total_kwh, FORECAST_CO2_KG: live.forecast_total_co2_kg})
    return metrics


def epoch_metrics(start: Summary, end: Summary, forecast: bool = True) -> dict[str, float]:
    """One epoch's metrics from the run's summaries at its start and just after its last row closed."""
    seconds = end.duration_s - start.duration_s
    metrics = {
        EPOCH_KWH: end.energy_kwh - start.energy_kwh,
        EPOCH_CO2_KG: end.co2_kg - start.co2_kg,
        **so_far_metrics(end, forecast),
    }
    before = counted(start, epoch=True)
    metrics.update({key: value - before.get(key, 0.0) for key, value in counted(end, epoch=True).items()})
    if end.gpu_method != "absent" and seconds > 0:  # nothing logged that was not measured
        metrics[GPU_POWER_W] = (end.gpu_kwh - start.gpu_kwh) * J_PER_KWH / seconds
    return metrics


def epoch_metrics_from_rows(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The last epoch's metrics from ``epochs.csv`` rows (a job's, merged), and the evaluation's.

    The epoch is every ``train`` row carrying the last one's number (an epoch cut by steps has
    several) and the evaluations of that number that ended inside it.
    """
    figures: dict[str, float] = {}
    last = next((r for r in reversed(rows) if r.get("phase") == TRAIN), None)
    if last is not None:
        parts = [r for r in rows if r.get("phase") == TRAIN and r.get("epoch") == last.get("epoch")]
        nested = [r for r in rows if r.get("phase") == VALIDATION and r.get("epoch") == last.get("epoch")
                  and str(r.get("end_utc")) <= str(last.get("end_utc"))]  # fmt: skip
        figures[EPOCH_KWH] = math.fsum(float(r["energy_kwh"]) for r in [*parts, *nested])
        figures[EPOCH_CO2_KG] = math.fsum(float(r["co2_kg"]) for r in [*parts, *nested])
        figures.update(counted(Totals.of([*parts, *nested]), epoch=True))
        seconds = math.fsum(float(r.get("duration_s") or 0.0) for r in parts)
        if any(r.get("gpu_power_mean_w") is not None for r in parts) and seconds > 0:  # nothing not measured
            figures[GPU_POWER_W] = math.fsum(float(r.get("gpu_kwh") or 0.0) for r in parts) * J_PER_KWH / seconds
    evaluation = next((r for r in reversed(rows) if r.get("phase") == VALIDATION), None)
    if evaluation is not None:
        figures[EVAL_KWH] = float(evaluation["energy_kwh"])
    return figures


def job_so_far(
    rows: Sequence[dict[str, Any]], live: Summary | None = None, own: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """The job's totals: its rows read back (``EnergyTracker.job_rows()``, every rank's) and this rank's open part.

    The open part is ``live`` (this rank's summary) less ``own`` (its totals as of its last row,
    ``state()["totals"]``); without them, the rows alone. The counted terms only where counted.
    """
    metrics = _totals(Totals.of(rows))
    if live is None or own is None:
        return metrics
    ahead, behind = _totals(live), _totals(Totals.from_dict(own))
    for key in {*metrics, *ahead}:
        metrics[key] = metrics.get(key, 0.0) + ahead.get(key, 0.0) - behind.get(key, 0.0)
    return metrics


def _totals(figures: Any) -> dict[str, float]:
    """The total keys of ``figures`` (a :class:`Summary` or a :class:`Totals`): energy, CO2e, the counted terms."""
    return {TOTAL_KWH: figures.energy_kwh, TOTAL_CO2_KG: figures.co2_kg, **counted(figures)}
