"""A paragraph per experiment that a reviewer would accept, with its references listed after it.

Honest by construction: a component read from a hardware counter is called measured, one from a
model or a TDP is called estimated, and the paragraph says which is which, in plain words. Sources
are cited by name and year with numbered references after the paragraph (no file names, no URLs);
numbers follow :mod:`tracker.units`. At most one everyday equivalent is given, and only when it
is meaningful at the run's scale (between half a unit and ten thousand).

Example (one GPU with an NVML counter, CPU and RAM estimated)::

    Training (3 runs) took 2.50 h in all on 1 × NVIDIA A100-SXM4-40GB GPU and an Intel Xeon Gold
    6248 CPU and used 1.23 kWh of electricity (range 1.10–1.38 kWh). GPU energy was measured with
    the GPU's built-in energy counter (NVIDIA NVML); CPU energy was estimated from CPU utilisation
    and a thermal design power of 150 W; ... At a grid carbon intensity of 381 g CO2e/kWh for
    Germany, from Our World in Data / Ember (2023) [1], and a PUE of 1.2, this amounts to 563 g
    CO2e (range 503–631 g), about as much as driving a car for 5.24 km [2]. ...

    [1] Our World in Data / Ember (2023). ...
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import tracker.units as units
from tracker.errors import ConfigurationError
from tracker.logs.schema import COMPLETE
from tracker.report.experiments import Experiment, group
from tracker.report.render import RunSummary
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT
from tracker.session.boundary import common, listed, shared

WORLD_AVERAGE_TAG = "world_average (IEA 2019"  # in codecarbon's world-average source (tracker.carbon.tables)
WORLD_AVERAGE_NOTE = "the world average, a placeholder as the location was not known"
REFERENCE_TEXT = {
    "IEA": "Global Energy & CO2 Status Report 2019: world average carbon intensity of electricity generation, "
    "as distributed with CodeCarbon.",
    "": "Carbon intensity of electricity generation, as distributed with CodeCarbon.",
}
SCOPE_2 = (
    "GHG Protocol (2015). Scope 2 Guidance, an amendment to the GHG Protocol Corporate Standard. World Resources "
    "Institute and World Business Council for Sustainable Development."
)
THE = {"USA", "GBR", "NLD", "ARE", "PHL", "CZE", "DOM", "BHS", "GMB", "COM", "CAF", "COD", "MDV"}  # "the United States"


class References:
    """Numbered references, each cited once however often it is used."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def cite(self, reference: str) -> str:
        """``[n]`` for ``reference``, numbering it on first use."""
        if reference not in self.items:
            self.items.append(reference)
        return f"[{self.items.index(reference) + 1}]"

    def __str__(self) -> str:
        return "\n".join(f"[{i}] {text}" for i, text in enumerate(self.items, 1))


def hardware_text(runs: Sequence[RunSummary]) -> str:
    """``2 × NVIDIA A100 GPUs and an AMD EPYC 7763 CPU``, from ``devices.csv`` (else ``run.json``)."""
    devices = [d for s in runs for d in s.devices]
    # Each run's devices are counted on their own (a run's eight A100s are eight); the runs of an
    # experiment usually share their machines, so across runs a model counts as many as one run had.
    gpus: Counter[str] = Counter()
    for s in runs:
        gpus |= Counter(device or "unnamed" for kind, device in s.devices if kind == "gpu")
    cpus = list(dict.fromkeys(device for kind, device in devices if kind == "cpu" and device))
    parts = [f"{n} × {model} GPU{'s' if n > 1 else ''}" for model, n in gpus.items()]
    if cpus:
        parts.append(f"{'an' if cpus[0][:1].lower() in 'aeiou' else 'a'} {' / '.join(cpus)} CPU")
    if not parts:
        return "unrecorded hardware"
    return " and ".join(parts) if gpus else f"a CPU-only machine with {parts[0]}"


def _sensor_info(runs: Sequence[RunSummary], kind: str) -> dict[str, Any]:
    return next((dict(x.get("info") or {}) for s in runs for x in s.sensors if x.get("kind") == kind), {})


def method_text(runs: Sequence[RunSummary], kind: str, method: str) -> str:
    """How one component's figure was obtained: the methods registry's plain words, with the TDP or model used."""
    info = _sensor_info(runs, kind)
    tdp = units.power(info["tdp_w"]) if isinstance(info.get("tdp_w"), (int, float)) else "an unrecorded value"
    power = units.power(info["power_w"]) if isinstance(info.get("power_w"), (int, float)) else "unrecorded power"
    values = {"tdp": tdp, "w_per_gib": info.get("w_per_gib", 0.375), "power_w": power}
    return registry.phrase(method).format(**values)


def components_text(runs: Sequence[RunSummary]) -> tuple[str, bool]:
    """``GPU energy was measured ...; CPU energy was estimated ...``, and whether every part is estimated."""
    phrases, any_measured = [], False
    for kind in ("gpu", "cpu", "ram"):
        names = list(dict.fromkeys(m for s in runs for m in s.methods[kind].split("+") if m != ABSENT))
        if not names:
            continue
        any_measured = any_measured or any(registry.is_measured(m) for m in names)
        phrases.append(f"{kind.upper()} energy was " + " or ".join(method_text(runs, kind, m) for m in names))
    text = "; ".join(phrases) + "." if phrases else "No component was recorded."
    return text[0].upper() + text[1:], not any_measured


def country_name(code: str) -> str:
    """``Germany``, ``the United States`` (codecarbon's names), else the code itself."""
    try:
        from tracker.carbon.tables import country_names

        name = country_names().get(code)
    except ConfigurationError:  # codecarbon's data is not installed: the code is still correct
        name = None
    return f"{'the ' if code in THE else ''}{name}" if name else code


def cited_source(source: str) -> tuple[str, str] | None:
    """``("Our World in Data / Ember", "2023")`` from a recorded source; None for a user's own figure.

    The world average (codecarbon's, whose source ends in a URL) is cited to the IEA (2019).
    """
    if WORLD_AVERAGE_TAG in source:
        return "IEA", "2019"
    match = re.search(r"\(([^()]*)\)[^()]*?(\d{4})\s*$", source)
    if not match:
        return None
    name = match.group(1).split(",")[0].strip()
    return name, match.group(2)


def _where(grid: dict[str, Any]) -> str:
    if grid.get("method") == "world_average":
        return ""  # said in the parenthesis after the figure (WORLD_AVERAGE_NOTE)
    country, region = grid.get("country"), grid.get("region")
    if region:
        return f" for region {region}"
    return f" for {country_name(str(country))}" if country else ""


def _origin(grid: dict[str, Any], refs: References) -> str:
    """``, from Our World in Data / Ember (2023) [1]``, or ``, a figure given by the authors``."""
    cited = cited_source(str(grid.get("source") or ""))
    if grid.get("method") in ("explicit", "hourly_csv") or cited is None:
        return ", a figure given by the authors"
    name, year = cited
    what = REFERENCE_TEXT.get(name, REFERENCE_TEXT[""])
    return f", from {name} ({year}) {refs.cite(f'{name} ({year}). {what}')}"


def intensity_text(grids: Sequence[dict[str, Any]], refs: References) -> str:
    """``381 g CO2e/kWh for Germany, from Our World in Data / Ember (2023) [1]`` (several grids: ``;``-joined)."""
    return "; ".join(grid_phrases(grids, refs))


def grid_phrases(grids: Sequence[dict[str, Any]], refs: References) -> list[str]:
    """Each grid with its own place and source; with several grids, each says how many runs used it.

    A figure is given once however many runs used it (compared as printed: 475.00000000000006 is 475).
    """
    places: dict[tuple[str, str, bool], list[str]] = {}
    runs: Counter[tuple[str, str, bool]] = Counter()
    for grid in grids:
        key = (_where(grid), _origin(grid, refs), grid.get("method") == "world_average")
        value = grid.get("g_per_kwh")
        printed = places.setdefault(key, [])
        if isinstance(value, (int, float)) and units.number(value) not in printed:
            printed.append(units.number(value))
        runs[key] += 1
    phrases = []
    for (where, origin, world), values in places.items():
        figure = " and ".join(values) + " g CO2e/kWh" if values else "an unrecorded intensity"
        notes = [WORLD_AVERAGE_NOTE] if world else []
        n = runs[(where, origin, world)]
        notes += [f"{n} run{'s' if n > 1 else ''}"] if len(places) > 1 else []
        phrases.append(f"{figure}{where}{' (' + '; '.join(notes) + ')' if notes else ''}{origin}")
    return phrases


def equivalent_text(co2_kg: float, energy_kwh: float, refs: References) -> str:
    """``, about as much as driving a car for 5.24 km [2]``, or nothing when no everyday unit fits the scale."""
    from tracker.carbon.intensity import equivalents

    for e in equivalents(co2_kg, energy_kwh):
        if 0.5 <= e.amount <= 10_000:
            what = {"charges": f"{units.significant(e.amount)} smartphone charges",
                    "km": f"driving a car for {units.significant(e.amount)} km",
                    "passenger-km": f"flying {units.significant(e.amount)} km in economy class"}[e.unit]  # fmt: skip
            return f", about as much as {what} {refs.cite(e.source + '.')}"
    return ""


def _pue(runs: Sequence[RunSummary]) -> str:
    """``a PUE of 1.20``, ``PUEs of 1.10 to 1.50`` (compared as printed)."""
    chosen = [s.recosted["pue"] if s.recosted and s.recosted.get("pue") is not None else s.pue for s in runs]
    values = sorted({float(p) for p in chosen if isinstance(p, (int, float))})
    printed = list(dict.fromkeys(units.number(v) for v in values))
    if len(printed) > 1:
        return f"PUEs of {printed[0]} to {printed[-1]}"
    return f"a PUE of {printed[0]}" if printed else "a PUE of an unrecorded value"


def _intensities(runs: Sequence[RunSummary], refs: References) -> str:
    phrases = grid_phrases(_grids(runs), refs)
    if len(phrases) == 1:
        return f"a grid carbon intensity of {phrases[0]},"
    return f"grid carbon intensities of {'; '.join(phrases)};"


def _grids(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    return [s.recosted if s.recosted and s.recosted.get("g_per_kwh") is not None else s.intensity for s in runs]


def experiment_paragraph(experiment: Experiment) -> tuple[str, References]:
    """The paragraph for one experiment and its references."""
    from tracker._version import __version__

    runs, t, refs = experiment.runs, experiment.totals, References()
    if not any(s.rows for s in runs):
        return f"{experiment.name} logged no rows (no epoch or phase finished): there is no energy to report.", refs
    components, all_estimated = components_text(runs)
    co2 = experiment.recosted or t.sums()
    count = f" ({len(runs)} runs)" if len(runs) > 1 else ""
    text = (
        f"Training{count} took {units.duration(t.duration_s)}{' in all' if count else ''} on {hardware_text(runs)} "
        f"and used {'an estimated ' if all_estimated else ''}{units.energy(t.energy_kwh)} of electricity "
        f"(range {units.energy_band(t.energy_kwh_low, t.energy_kwh_high)}). {components} At "
        f"{_intensities(runs, refs)} and {_pue(runs)}, this amounts to "
        f"{units.co2(co2['co2_kg'])} CO2e (range {units.co2_band(co2['co2_kg_low'], co2['co2_kg_high'])})"
        f"{equivalent_text(co2['co2_kg'], t.energy_kwh, refs)}.{water_sentence(experiment, refs)} "
        f"{node_text(t)}{embodied_text(runs, t, refs)}{boundary_text(runs, refs)} Energy was recorded per epoch with "
        f"training-energy-tracker {runs[0].version or __version__}."
    )
    unfinished = [s for s in runs if s.status != COMPLETE]
    if unfinished:
        text += f" {_unfinished(unfinished)}"
    return text, refs


def node_text(t: Any) -> str:
    """``The machine's own power meter ... recorded 1.20 kWh ... 25.0 % ...``, or nothing without a meter."""
    if t.node_kwh is None:
        return ""
    share, more = t.unexplained_share, (t.unexplained_kwh or 0.0) >= 0
    rest = (
        f", {units.energy(abs(t.unexplained_kwh))} ({units.significant(100 * abs(share))} %) "
        + ("more than the components above over the same time (the rest of the machine: fans, power supplies, "
           "disks, network)" if more else "less than the components above over the same time (an estimated "
           "component erring high, or the meter's own error)")
        if share is not None
        else ""
    )  # fmt: skip
    return (
        f"The machine's own power meter (ACPI, read through Linux hwmon) recorded {units.energy(t.node_kwh)}{rest}; "
        "it is reported beside the components, not added to them. "
    )


def embodied_text(runs: Sequence[RunSummary], t: Any, refs: References) -> str:
    """``Making the hardware ... adds 1.23 kg CO2e (range ...) [3], apart from the figure above. ``, or nothing."""
    from tracker.carbon import embodied

    if t.embodied_co2_kg is None:
        return ""
    info = next((s.embodied for s in runs if s.embodied and s.embodied.get("counted")), None) or {}
    sources = embodied.sources_for(d for s in runs for d in s.devices)
    cited = " ".join(refs.cite(f"{source}.") for source in sources)
    life = info.get("lifetime_years"), info.get("utilisation")
    over = f" over a {life[0]:g}-year life at {life[1]:.0%} use" if None not in life else ""
    band = _range(units.published_band(t.embodied_co2_kg_low, t.embodied_co2_kg_high))
    left_out = any(s.embodied_left_out for s in runs)
    left = "; GPU models without a published footprint are not counted" if left_out else ""
    return (
        f"Making the hardware (its embodied emissions, amortised{over}) adds an estimated "
        f"{units.co2(t.embodied_co2_kg)} CO2e ({band}{left}) {cited}, apart from the operational CO2e above. "
    )


def _range(band: str) -> str:
    return band if band[:1].isalpha() else f"range {band}"


def boundary_text(runs: Sequence[RunSummary], refs: References) -> str:
    """What the figures count and leave out: one sentence when every run shares it, else how the runs differ."""
    recorded = [s for s in runs if s.boundary is not None]
    if not recorded:
        return "What these figures leave out (their boundary) was not recorded by the tracker version that wrote them."
    one = common([s.boundary for s in runs])
    text = one.sentence() if one is not None else _differing(runs, recorded)
    return f"{text} The CO2e is operational and location-based, as the GHG Protocol defines it {refs.cite(SCOPE_2)}."


def _differing(runs: Sequence[RunSummary], recorded: Sequence[RunSummary]) -> str:
    """What every run counts and leaves out, then what each counts beyond that (or that it recorded nothing)."""
    both = shared([s.boundary for s in recorded])
    same = {c.key() for c in both.counted}
    extras: dict[str, list[str]] = {}
    for s in recorded:
        more = [f"{c.what} ({c.how})" for c in s.boundary.counted if c.key() not in same]
        extras.setdefault(listed(more, " and ") or "nothing more", []).append(s.name)
    beyond = [f"{listed(names, ' and ')} count{'s' * (len(names) == 1)} {more}" for more, names in extras.items()]
    unrecorded = [s.name for s in runs if s.boundary is None]
    if unrecorded:
        beyond.append(f"{listed(unrecorded, ' and ')} did not record {'its' if len(unrecorded) == 1 else 'their'} one")
    none = f" and none counts {both.leaves_out_text(', or ')}" if both.not_counted else ""
    return (
        f"The runs do not share one boundary: every run counts {both.counts_text(False, ' and ') or 'nothing'}{none}"
        f"; beyond that, {'; '.join(beyond)}."
    )


LI_ET_AL = (
    'Li, P., Yang, J., Islam, M. A. & Ren, S. (2023). Making AI Less "Thirsty": Uncovering and Addressing the '
    "Secret Water Footprint of AI Models. arXiv:2304.03271; Communications of the ACM (2025)."
)
CHINI_PEER = (
    "Chini, C. M. & Peer, R. A. M. (2021). The water footprint of global energy trade from 2010 to 2018. "
    "Scientific Data."
)
AWS_WUE = (
    "Amazon Web Services (2025). Water usage effectiveness by region, calendar year 2025, as compiled by the "
    "Green Software Foundation's Real Time Cloud project."
)
TERM_WORDS = {"onsite": "on-site cooling", "offsite": "off-site electricity generation"}


def water_sentence(experiment: Experiment, refs: References) -> str:
    """`` Its operational water consumption ... was 1.05 L (range ...): ...`` with its sources; empty when not counted.

    One sentence: the total with its band, then each term with its figure (L/kWh) and where the figure comes
    from, or that the term was not counted for want of a sourced figure.
    """
    from tracker.carbon.water import OFFSITE, ONSITE, Water

    terms = [Water.from_dict(s.water_terms) for s in experiment.runs if s.water_terms]
    t = experiment.totals
    if not terms:
        return ""
    if t.water_l is None:
        return " Operational water was not counted: no term had a sourced figure."
    li = refs.cite(LI_ET_AL)
    parts = [_term_phrase(term, litres, terms, refs) for term, litres in ((ONSITE, t.water_onsite_l),
             (OFFSITE, t.water_offsite_l))]  # fmt: skip
    return (
        f" Its operational water consumption (water evaporated, not withdrawn: IT energy × on-site WUE plus IT "
        f"energy × PUE × the grid's water intensity, following Li et al. {li}) was {units.water(t.water_l)} "
        f"(range {units.water_band(t.water_l_low, t.water_l_high)}): {'; '.join(parts)}."
    )


def _term_phrase(term: str, litres: float | None, terms: Sequence[Any], refs: References) -> str:
    """``on-site cooling 150 mL at 0.500 L/kWh, a figure given by the authors``, or why it was not counted."""
    figures = [getattr(w, term) for w in terms]
    known = list(dict.fromkeys(f for f in figures if f is not None))
    if litres is None or not known:
        return f"{TERM_WORDS[term]} was not counted, for want of a sourced figure"
    at = " and ".join(f"{units.significant(f.l_per_kwh)} L/kWh{_water_origin(f.source, refs)}" for f in known)
    missing = figures.count(None)
    left = f" (not counted for {missing} of {len(figures)} runs, for want of a figure)" if missing else ""
    return f"{TERM_WORDS[term]} {units.water(litres)} at {at}{left}"


def _water_origin(source: str, refs: References) -> str:
    """Where a water figure comes from, cited: a bundled table's source, or the authors' own figure."""
    if source.startswith("Chini"):
        return f" from Chini and Peer (2021) {refs.cite(CHINI_PEER)}"
    if source.startswith("AWS"):
        return f", published by AWS for its region {refs.cite(AWS_WUE)}"
    return ", a figure given by the authors"


def _unfinished(runs: Sequence[RunSummary]) -> str:
    if len(runs) == 1:
        s = runs[0]
        return f"The run {s.name} did not finish ({s.status}); the figures cover the {len(s.rows)} rows it logged."
    return f"{len(runs)} runs did not finish; the figures cover the rows they logged."


def paper_text(summaries: Sequence[RunSummary]) -> str:
    """Every experiment's paragraph, each followed by its references."""
    blocks = []
    for experiment in group(summaries):
        text, refs = experiment_paragraph(experiment)
        blocks.append(text + (f"\n\nReferences\n{refs}" if refs.items else ""))
    return "\n\n".join(blocks) + "\n"


def paragraph(s: RunSummary) -> str:
    """The paragraph for one run alone (its references after it)."""
    text, refs = experiment_paragraph(group([s])[0])
    return text + (f"\n\nReferences\n{refs}" if refs.items else "")
