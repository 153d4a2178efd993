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
from tracker.logs.totals import Totals

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
TOTAL_EMBODIED_CO2_KG = "energy/total_embodied_co2_kg"
EPOCH_EMBODIED_CO2_KG = "energy/epoch_embodied_co2_kg"
TOTAL_WATER_L = "energy/total_water_l"
EPOCH_WATER_L = "energy/epoch_water_l"
TOTAL_NODE_KWH = "energy/total_node_kwh"
EPOCH_NODE_KWH = "energy/epoch_node_kwh"

# The terms a run counts only when asked for or when a meter is there: (total key, epoch key, the rows' column).
# Each is logged only where a row counts it (its column a number), never as a 0 that would read "none".
TERMS = (
    (TOTAL_EMBODIED_CO2_KG, EPOCH_EMBODIED_CO2_KG, "embodied_co2_kg"),
    (TOTAL_WATER_L, EPOCH_WATER_L, "water_l"),
    (TOTAL_NODE_KWH, EPOCH_NODE_KWH, "node_kwh"),
)

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
    TOTAL_EMBODIED_CO2_KG: "estimated embodied emissions so far (embodied=True): the manufacturing footprint of "
    "the GPUs and host from a published table, amortised over their lifetime and the run's hours, kg CO2e; an "
    "estimate, not a measurement, and never in total_co2_kg (operational); only when a device's footprint is known",
    EPOCH_EMBODIED_CO2_KG: "that epoch's estimated embodied emissions, kg CO2e (only when counted)",
    TOTAL_WATER_L: "estimated operational water consumed so far (water=True or wue_l_per_kwh): the energy times the "
    "on-site WUE plus the energy times PUE times the grid's water per kWh (Li et al. 2023), published figures, not a "
    "meter, L; only when a term is counted",
    EPOCH_WATER_L: "that epoch's estimated operational water, L (only when counted)",
    TOTAL_NODE_KWH: "the whole machine's energy so far by its own meter (the ACPI power meter, measured), kWh; it "
    "holds the components, so it is shown beside total_kwh and never added to it; under a job every machine's, each "
    "once, and only when every machine has one",
    EPOCH_NODE_KWH: "that epoch's node meter energy, kWh (only when a meter is read)",
}


class EnergyMetrics:
    """The ``energy/*`` metrics of each row, in order: the totals, and an epoch's figures at its last row.

    A row is a mapping with the columns of ``epochs.csv`` it uses (an ``EpochRecord._asdict()``, or a
    job's merged row): ``energy_kwh``, ``co2_kg``, ``gpu_kwh``, ``duration_s``, ``gpu_power_mean_w``,
    ``phase``, ``epoch``, ``status``, ``last_step``, the counted terms' columns of :data:`TERMS` (absent or
    ``None`` when not counted) and, when known, the forecast's. Only the open epoch's sums are kept.
    """

    __slots__ = ("_epoch", "_sums", "_gpu_kwh", "_gpu_s", "_gpu_measured", "_rows", "_step")

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._sums = Totals()  # the open epoch's rows (train, and the validation inside it)
        self._gpu_kwh = self._gpu_s = 0.0
        self._gpu_measured = False
        self._rows = 0
        self._step: int | None = None

    def of(self, row: Mapping[str, Any], totals: Totals) -> tuple[dict[str, float], int]:
        """The metrics of ``row`` and the step to log them at; ``totals``: the run's (job's) so far, ``row`` in it."""
        metrics = {TOTAL_KWH: totals.energy_kwh, TOTAL_CO2_KG: totals.co2_kg, **counted(totals)}
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
            self._epoch, self._sums, self._gpu_kwh, self._gpu_s = row["epoch"], Totals(), 0.0, 0.0
            self._gpu_measured = False
        self._sums = self._sums.plus(row)
        if row["phase"] != TRAIN:
            return {}
        self._gpu_kwh, self._gpu_s = self._gpu_kwh + row["gpu_kwh"], self._gpu_s + row["duration_s"]
        self._gpu_measured = self._gpu_measured or row.get("gpu_power_mean_w") is not None
        if row.get("status") == PARTIAL:
            return {}
        figures = {EPOCH_KWH: self._sums.energy_kwh, EPOCH_CO2_KG: self._sums.co2_kg, **counted(self._sums, epoch=True)}
        if self._gpu_measured and self._gpu_s > 0:  # nothing logged that was not measured
            figures[GPU_POWER_W] = self._gpu_kwh * J_PER_KWH / self._gpu_s
        self._epoch = None  # a validation after the epoch's last row starts no sum of the epoch again
        return figures


def counted(figures: Any, epoch: bool = False) -> dict[str, float]:
    """The counted terms of ``figures`` (a :class:`Totals`, a summary: anything with the columns of :data:`TERMS`).

    Under the total keys, or the epoch's when ``epoch``; a term is left out where it is ``None`` (not counted).
    """
    values = ((epoch_key if epoch else total, getattr(figures, column, None)) for total, epoch_key, column in TERMS)
    return {key: value for key, value in values if value is not None}
