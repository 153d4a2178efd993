"""A ready-to-paste paragraph stating a run's energy and emissions, with its methods and sources.

Honest by construction: a component obtained from a model or a TDP is called an estimate, a
component read from a hardware counter is called measured, and the paragraph says which is which.

Example (one GPU with an NVML counter, CPU and RAM estimated)::

    Training took 2.5 h on 1 × NVIDIA A100-SXM4-40GB GPU and an Intel Xeon Gold 6248 CPU, consuming
    1.23 kWh (range 1.10–1.38 kWh; GPU measured with NVML energy counters, CPU estimated from CPU
    utilisation and a TDP of 150 W (...), RAM estimated with a RAM power model (0.375 W/GiB)), which
    at a grid carbon intensity of 381 g CO2e/kWh (...) and a PUE of 1 amounts to 0.469 kg CO2e
    (0.419–0.526 kg), the equivalent of 4.36 km driven by a new car (...). Measured with
    training-energy-tracker 0.1.0.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from tracker.logs.schema import COMPLETE
from tracker.report.render import RunSummary
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT

HOW_CHOSEN = {
    "explicit": "a figure given by the user",
    "hourly_csv": "an hourly series given by the user, applied hour by hour",
    "cloud_region": "the figure of the cloud region{place}",
    "argument": "the annual figure of the country given by the user{place}",
    "environment": "the annual figure of the country set in ENERGY_TRACKER_COUNTRY{place}",
    "timezone": "the annual figure of the country guessed from the system time zone{place}",
    "world_average": "the world average, as no country was known",
}


def fig(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, in fixed notation (``0.000123``, ``1230``)."""
    if value is None or not math.isfinite(value):
        return "unknown"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def duration_text(seconds: float) -> str:
    """A duration in h, min or s, whichever reads best."""
    if seconds >= 3600:
        return f"{fig(seconds / 3600)} h"
    if seconds >= 60:
        return f"{fig(seconds / 60)} min"
    return f"{fig(seconds)} s"


def hardware_text(s: RunSummary) -> str:
    """``2 × NVIDIA A100 GPUs and an AMD EPYC 7763 CPU``, from ``devices.csv`` (else ``run.json``)."""
    gpus = Counter(device or "unnamed" for kind, device in s.devices if kind == "gpu")
    cpus = list(dict.fromkeys(device for kind, device in s.devices if kind == "cpu" and device))
    parts = [f"{n} × {model} GPU{'s' if n > 1 else ''}" for model, n in gpus.items()]
    if cpus:
        parts.append(f"{'an' if cpus[0][:1].lower() in 'aeiou' else 'a'} {' / '.join(cpus)} CPU")
    if not parts:
        return "unrecorded hardware"
    return " and ".join(parts) if gpus else f"a CPU-only machine ({parts[0]})"


def _sensor_info(s: RunSummary, kind: str) -> dict[str, Any]:
    return next((dict(x.get("info") or {}) for x in s.sensors if x.get("kind") == kind), {})


def method_text(s: RunSummary, kind: str, method: str) -> str:
    """How one component's figure was obtained, in words, with the TDP or model used."""
    if registry.is_measured(method):
        return registry.phrase(method)
    info = _sensor_info(s, kind)
    tdp = f"{fig(info['tdp_w'])} W" if isinstance(info.get("tdp_w"), (int, float)) else "unrecorded W"
    if info.get("tdp_source"):
        tdp += f" ({info['tdp_source']})"
    values = {"tdp": tdp, "w_per_gib": info.get("w_per_gib", 0.375), "power_w": fig(info.get("power_w"))}
    return registry.phrase(method).format(**values)


def components_text(s: RunSummary) -> tuple[str, bool]:
    """``GPU measured with ..., CPU estimated from ...``, and whether every component is estimated."""
    phrases, any_measured = [], False
    for kind, methods in s.methods.items():
        if methods == ABSENT:
            continue
        names = methods.split("+")
        any_measured = any_measured or any(registry.is_measured(m) for m in names)
        phrases.append(f"{kind.upper()} " + " and ".join(method_text(s, kind, m) for m in names))
    return ", ".join(phrases) or "no component recorded", not any_measured


def intensity_text(s: RunSummary) -> str:
    """``381 g CO2e/kWh (<source>; <how it was chosen>)``."""
    grid = s.intensity
    place = ", ".join(str(p) for p in (grid.get("country"), grid.get("region")) if p)
    how = HOW_CHOSEN.get(str(grid["method"]), f"method {grid['method']}").format(place=f" ({place})" if place else "")
    source = str(grid["source"])
    why = source if grid["method"] == "explicit" else f"{source}; {how}"
    return f"{fig(grid['g_per_kwh'])} g CO2e/kWh ({why})"


def car_text(co2_kg: float, energy_kwh: float) -> str:
    """``12.3 km driven by a new car (EU fleet average; 107.5 gCO2/km, <source>)``."""
    from tracker.carbon.intensity import equivalents

    car = next(e for e in equivalents(co2_kg, energy_kwh) if e.unit == "km")
    name = car.name.replace("driving", "driven by")
    basis = f"{car.factor:g} {car.factor_unit}, {car.source}"
    return (
        f"{fig(car.amount)} km {name[:-1]}; {basis})"
        if name.endswith(")")
        else f"{fig(car.amount)} km {name} ({basis})"
    )


def _pue(pue: Any) -> str:
    return f"{pue:g}" if isinstance(pue, (int, float)) else "unrecorded"


def paragraph(s: RunSummary) -> str:
    """The ready-to-paste paragraph for one run."""
    from tracker._version import __version__

    if not s.rows:
        return f"Run {s.name} logged no rows (no epoch or phase finished), so there is no energy to report."
    t = s.totals
    components, all_estimated = components_text(s)
    text = (
        f"Training took {duration_text(t['duration_s'])} on {hardware_text(s)}, consuming "
        f"{'an estimated ' if all_estimated else ''}{fig(t['energy_kwh'])} kWh (range {fig(t['energy_kwh_low'])}–"
        f"{fig(t['energy_kwh_high'])} kWh; {components}), which at a grid carbon intensity of {intensity_text(s)} "
        f"and a PUE of {_pue(s.pue)} amounts to {fig(t['co2_kg'])} kg CO2e "
        f"({fig(t['co2_kg_low'])}–{fig(t['co2_kg_high'])} kg), the equivalent of "
        f"{car_text(t['co2_kg'], t['energy_kwh'])}. Measured with training-energy-tracker {s.version or __version__}."
    )
    if s.status != COMPLETE:
        text += f" The run did not finish (status {s.status}); the figures cover the {len(s.rows)} rows it logged."
    return text
