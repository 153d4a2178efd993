"""The log schema: the one place where column names are defined.

Every column name carries its unit (``_kwh``, ``_kg``, ``_w``, ``_s``, ``_j``, ``_g_per_kwh``).
``epochs.csv`` has the columns of :class:`EpochRecord` in order, then the user's metrics;
``devices.csv`` those of :class:`DeviceRecord`.
"""

from collections.abc import Iterable
from typing import Any, NamedTuple

from tracker.errors import ConfigurationError

COMPLETE, INTERRUPTED = "complete", "interrupted"
# A ``train`` row cut from an epoch that goes on in the next row (``row_every_n_steps``/``row_every_s``):
# finished as a row, not as an epoch (an epoch is finished by its last row, ``complete``).
PARTIAL = "partial"

# Phase names, the ``phase`` column. An epoch's own row is ``train``.
TRAIN = "train"
# Energy measured outside any epoch or phase (setup, checkpointing, the time between epochs):
# counted in the totals, in rows of its own, never dropped (codecarbon's run total drops it).
OTHER_PHASE = "other"
# Inference rows: their energy per sample gives the break-even against the training energy.
INFERENCE = "inference"
VALIDATION, SANITY_CHECK, TEST, PREDICT = "validation", "sanity_check", "test", "predict"
COMMAND = "command"  # ``energy-tracker run``: the measured command's one phase
# Names the user may not give a phase: they are the tracker's own.
RESERVED_PHASES = (TRAIN, OTHER_PHASE)


class EpochRecord(NamedTuple):
    """One row of ``epochs.csv``: one finished (or interrupted) epoch and phase.

    Attributes:
        run: the run's name (its directory).
        job_id: the scheduler's or launcher's job id (``SLURM_JOB_ID``, an array task as
            ``<job>_<task>``, ``TORCHELASTIC_RUN_ID``, a Kubernetes pod's name, or ``job_id=``),
            so that rows join with ``sacct`` and cluster dashboards; empty when none is known.
        epoch: the user's epoch index; ``None`` for energy before the first epoch.
        phase: ``train``, ``validation``, ``test``, ``inference``, ... or ``other``.
        status: ``complete`` or ``interrupted``; ``partial`` for a ``train`` row cut from an epoch
            that goes on in the next row (``row_every_n_steps``, ``row_every_s``).
        start_utc, end_utc: ISO 8601 UTC times the row was opened and closed.
        duration_s: seconds attributed to this row (nested phases excluded), s.
        samples: items processed (images, tokens, queries), when known.
        first_step, last_step: global numbers of the first and last optimizer step counted in the row
            (``EnergyTracker.step``); empty where no step was counted.
        gpu_kwh, cpu_kwh, ram_kwh: energy by component, kWh (IT energy, before PUE).
        energy_kwh: their sum, kWh; ``energy_kwh_low``/``_high`` its band.
        node_kwh: the whole machine's energy by its own meter (the ACPI power meter), kWh, read beside
            the components and never added to ``energy_kwh`` or ``co2_kg`` (it holds them); what no
            component explains is ``node_kwh - energy_kwh``. Empty without a meter.
        pue: power usage effectiveness applied to the row.
        carbon_intensity_g_per_kwh: grid intensity used, g CO2e/kWh; ``intensity_method`` how it
            was chosen and ``intensity_source`` which dataset (and year).
        country: the ISO 3166-1 alpha-3 code of the grid used, empty when unknown (world average, explicit).
        region: the sub-national or cloud region of that grid (``US-CA``, ``gcp:europe-west1``), else empty.
        co2_kg: ``energy_kwh × pue × intensity / 1000``, kg CO2e; ``co2_kg_low``/``_high`` its band.
            Operational emissions only: embodied ones are never in it.
        embodied_co2_kg: the row's share of the manufacturing footprint of its GPUs and its host
            (``embodied=True``), amortised over the row's hours, kg CO2e; ``embodied_co2_kg_low``/``_high``
            its band. Empty when ``embodied`` is off or no device's model is in the table; a device
            left out is named in ``notes`` (:mod:`tracker.carbon.embodied`).
        water_l: operational water consumed (evaporated, not withdrawn), L: ``energy_kwh × WUE`` on site
            plus ``energy_kwh × pue × grid water intensity`` off site (Li et al. 2023); ``water_l_low``/
            ``_high`` its band; ``water_onsite_l`` and ``water_offsite_l`` each term. Empty when water is not
            asked for, and a term with no sourced figure is empty and not counted (``notes`` says why).
        water_source: each counted term's figure (L/kWh) and its source; empty when none is counted.
        gpu_method, cpu_method, ram_method: how each component was obtained (``absent`` if not).
        node_method: how ``node_kwh`` was obtained (``acpi_power_meter``); empty without a meter, as in files
            written before the column existed.
        cpu_scope: whose CPU energy ``cpu_kwh`` is: ``machine`` (the whole CPU) or ``process`` (this
            process tree's share of it, by CPU time); empty when the CPU is not measured.
        gpu_power_mean_w: mean GPU power over the row, W.
        energy_per_sample_j: ``energy × pue / samples`` in J, when samples are known.
        break_even_queries: for inference rows, queries whose energy equals the training so far.
        cumulative_energy_kwh, cumulative_co2_kg: totals of all rows so far, including this one.
        forecast_total_kwh, forecast_total_co2_kg, forecast_total_s: the whole run, extrapolated
            from the finished epochs once the number of epochs is known.
        forecast_total_co2_kg_low, forecast_total_co2_kg_high: the forecast's band.
        gap_s: seconds of sampling gaps (longer than three intervals) in this row.
        covered_fraction: the share of the row's time covered by good readings, 0 to 1: the least
            of its devices (an outage, a stale edge or an unmeasured span lowers it); ``None``
            without devices.
        notes: ``;``-separated notes: a sensor failing or lost, a short epoch, a counter reset,
            jitter or glitch, readings rejected as implausible, edges read late, gaps (named
            ``notes``, not ``flags``, which pandas' ``DataFrame.flags`` would shadow).
    """

    run: str
    job_id: str
    epoch: int | None
    phase: str
    status: str
    start_utc: str
    end_utc: str
    duration_s: float
    samples: int | None
    first_step: int | None
    last_step: int | None
    gpu_kwh: float
    cpu_kwh: float
    ram_kwh: float
    energy_kwh: float
    energy_kwh_low: float
    energy_kwh_high: float
    node_kwh: float | None
    pue: float
    carbon_intensity_g_per_kwh: float
    intensity_method: str
    intensity_source: str
    country: str
    region: str
    co2_kg: float
    co2_kg_low: float
    co2_kg_high: float
    embodied_co2_kg: float | None
    embodied_co2_kg_low: float | None
    embodied_co2_kg_high: float | None
    water_l: float | None
    water_l_low: float | None
    water_l_high: float | None
    water_onsite_l: float | None
    water_offsite_l: float | None
    water_source: str
    gpu_method: str
    cpu_method: str
    cpu_scope: str
    ram_method: str
    node_method: str
    gpu_power_mean_w: float | None
    energy_per_sample_j: float | None
    break_even_queries: float | None
    cumulative_energy_kwh: float
    cumulative_co2_kg: float
    forecast_total_kwh: float | None
    forecast_total_co2_kg: float | None
    forecast_total_co2_kg_low: float | None
    forecast_total_co2_kg_high: float | None
    forecast_total_s: float | None
    gap_s: float
    covered_fraction: float | None
    notes: str

    def as_row(self) -> dict[str, Any]:
        """The record as a column → value mapping."""
        return _as_row(self, EPOCH_COLUMNS)


class DeviceRecord(NamedTuple):
    """One row of ``devices.csv``: one device (sensor) in one epoch and phase.

    Attributes:
        run, epoch, phase: as in :class:`EpochRecord`.
        host: the machine's name; rank: the global rank that measured it (0 outside DDP).
        sensor: the sensor's name (``gpu:0``, ``cpu``, ``ram:dram-0``, ``node:hwmon2``); kind: gpu, cpu, ram or
            node (the machine's own meter, beside the components).
        model: the device's model name (``NVIDIA A100-SXM4-40GB``, the CPU's brand string); uuid: the
            GPU's UUID, if any.
        method: how the figure was obtained; status: ``ok``, ``failing`` (retried with back-off) or
            ``lost`` (the device is gone; re-probed).
        energy_kwh: energy in the row, kWh (the figure every total uses).
        integrated_kwh: a cross-check beside a counter, kWh: the power readings integrated over time
            (trapezoid); written only when the readings cover at least 90 % of the row, so that it is
            comparable with ``energy_kwh`` (empty otherwise, and for power-only sensors, whose
            ``energy_kwh`` is that integral).
        power_mean_w: energy / duration, W; power_peak_w: the highest power reading, W, empty when
            the readings missed the peak (their highest is below the mean: a counter read only at
            the row's edges, say), since a peak below the mean cannot be right.
        readings: readings taken; gap_s: sampling gaps, s; resets: counter resets seen.
        covered_s: seconds covered by good readings; rejected: readings rejected as implausible
            (negative, NaN, infinite, above the device's power limit); glitches: counter steps the
            device could not have made (estimated from power instead).
        embodied_co2_kg: the device's share of the row's embodied emissions, kg CO2e, and its band: a GPU's
            own footprint, or, on a CPU or RAM row, an equal part of its host's (the host counted once per
            node, where its CPU and RAM are measured); empty when off or the model is not in the table.
    """

    run: str
    epoch: int | None
    phase: str
    host: str
    rank: int
    sensor: str
    kind: str
    model: str
    uuid: str
    method: str
    status: str
    energy_kwh: float
    integrated_kwh: float | None
    power_mean_w: float | None
    power_peak_w: float | None
    readings: int
    gap_s: float
    resets: int
    covered_s: float
    rejected: int
    glitches: int
    embodied_co2_kg: float | None
    embodied_co2_kg_low: float | None
    embodied_co2_kg_high: float | None

    def as_row(self) -> dict[str, Any]:
        """The record as a column → value mapping."""
        return _as_row(self, DEVICE_COLUMNS)


def _as_row(record: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    # A record is a tuple in column order; its values are numbers and strings.
    return dict(zip(columns, record, strict=True))


# The run directory's files, and the directory of a distributed job's shards (one run directory per rank).
RUN_JSON, EPOCHS_CSV, DEVICES_CSV, POWER_CSV = "run.json", "epochs.csv", "devices.csv", "power.csv"
SHARDS_DIR = "ranks"

EPOCH_COLUMNS: tuple[str, ...] = EpochRecord._fields
# The embodied share of a row (and of a device in devices.csv), kg CO2e: the figure and its band.
EMBODIED = ("embodied_co2_kg", "embodied_co2_kg_low", "embodied_co2_kg_high")
# The operational water of a row, L: the total and its band, then each term (all empty when not counted).
WATER = ("water_l", "water_l_low", "water_l_high", "water_onsite_l", "water_offsite_l")
DEVICE_COLUMNS: tuple[str, ...] = DeviceRecord._fields
POWER_COLUMNS = ("time_utc", "elapsed_s", "host", "rank", "sensor", "power_w", "energy_j")


def _value_type(annotation: Any) -> type:
    # The records' annotations are types (``int | None``): the first type named is the column's.
    first = getattr(annotation, "__args__", (annotation,))[0]
    return first if first in (int, float) else str


# The type of each column's values, by which the reader parses the files back: text stays text.
EPOCH_TYPES: dict[str, type] = {name: _value_type(t) for name, t in EpochRecord.__annotations__.items()}
DEVICE_TYPES: dict[str, type] = {name: _value_type(t) for name, t in DeviceRecord.__annotations__.items()}
POWER_TYPES: dict[str, type] = dict(zip(POWER_COLUMNS, (str, float, str, int, str, float, float), strict=True))

# ``epochs.csv``'s last column once a metric key first appears after its first WIDE_ROWS rows: the
# keys that have no column of their own, as one JSON object per row. A new column means rewriting
# the whole file under a new header, which stays cheap only while the file is short.
MORE_METRICS, WIDE_ROWS = "more_metrics", 100

# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_metric_names(names: Iterable[str]) -> None:
    """Refuse metric names that a CSV header cannot hold as one plain cell.

    Raises:
        ConfigurationError: a name is a tracker column, holds a line break or NUL, or starts like a
            spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab); the message names it and a name to use instead.
    """
    for name in names:
        if name in EPOCH_COLUMNS or name == MORE_METRICS:
            raise ConfigurationError(f"metric name {name!r} is a tracker column; write e.g. {'user_' + name!r} instead")
        plain = name.replace("\r", "_").replace("\n", "_").replace("\x00", "")
        if plain != name:
            raise ConfigurationError(
                f"metric name {name!r} holds a line break or NUL, which would break the CSV header; "
                f"write {plain!r} instead"
            )
        if name.startswith(FORMULA_STARTS):
            raise ConfigurationError(
                f"metric name {name!r} starts with {name[0]!r}, which a spreadsheet runs as a formula; "
                f"write {name.lstrip(''.join(FORMULA_STARTS)) or 'metric'!r} instead"
            )
