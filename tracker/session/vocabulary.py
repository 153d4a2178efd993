"""The ``energy/*`` metrics: one vocabulary, declared once, for the sinks, Lightning and Hugging Face.

Each key means the same wherever it is logged (:data:`ENERGY_METRICS`); the integrations take the
keys from here (through ``tracker.integration``) and work out their figures in ``integrations/_vocabulary.py``.
:class:`EnergyMetrics` turns rows (a run's as it writes them, or a job's merged across its ranks)
into these metrics, keeping only the open epoch's sums (memory stays flat over a long run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.energy import J_PER_KWH
from tracker.logs.schema import PARTIAL, TRAIN, VALIDATION

TOTAL_KWH = "energy/total_kwh"
TOTAL_CO2_KG = "energy/total_co2_kg"
EPOCH_KWH = "energy/epoch_kwh"
EPOCH_CO2_KG = "energy/epoch_co2_kg"
GPU_POWER_W = "energy/gpu_power_w"
EVAL_KWH = "energy/eval_kwh"
FORECAST_KWH = "energy/forecast_total_kwh"
FORECAST_CO2_KG = "energy/forecast_total_co2_kg"
STEP = "energy/step"  # the step the sinks log at: the last optimizer step counted, else the row's number
RANKS_SHARE = "energy/ranks_share"  # under a job: the share of its ranks whose row the figures hold

# What each key means, wherever it is logged: the sinks (at each row), Lightning and Hugging Face (at
# each of their logs: there the totals include the open epoch so far). The README says the same.
ENERGY_METRICS = {
    TOTAL_KWH: "the run (the job, under DDP) so far, kWh (IT energy, before PUE)",
    TOTAL_CO2_KG: "its emissions so far, kg CO2e",
    EPOCH_KWH: "the last finished epoch: the sum of the rows carrying its number (its train rows, cut by "
    "steps or not, and the validation inside it), kWh",
    EPOCH_CO2_KG: "that epoch's emissions, kg CO2e",
    GPU_POWER_W: "mean power of all measured GPUs together over that epoch, W (only when a GPU is measured)",
    EVAL_KWH: "the last evaluation, kWh",
    FORECAST_KWH: "the whole run, forecast from the finished epochs or the step rate (once known), kWh",
    FORECAST_CO2_KG: "the whole run's forecast emissions, kg CO2e",
    STEP: "the sinks' step: the last optimizer step counted (step()), else the row's number",
    RANKS_SHARE: "under a distributed job (the sinks of global rank 0, which log the job's rows merged across its "
    "ranks): the share of the job's ranks whose row the logged row holds, 1 when every rank's (less when a rank's "
    "row was not on disk when it was sent; the totals still count every row read)",
}


class EnergyMetrics:
    """The ``energy/*`` metrics of each row, in order: the totals, and an epoch's figures at its last row.

    A row is a mapping with the columns of ``epochs.csv`` it uses (an ``EpochRecord._asdict()``, or a
    job's merged row with its cumulative figures added): ``energy_kwh``, ``co2_kg``, ``gpu_kwh``,
    ``duration_s``, ``gpu_power_mean_w``, ``phase``, ``epoch``, ``status``, ``last_step``,
    ``cumulative_energy_kwh``, ``cumulative_co2_kg`` and, when known, the forecast's.
    """

    __slots__ = ("_epoch", "_kwh", "_co2", "_gpu_kwh", "_gpu_s", "_gpu_measured", "_rows", "_step")

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._kwh = self._co2 = self._gpu_kwh = self._gpu_s = 0.0
        self._gpu_measured = False
        self._rows = 0
        self._step: int | None = None

    def of(self, row: Mapping[str, Any]) -> tuple[dict[str, float], int]:
        """The metrics of ``row`` and the step to log them at."""
        metrics = {TOTAL_KWH: row["cumulative_energy_kwh"], TOTAL_CO2_KG: row["cumulative_co2_kg"]}
        forecast_kwh, forecast_co2 = row.get("forecast_total_kwh"), row.get("forecast_total_co2_kg")
        if forecast_kwh is not None and forecast_co2 is not None:
            metrics.update({FORECAST_KWH: forecast_kwh, FORECAST_CO2_KG: forecast_co2})
        if row["phase"] == VALIDATION:
            metrics[EVAL_KWH] = row["energy_kwh"]
        if row["phase"] in (TRAIN, VALIDATION) and row["epoch"] is not None:
            metrics.update(self._epoch_part(row))
        if row.get("last_step") is not None:
            self._step = max(row["last_step"], self._step or 0)
        step = self._step if self._step is not None else self._rows
        self._rows += 1
        return metrics, step

    def _epoch_part(self, row: Mapping[str, Any]) -> dict[str, float]:
        """Add the row to its epoch's sums; at the epoch's last ``train`` row, the epoch's figures."""
        if row["epoch"] != self._epoch:
            self._epoch, self._kwh, self._co2, self._gpu_kwh, self._gpu_s = row["epoch"], 0.0, 0.0, 0.0, 0.0
            self._gpu_measured = False
        self._kwh, self._co2 = self._kwh + row["energy_kwh"], self._co2 + row["co2_kg"]
        if row["phase"] != TRAIN:
            return {}
        self._gpu_kwh, self._gpu_s = self._gpu_kwh + row["gpu_kwh"], self._gpu_s + row["duration_s"]
        self._gpu_measured = self._gpu_measured or row.get("gpu_power_mean_w") is not None
        if row.get("status") == PARTIAL:
            return {}
        figures = {EPOCH_KWH: self._kwh, EPOCH_CO2_KG: self._co2}
        if self._gpu_measured and self._gpu_s > 0:  # nothing logged that was not measured
            figures[GPU_POWER_W] = self._gpu_kwh * J_PER_KWH / self._gpu_s
        self._epoch = None  # a validation after the epoch's last row starts no sum of the epoch again
        return figures
