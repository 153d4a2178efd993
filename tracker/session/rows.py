"""Builds ``epochs.csv`` and ``devices.csv`` rows, keeping the run's running totals (of the rows built).

Pure bookkeeping over :mod:`tracker.session.accounting`: no clock, no I/O. The session hands it each
closed segment with this process's device usages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import tracker.units as units
from tracker.energy import J_PER_KWH, joules_to_kwh
from tracker.logs.schema import EMBODIED, INFERENCE, TRAIN, WATER, DeviceRecord, EpochRecord
from tracker.logs.totals import Totals
from tracker.sensors import CPU, GPU, NODE, RAM
from tracker.sensors.methods import ABSENT
from tracker.session import accounting
from tracker.session.accounting import DeviceUsage, Forecast, StepMark
from tracker.session.config import Config
from tracker.session.segments import Segment

if TYPE_CHECKING:  # the embodied table's module only when a run counts embodied emissions
    from tracker.carbon.embodied import Embodied

logger = logging.getLogger(__name__)

RUNNING = "running"  # the status of a row still open (summary, heartbeat.json), never written to epochs.csv
# The columns that come with the totals (cumulative, forecast): not in an open row's preview.
AFTER_TOTALS = frozenset(
    ("break_even_queries", "cumulative_energy_kwh", "cumulative_co2_kg", "forecast_total_kwh", "forecast_total_co2_kg",
     "forecast_total_co2_kg_low", "forecast_total_co2_kg_high", "forecast_total_s")
)  # fmt: skip
# Those columns in a row built before the totals: filled by ``add``.
_NO_TOTALS = {name: 0.0 if name.startswith("cumulative") else None for name in AFTER_TOTALS}


class RowBuilder:
    """Turns closed segments into rows and keeps the cumulative totals.

    Args:
        config: the run's validated options (PUE, intensity, number of epochs).
        run: the run's name, written in every row.
        totals: the totals the run starts from (a resumed run's so far).
        job_id: the job's id, written in every row (``""`` when none is known).
    """

    def __init__(self, config: Config, run: str, totals: Totals | None = None, job_id: str = "") -> None:
        self.config = config
        self.run = run
        self.job_id = job_id
        self.totals = totals or Totals()
        self.rows = 0  # rows built (not kept: memory stays flat over a long run)
        self.methods: dict[str, str] = {}
        self.forecast: Forecast | None = None
        self.break_even: float | None = None
        self._extrapolated_warned = False
        self._clock_warned = False
        self._reset_warned: set[tuple[str, int, str]] = set()
        self._forecast_logged = False
        self.steps = 0  # the last optimizer step counted in a row
        self._mark: StepMark | None = None

    def add(
        self, segment: Segment, status: str, devices: Sequence[DeviceUsage], elapsed_s: float
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Account one closed segment; returns its ``epochs.csv`` row (with metrics) and device rows."""
        record = self._record(segment, status, devices)
        self.totals = self.totals.plus(record.as_row())
        if segment.phase == INFERENCE:
            per_sample = record.energy_per_sample_j
            self.break_even = accounting.break_even_queries(self.totals.training_kwh * J_PER_KWH, per_sample)
        self.forecast = self._forecast(segment, elapsed_s)
        self._log_first_forecast()
        self._warn_resets(devices)
        self.methods = accounting.methods_by_kind(devices)
        forecast = self.forecast
        record = record._replace(
            break_even_queries=self.break_even if segment.phase == INFERENCE else None,
            cumulative_energy_kwh=self.totals.energy_kwh,
            cumulative_co2_kg=self.totals.co2_kg,
            forecast_total_kwh=forecast.total_kwh if forecast else None,
            forecast_total_co2_kg=forecast.total_co2_kg if forecast else None,
            forecast_total_co2_kg_low=forecast.total_co2_kg_low if forecast else None,
            forecast_total_co2_kg_high=forecast.total_co2_kg_high if forecast else None,
            forecast_total_s=forecast.total_s if forecast else None,
        )
        self.rows += 1
        duration = segment.active_s
        shares, _ = self._embodied(devices, duration)
        device_rows = [self._device_row(segment, d, duration, share) for d, share in zip(devices, shares, strict=True)]
        return {**record.as_row(), **segment.metrics}, device_rows

    def _embodied(self, devices: Sequence[DeviceUsage], duration_s: float) -> tuple[list[Embodied | None], list[str]]:
        """Each device's embodied share over the row (``None`` when off or unknown) and the notes on those left out."""
        config = self.config
        if not config.embodied:
            return [None] * len(devices), []
        hours = duration_s / SECONDS_PER_HOUR
        return accounting.embodied_shares(devices, hours, config.embodied_lifetime_years, config.embodied_utilisation)

    def preview(self, segment: Segment, devices: Sequence[DeviceUsage]) -> dict[str, Any]:
        """An open segment's row as it stands (status ``running``), without the columns that need the totals.

        Nothing is added to the totals: the segment's row is written when it closes.
        """
        row = self._record(segment, RUNNING, devices).as_row()
        return {name: value for name, value in row.items() if name not in AFTER_TOTALS}

    def _forecast(self, segment: Segment, elapsed_s: float) -> Forecast | None:
        """From the step rate when ``total_steps`` is known and a window has passed, else from the epochs."""
        if segment.last_step is not None and segment.last_step > self.steps:
            self.steps = segment.last_step
            if self._mark is None:
                self._mark = StepMark(self.totals, self.steps, elapsed_s)
        by_steps = accounting.step_forecast(self.totals, self._mark, self.steps, self.config.total_steps, elapsed_s)
        return by_steps or accounting.forecast(self.totals, self.config.epochs, elapsed_s)

    def _record(self, segment: Segment, status: str, devices: Sequence[DeviceUsage]) -> EpochRecord:
        """The segment's row, its own figures only: the cumulative and forecast columns come with the totals."""
        kinds = accounting.by_kind(devices)
        energy = kinds[GPU] + kinds[CPU] + kinds[RAM]  # never the node's meter: it holds them
        intensity_g, source = self._intensity(segment)
        grid, pue, duration, methods = self.config.intensity, self.config.pue, segment.active_s, by_method(devices)
        shares, left_out = self._embodied(devices, duration)
        total = accounting.embodied_total(shares)
        components = [d for d in devices if d.kind != NODE]  # the row's coverage and gaps are the components'
        return EpochRecord(
            run=self.run,
            job_id=self.job_id,
            epoch=segment.epoch,
            phase=segment.phase,
            status=status,
            start_utc=segment.opened_utc,
            end_utc=segment.last_utc,
            duration_s=duration,
            samples=segment.samples,
            first_step=segment.first_step,
            last_step=segment.last_step,
            gpu_kwh=kinds[GPU].kwh,
            cpu_kwh=kinds[CPU].kwh,
            ram_kwh=kinds[RAM].kwh,
            energy_kwh=energy.kwh,
            energy_kwh_low=joules_to_kwh(energy.low_j),
            energy_kwh_high=joules_to_kwh(energy.high_j),
            **_node_columns(kinds[NODE].kwh, methods[NODE]),
            pue=pue,
            carbon_intensity_g_per_kwh=intensity_g,
            intensity_method=grid.method,
            intensity_source=source,
            country=grid.country or "",
            region=grid.region or "",
            co2_kg=accounting.co2_kg(energy.kwh, pue, intensity_g),
            co2_kg_low=accounting.co2_kg(joules_to_kwh(energy.low_j), pue, intensity_g),
            co2_kg_high=accounting.co2_kg(joules_to_kwh(energy.high_j), pue, intensity_g),
            **embodied_columns(total),
            **self._water(energy, pue),
            gpu_method=methods[GPU],
            cpu_method=methods[CPU],
            cpu_scope=self.config.cpu_scope_choice[0] if methods[CPU] != ABSENT else "",
            ram_method=methods[RAM],
            gpu_power_mean_w=accounting.mean_power_w(kinds[GPU].value_j, duration) if methods[GPU] != ABSENT else None,
            energy_per_sample_j=energy.value_j / segment.samples if segment.samples else None,
            **_NO_TOTALS,
            gap_s=max((d.totals.gap_s for d in components), default=0.0),
            covered_fraction=accounting.covered_fraction(components, duration),
            notes=";".join(filter(None, [_notes(segment, devices, duration, self.config.water_terms), *left_out])),
        )

    def _water(self, energy: Any, pue: float) -> dict[str, Any]:
        """The row's water columns, L, and their source: empty when water is not asked for or has no figure."""
        water = self.config.water_terms
        if water is None:
            return {**dict.fromkeys(WATER), "water_source": ""}
        low, high = joules_to_kwh(energy.low_j), joules_to_kwh(energy.high_j)
        return {
            **dict(zip(WATER, water.litres(energy.kwh, low, high, pue), strict=True)),
            "water_source": water.source(),
        }

    def _intensity(self, segment: Segment) -> tuple[float, str]:
        intensity = self.config.intensity
        start = datetime.fromisoformat(segment.opened_utc)
        end = datetime.fromisoformat(segment.last_utc or segment.opened_utc)
        if end < start:  # the wall clock was stepped back (NTP, a resumed VM); durations use the monotonic clock
            self._warn_clock(segment, start - end)
            end = start
        value = intensity.mean_over(start, end)
        if intensity.covers(start, end):
            return value, intensity.source
        if not self._extrapolated_warned:
            self._extrapolated_warned = True
            logger.warning("energy-tracker: the hourly intensity series ends before %s; using its nearest hour", end)
        return value, f"{intensity.source} (extrapolated: nearest hour)"

    def _warn_clock(self, segment: Segment, back: Any) -> None:
        if not self._clock_warned:
            self._clock_warned = True
            logger.warning(
                "energy-tracker: the system clock went back by %s during %s; durations are unaffected "
                "(monotonic clock), the row's end_utc precedes its start_utc",
                back,
                segment.label,
            )

    def _warn_resets(self, devices: Sequence[DeviceUsage]) -> None:
        for device in devices:
            key = (device.host, device.rank, device.sensor)
            if device.totals.resets and key not in self._reset_warned:
                self._reset_warned.add(key)
                logger.warning(
                    "energy-tracker: the energy counter of %s was reset (a driver reload?); the energy between "
                    "its last reading and the reset is not counted",
                    device.sensor,
                )

    def _log_first_forecast(self) -> None:
        if self.forecast is None or self._forecast_logged:
            return
        self._forecast_logged = True
        f = self.forecast
        logger.info(
            "energy-tracker: forecast for the whole run of %s: %s, %s CO2e (%s), %s",
            f.basis, units.energy(f.total_kwh), units.co2(f.total_co2_kg),
            units.co2_band(f.total_co2_kg_low, f.total_co2_kg_high), units.duration(f.total_s),
        )  # fmt: skip

    def _device_row(
        self, segment: Segment, device: DeviceUsage, duration_s: float, share: Embodied | None
    ) -> dict[str, Any]:
        totals = device.totals
        mean_w = accounting.mean_power_w(totals.energy_j, duration_s)
        return DeviceRecord(
            run=self.run,
            epoch=segment.epoch,
            phase=segment.phase,
            host=device.host,
            rank=device.rank,
            sensor=device.sensor,
            kind=device.kind,
            model=device.device,
            uuid=device.uuid,
            method=device.method,
            status=device.status,
            energy_kwh=joules_to_kwh(totals.energy_j),
            integrated_kwh=_cross_check(totals, duration_s),
            power_mean_w=mean_w,
            power_peak_w=_peak(device.peak_w, mean_w),
            readings=totals.readings,
            gap_s=totals.gap_s,
            resets=totals.resets,
            covered_s=totals.covered_s,
            rejected=totals.rejected,
            glitches=totals.glitches,
            **embodied_columns(share),
        ).as_row()


by_method = accounting.methods_by_kind
SECONDS_PER_HOUR = 3600.0


def embodied_columns(share: Embodied | None) -> dict[str, float | None]:
    """The ``embodied_co2_kg`` columns of a row for ``share`` (kg CO2e), empty for ``None``."""
    values = (None, None, None) if share is None else share
    return dict(zip(EMBODIED, values, strict=True))


def _node_columns(kwh: float, method: str) -> dict[str, Any]:
    """``node_kwh`` and ``node_method``: the node's own meter, beside the components; empty without one."""
    metered = method != ABSENT
    return {"node_kwh": kwh if metered else None, "node_method": method if metered else ""}


def _cross_check(totals: Any, duration_s: float) -> float | None:
    """The trapezoid beside a counter in kWh, when it covers >= 90 % of the row (else not comparable)."""
    partial = not totals.integrated_s or totals.integrated_s < 0.9 * duration_s
    if partial or abs(totals.integrated_j - totals.energy_j) < 1e-12:  # equal: a power-only sensor's own figure
        return None
    return joules_to_kwh(totals.integrated_j)


def _peak(peak_w: float | None, mean_w: float | None) -> float | None:
    """The highest reading, W; None when it is below the mean, which shows the readings missed the peak."""
    if peak_w is None or mean_w is None or peak_w >= mean_w * (1 - 1e-9):
        return peak_w
    return None


def _notes(segment: Segment, devices: Sequence[DeviceUsage], duration_s: float, water: Any = None) -> str:
    """A row's ``notes``: the segment's own, the tracker's on its devices and length, the water terms not counted."""
    trained_s = duration_s if segment.phase == TRAIN else 0.0  # the "short" note is for epochs only
    uncounted = water.notes if water is not None else ()
    return ";".join(filter(None, [segment.note, *accounting.notes_for(devices, trained_s), *uncounted]))
