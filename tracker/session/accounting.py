"""From joules per sensor to the rows users read: pure functions, no clock, no I/O.

Uncertainty bands come from each sensor's method (:mod:`tracker.sensors.methods` holds them and
their sources); polled power adds three standard deviations of the meter's sampling error.

The carbon intensity and PUE are taken as given (their sources are in every row); the band is
the energy band carried through ``co2 = kWh × PUE × g/kWh / 1000``.
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from tracker.energy import co2_kg, joined, joules_to_kwh
from tracker.logs.totals import Totals
from tracker.measure.meter import SensorTotals
from tracker.sensors import CPU, GPU, KINDS, RAM
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT

if TYPE_CHECKING:  # imported when a run counts embodied emissions, not with every tracker
    from tracker.carbon.embodied import Embodied

SAMPLING_SIGMAS = 3.0


class DeviceUsage(NamedTuple):
    """The energy of one sensor over one row, with what is needed to describe it.

    Picklable, so that DDP ranks can send theirs to rank 0.
    """

    sensor: str
    kind: str
    method: str
    device: str
    uuid: str
    host: str
    rank: int
    status: str
    totals: SensorTotals
    peak_w: float | None


class Energy(NamedTuple):
    """Energy with its band, J."""

    value_j: float = 0.0
    low_j: float = 0.0
    high_j: float = 0.0

    def __add__(self, other: "Energy") -> "Energy":
        return Energy(self.value_j + other.value_j, self.low_j + other.low_j, self.high_j + other.high_j)

    def scaled(self, factor: float) -> "Energy":
        """The same energy times ``factor``."""
        return Energy(self.value_j * factor, self.low_j * factor, self.high_j * factor)

    @property
    def kwh(self) -> float:
        """The central value, kWh."""
        return joules_to_kwh(self.value_j)


def energy_with_band(totals: SensorTotals, method: str) -> Energy:
    """One sensor's energy and band in J, from its method, its sampling variance and its edges' error bounds."""
    low, high = registry.band(method)
    sampling = SAMPLING_SIGMAS * math.sqrt(totals.sampling_var_j2) + totals.edge_error_j
    value = totals.energy_j
    return Energy(value, max(0.0, value * low - sampling), value * high + sampling)


def by_kind(devices: Iterable[DeviceUsage]) -> dict[str, Energy]:
    """Energy and band per kind (gpu, cpu, ram), every kind present even if zero."""
    result = {kind: Energy() for kind in KINDS}
    for device in devices:
        result[device.kind] = result[device.kind] + energy_with_band(device.totals, device.method)
    return result


def methods_by_kind(devices: Sequence[DeviceUsage]) -> dict[str, str]:
    """The methods used for each kind, ``+``-joined in first-seen order, or ``absent``."""
    return {kind: joined([d.method for d in devices if d.kind == kind]) for kind in KINDS}


def mean_power_w(energy_j: float, duration_s: float) -> float | None:
    """Mean power in W, or None for an empty interval."""
    return energy_j / duration_s if duration_s > 0 else None


def notes_for(devices: Sequence[DeviceUsage], duration_s: float, short_epoch_s: float = 5.0) -> list[str]:
    """Notes for a row: sensors not ok, counter events, rejected readings, late edges, gaps, a short epoch."""
    notes = [f"{d.sensor} {d.status}" for d in devices if d.status != "ok"]
    for device in devices:
        notes += _device_notes(device)
    if 0 < duration_s < short_epoch_s:
        notes.append(f"short ({duration_s:.3g} s < {short_epoch_s:g} s: boundary effects dominate)")
    return notes


def _device_notes(device: DeviceUsage) -> list[str]:
    t, name = device.totals, device.sensor
    counter = registry.is_counter(device.method)
    candidates = [
        (t.resets, f"{name} counter reset"),
        (t.jitters, f"{name} counter jitter (no energy booked)"),
        (t.glitches, f"{name} counter glitch x{t.glitches} (estimated from power)"),
        (t.rejected, f"{name} rejected {t.rejected} implausible readings"),
        (t.stale_edges, f"{name} read late at {t.stale_edges} edges (background readings used)"),
        (t.gap_s > 0, f"{name} gap {t.gap_s:.3g} s" + (" (counter: no energy lost)" if counter else " (estimated)")),
        (t.split_s > 0, f"{name} out across an edge {t.split_s:.3g} s (split estimated from its recent power)"),
        (t.unmeasured_s > 0, f"{name} unmeasured {t.unmeasured_s:.3g} s"),
    ]
    return [note for condition, note in candidates if condition]


def covered_fraction(devices: Sequence[DeviceUsage], duration_s: float) -> float | None:
    """The least share of ``duration_s`` any device covered with good readings, 0 to 1; None without devices."""
    if not devices:
        return None
    if duration_s <= 0:
        return 1.0
    return min(1.0, min(d.totals.covered_s for d in devices) / duration_s)


class Forecast(NamedTuple):
    """The whole run extrapolated from the finished epochs or from the step rate (kWh, kg CO2e, s).

    ``basis`` says from what, for people: ``10 epochs`` or ``200000 steps``.
    """

    total_kwh: float
    total_co2_kg: float
    total_co2_kg_low: float
    total_co2_kg_high: float
    total_s: float
    basis: str = ""


def forecast(totals: Totals, epochs: int | None, elapsed_s: float) -> Forecast | None:
    """Scale the totals so far by ``epochs / epochs finished``, once an epoch has finished.

    Every epoch is assumed to cost the mean of those finished, the energy between epochs
    included; the band is the band of the totals so far, scaled alike.
    """
    if not epochs or totals.epochs < 1:
        return None
    scale = epochs / totals.epochs
    return Forecast(
        totals.energy_kwh * scale,
        totals.co2_kg * scale,
        totals.co2_kg_low * scale,
        totals.co2_kg_high * scale,
        elapsed_s * scale,
        f"{epochs} epochs",
    )


class StepMark(NamedTuple):
    """The run at the end of the first window of steps (the first row that counted steps): whence the rate."""

    totals: Totals
    steps: int
    elapsed_s: float


def step_forecast(totals: Totals, mark: StepMark | None, steps: int, total_steps: int | None, elapsed_s: float
                  ) -> Forecast | None:  # fmt: skip
    """The totals so far, plus the steps left at the rate since ``mark`` (energy, CO2e and band, time).

    The first window (compilation, caches warming, the first batches loaded) is left out of the
    rate; everything after it, validations and checkpoints included, is in it.
    """
    if not total_steps or mark is None or steps <= mark.steps:
        return None
    left = max(total_steps - steps, 0) / (steps - mark.steps)
    base = mark.totals
    return Forecast(
        totals.energy_kwh + (totals.energy_kwh - base.energy_kwh) * left,
        totals.co2_kg + (totals.co2_kg - base.co2_kg) * left,
        totals.co2_kg_low + (totals.co2_kg_low - base.co2_kg_low) * left,
        totals.co2_kg_high + (totals.co2_kg_high - base.co2_kg_high) * left,
        elapsed_s + (elapsed_s - mark.elapsed_s) * left,
        f"{total_steps} steps",
    )


def break_even_queries(training_j: float, per_query_j: float | None) -> float | None:
    """How many queries until inference has used as much energy as the training so far."""
    if not per_query_j or per_query_j <= 0:
        return None
    return training_j / per_query_j


__all__ = [
    "ABSENT",
    "CPU",
    "GPU",
    "RAM",
    "DeviceUsage",
    "Energy",
    "Forecast",
    "StepMark",
    "break_even_queries",
    "by_kind",
    "co2_kg",
    "covered_fraction",
    "energy_with_band",
    "notes_for",
    "forecast",
    "step_forecast",
    "mean_power_w",
    "methods_by_kind",
]


def embodied_shares(
    devices: Sequence[DeviceUsage], hours: float, lifetime_years: float, utilisation: float
) -> tuple[list["Embodied | None"], list[str]]:
    """Each device's amortised share of embodied emissions over ``hours`` (kg CO2e), and notes on those left out.

    A GPU carries its model's footprint; each host's footprint is split equally among its CPU and RAM
    devices, so that it is counted once per node, where the node's CPU and RAM are measured (local
    rank 0, :mod:`tracker.job.placement`), and dropped with them when a merge finds them twice. The
    table's host is a GPU server's, so a host is counted only beside a GPU of its own in the row. A GPU
    whose model the table lacks has no share (``None``) and a note; the node's own meter has none.
    """
    from tracker.carbon import embodied

    node_devices = Counter(d.host for d in devices if d.kind in (CPU, RAM))
    gpu_hosts = {d.host for d in devices if d.kind == GPU}
    shares: list[Embodied | None] = []
    notes: dict[str, None] = {}  # each once, in order
    for device in devices:
        row, note = _footprint(device, gpu_hosts)
        if note:
            notes[note] = None
        share = None if row is None else embodied.amortised(row, hours, lifetime_years, utilisation)
        shares.append(share if share is None or device.kind == GPU else share.scaled(1 / node_devices[device.host]))
    return shares, list(notes)


def _footprint(device: DeviceUsage, gpu_hosts: set[str]) -> tuple[Any, str]:
    """The table's row a device takes its share from (``None``: none), and a note when it is left out."""
    from tracker.carbon import embodied

    if device.kind == GPU:
        row = embodied.footprint(embodied.GPU, device.device)
        model = device.device or "model unknown"
        return row, "" if row else f"embodied: {device.sensor} ({model}) {embodied.NOT_IN_TABLE}"
    if device.kind not in (CPU, RAM):
        return None, ""  # the node's meter is not a part of the machine
    if device.host not in gpu_hosts:
        return None, f"embodied: host {device.host} not counted (the table's host is a GPU server's; no GPU here)"
    return embodied.footprint(embodied.HOST), ""


def embodied_total(shares: Sequence["Embodied | None"]) -> "Embodied | None":
    """The sum of the shares counted, kg CO2e; ``None`` when none is."""
    counted = [share for share in shares if share is not None]
    return sum(counted[1:], counted[0]) if counted else None
