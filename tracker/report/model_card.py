"""The Hugging Face model card's ``co2_eq_emissions`` block, for a run or an experiment.

The model card's metadata (https://huggingface.co/docs/hub/model-cards-co2) takes the training's
emissions in grams of CO2e with where they came from: ``emissions``, ``source``, ``training_type``,
``geographical_location`` and ``hardware_used``. ``source`` also carries the runs' boundary (what the
emissions count and leave out), where a reader of the card sees it. The figures are the runs' recorded ones (re-costed
when ``report`` is asked to); strings are written as JSON strings, which YAML reads as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tracker.energy import G_PER_KG
from tracker.report.experiments import Experiment, group, methods_text
from tracker.report.paper import country_name, hardware_text
from tracker.report.render import RunSummary
from tracker.session.boundary import NOT_RECORDED, common


def co2_block(experiment: Experiment, training_type: str = "pre-training") -> str:
    """The ``co2_eq_emissions:`` YAML block of one experiment (a run alone is an experiment of one run).

    ``emissions`` is in grams of CO2e (the re-costed figure when the runs were re-costed), with three
    significant figures at least.
    """
    runs: Sequence[RunSummary] = experiment.runs
    co2 = experiment.recosted["co2_kg"] if experiment.recosted else experiment.totals.co2_kg
    versions = sorted({r.version for r in runs if r.version})
    methods = sorted({methods_text(r.methods) for r in runs})
    source = (
        f"training-energy-tracker{' ' + ', '.join(versions) if versions else ''} ({'; '.join(methods)}); "
        f"boundary: {_boundary(runs)}"
    )
    fields: dict[str, Any] = {
        "emissions": float(f"{co2 * G_PER_KG:.6g}"),
        "source": source,
        "training_type": training_type,
        "geographical_location": _locations(runs, experiment),
        "hardware_used": hardware_text(runs),
    }
    block = "co2_eq_emissions:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in fields.items())
    return block + _embodied_comment(experiment) + _water_comment(experiment)


def _embodied_comment(experiment: Experiment) -> str:
    """A YAML comment with the embodied emissions, g CO2e, and their sources: apart from ``emissions``, never in it."""
    from tracker.carbon import embodied

    t = experiment.totals
    if t.embodied_co2_kg is None:
        return ""
    sources = embodied.sources_for(d for r in experiment.runs for d in r.devices)
    grams = [f"{value * G_PER_KG:.3g}" for value in (t.embodied_co2_kg, t.embodied_co2_kg_low, t.embodied_co2_kg_high)]
    band = "no published range" if grams[1] == grams[2] else f"range {grams[1]}-{grams[2]} g"
    left = "; GPUs not in the table not counted" if any(r.embodied_left_out for r in experiment.runs) else ""
    return (
        f"  # embodied emissions (making the hardware, amortised; not in emissions): an estimated {grams[0]} g CO2e "
        f"({band}{left}), from {'; '.join(sources)}\n"
    )


def _water_comment(experiment: Experiment) -> str:
    """A YAML comment with the operational water and its terms' sources: the Hub's block has no field for it."""
    from tracker.carbon import water

    described = [water.Water.from_dict(r.water_terms).described() for r in experiment.runs if r.water_terms]
    if not described:
        return ""
    pieces = dict.fromkeys(piece for text in described for piece in text.split("; "))
    text = water.text(water.Litres(*experiment.totals.water().values()), "; ".join(pieces))
    return f"  # operational water consumption (Li et al. 2023 accounting, not a field of the Hub's schema): {text}\n"


def _boundary(runs: Sequence[RunSummary]) -> str:
    """What the emissions count and leave out, or that the runs differ or did not record it."""
    one = common([r.boundary for r in runs])
    if one is not None:
        return one.text(sources=False)
    if all(r.boundary is None for r in runs):
        return NOT_RECORDED
    return "the runs differ in what they count (see each run's run.json)"


def _locations(runs: Sequence[RunSummary], experiment: Experiment) -> str:
    """The grids' places (``France``, ``region US-CA``), or ``unknown (world average intensity)``."""
    recost = runs[0].recosted if experiment.recosted and runs else None
    if recost and (recost.get("country") or recost.get("region")):
        grids = [recost]
    else:
        grids = [r.intensity for r in runs]
    places = []
    for grid in grids:
        if grid.get("region"):
            places.append(str(grid["region"]))
        elif grid.get("country"):
            places.append(country_name(str(grid["country"])))
        elif grid.get("method") == "world_average":
            places.append("unknown (world average intensity)")
        else:
            places.append("unknown (intensity given by the authors)")
    return ", ".join(dict.fromkeys(places))


def model_card_text(summaries: Sequence[RunSummary], training_type: str = "pre-training") -> str:
    """One block per experiment; with several, each after a ``# experiment: <name>`` comment line."""
    experiments = group(summaries)
    if len(experiments) == 1:
        return co2_block(experiments[0], training_type)
    return "\n".join(f"# experiment: {e.name}\n{co2_block(e, training_type)}" for e in experiments)
