"""The declared boundary of a run: what its figures count, how each term was obtained, and what they leave out.

A footprint means little without its boundary: BLOOM's final training was 24.7 t CO2e counting the
dynamic power alone and 50.5 t counting everything from manufacturing to operation (Luccioni et al.,
JMLR 2023; docs/measurement.md §8). Every run states its own: ``run.json``'s ``boundary``, the
summary, the report, the paper paragraph and the model card read it from here.

The shape (``Boundary.as_dict()``, ``run.json``'s ``boundary``) is stable::

    {"co2": "operational, location-based ...",
     "counted": [{"term": "gpu", "what": "GPU energy", "how": "measured", "source": "energy_counter"}, ...],
     "not_counted": [{"term": "network", "what": "networking and storage", "why": "..."}, ...]}

``term`` is a short fixed name (``gpu``, ``cpu``, ``ram``, ``pue``, ``node``, ``embodied``, ``water``
when not asked for, else ``water_onsite`` and ``water_offsite``, ...), ``what`` says it in words, ``how``
is ``measured``, ``estimated``, ``measured and estimated`` or ``given``, ``source`` the method(s), option
or table it came from, ``why`` the reason it is left out.

**Adding a term** (embodied emissions, the node's meter) is one rule in :data:`RULES`: a
function of the run's :class:`Facts` returning a :class:`Counted` when the term is on, else a
:class:`NotCounted` saying why not (a list of them for a term of several parts, like water's; ``None``
when it has nothing to say). Nothing here reads a file or the hardware: the boundary is built from
what the run already holds.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from tracker.sensors import CPU, GPU, NODE, RAM
from tracker.sensors import methods as registry
from tracker.sensors.methods import ABSENT

CO2_SCOPE = (
    "operational emissions of the electricity counted, location-based (the grid's average intensity), "
    "in the sense of the GHG Protocol Scope 2 Guidance; no market-based instrument is applied"
)
TABLE = "tracker/carbon/data/embodied.csv"
NOT_RECORDED = "not recorded (the run was written before the tracker declared its boundary)"


class Counted(NamedTuple):
    """A term the figures include: ``term`` (fixed name), ``what`` (in words), ``how``, ``source``."""

    term: str
    what: str
    how: str
    source: str

    def key(self) -> tuple[str, str, str]:
        """What makes two runs count this term alike: the term, its words and how (not the source's figures)."""
        return self.term, self.what, self.how


class NotCounted(NamedTuple):
    """A term the figures leave out: ``term`` (fixed name), ``what`` (in words), ``why``."""

    term: str
    what: str
    why: str


class Facts(NamedTuple):
    """What a run knows that its boundary is made of (nothing read from files or hardware).

    Attributes:
        config: the run's :class:`~tracker.session.config.Config`.
        methods: how each kind is measured, ``+``-joined, or ``absent``, by kind.
        sensors: each sensor's ``name``, ``kind``, ``method`` and ``info``.
        absent: the sources not found, each with ``source``, ``kind`` and ``reason``.
        launch: where the process sits in its job (a ``tracker.job.placement.Launch``), ``None`` when alone.
    """

    config: Any
    methods: Mapping[str, str]
    sensors: Sequence[Mapping[str, Any]]
    absent: Sequence[Any] = ()
    launch: Any = None


Entry = Counted | NotCounted
Rule = Callable[[Facts], Entry | Sequence[Entry] | None]
COMPONENT_WHAT = {GPU: "GPU energy", CPU: "CPU energy", RAM: "RAM energy"}


def _how(method: str) -> str:
    measured = {registry.is_measured(name) for name in method.split("+")}
    return "measured and estimated" if len(measured) > 1 else "measured" if measured == {True} else "estimated"


def _component(kind: str) -> Rule:
    def rule(facts: Facts) -> Counted | NotCounted:
        method = facts.methods.get(kind, ABSENT)
        if method != ABSENT:
            return Counted(kind, _component_what(kind, facts.sensors), _how(method), method)
        return _not_read(kind, COMPONENT_WHAT[kind], facts, "no sensor found")

    rule.__name__ = f"_{kind}"
    return rule


def _not_read(kind: str, what: str, facts: Facts, missing: str) -> NotCounted:
    """Why a kind's sensor gave nothing: left out by ``measure``, read by the node's local rank 0, or none found."""
    if kind not in facts.config.measure:
        return NotCounted(kind, what, f"left out by measure={tuple(facts.config.measure)!r}")
    if kind in (CPU, RAM, NODE) and facts.launch is not None and not facts.launch.node_wide:
        return NotCounted(kind, what, "the node's local rank 0 counts it, in its own shard")
    reasons = [f"{a.source}: {a.reason}" for a in facts.absent if a.kind == kind]
    return NotCounted(kind, what, f"{missing} ({'; '.join(dict.fromkeys(reasons))})" if reasons else missing)


def _component_what(kind: str, sensors: Sequence[Mapping[str, Any]]) -> str:
    if kind != CPU:
        return COMPONENT_WHAT[kind]
    scopes = {(s.get("info") or {}).get("cpu_scope") for s in sensors if s.get("kind") == CPU}
    return "this process tree's share of CPU energy" if "process" in scopes else "whole-CPU energy"


def pue_term(pue: float, given_by: str = "") -> Counted | NotCounted:
    """The facility's overhead: counted through a PUE above 1.0, else left out (PUE 1.0, the default)."""
    what = "facility overhead via the PUE"
    if pue == 1.0:
        return NotCounted("pue", what, "PUE 1.0 (the default): the machine's own draw; give pue= for a data centre's")
    return Counted("pue", what, "given", f"PUE {pue:g}{f', {given_by}' if given_by else ''}")


def _pue(facts: Facts) -> Counted | NotCounted:
    return pue_term(facts.config.pue)


def _cooling(facts: Facts) -> NotCounted | None:
    if facts.config.pue == 1.0:
        return None  # said with the PUE
    return NotCounted("cooling", "cooling beyond the PUE", "a PUE is the facility's average, not this run's own share")


def _node(facts: Facts) -> Counted | NotCounted:
    """The node's own meter: read beside the components and not added to them (``node_kwh``), else why not."""
    method = facts.methods.get(NODE, ABSENT)
    if method != ABSENT:
        what = "the whole machine by its own meter, beside the components, not added"
        return Counted(NODE, what, _how(method), method)
    what = "the rest of the machine (fans, power supplies, disks)"
    return _not_read(NODE, what, facts, "no whole-machine meter is read: only the components above")


def _embodied(facts: Facts) -> Counted | NotCounted:
    """The hardware's manufacture, amortised, in its own columns (``embodied=True``), else left out."""
    config = facts.config
    what = "embodied emissions of the GPUs and host, amortised, apart from the CO2e"
    if not config.embodied:
        return NotCounted(
            "embodied", "embodied emissions", "not asked for (embodied=True counts them apart from the CO2e)"
        )
    if facts.methods.get(GPU, ABSENT) == ABSENT:  # as accounting.embodied_shares: a host only beside its GPUs
        return NotCounted("embodied", "embodied emissions", "no GPU here, and the table's host is a GPU server's")
    if not _has_footprint(facts):
        why = "no GPU model here is in the table, and no host beside it is measured in this process"
        return NotCounted("embodied", "embodied emissions", why)
    rule = f"{config.embodied_lifetime_years:g} years at {config.embodied_utilisation:.0%} use"
    return Counted("embodied", what, "estimated", f"{TABLE} over {rule}")


def gpu_models(sensors: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each GPU sensor's model name, as the rows match it against the embodied table."""
    infos = [s.get("info") or {} for s in sensors if s.get("kind") == GPU]
    return [str(info.get("name") or info.get("model", "")) for info in infos]


def _has_footprint(facts: Facts) -> bool:
    """Whether any share is counted: a GPU whose model the table has, or a host measured beside the GPUs."""
    from tracker.carbon import embodied  # read only when embodied emissions are asked for

    known = any(embodied.footprint(embodied.GPU, model) for model in gpu_models(facts.sensors))
    return known or any(facts.methods.get(kind, ABSENT) != ABSENT for kind in (CPU, RAM))


# Each water term: its name here, its words, its attribute of tracker.carbon.water.Water (whose WORDS begin its notes).
WATER_TERMS = (
    ("water_onsite", "on-site cooling water", "onsite"),
    ("water_offsite", "the generation's water", "offsite"),
)


def _water(facts: Facts) -> Entry | list[Entry]:
    """Each water term (Li et al. 2023's on-site and off-site), its figure's short source, or why it is not counted."""
    water = facts.config.water_terms
    if water is None:
        return NotCounted("water", "water use", "not asked for (give water=True)")
    from tracker.carbon.water import WORDS

    entries: list[Entry] = []
    for term, what, side in WATER_TERMS:
        figure = getattr(water, side)
        if figure is None:
            note = next((n for n in water.notes if n.startswith(WORDS[side])), "")  # '<term> not counted (<why>)'
            why = note.partition(" not counted (")[2].removesuffix(")") or "no sourced figure"
            entries.append(NotCounted(term, what, why))
        else:
            how = "given" if figure.cite.endswith(" given") else "estimated"
            entries.append(Counted(term, what, how, f"{figure.l_per_kwh:g} L/kWh, {figure.cite}"))
    return entries


def _fixed(term: str, what: str, why: str) -> Rule:
    def rule(facts: Facts) -> NotCounted:
        return NotCounted(term, what, why)

    rule.__name__ = f"_{term}"
    return rule


# Every term, in the order it is shown: what is counted comes out first whatever its place here.
RULES: tuple[Rule, ...] = (
    _component(GPU),
    _component(CPU),
    _component(RAM),
    _pue,
    _node,
    _embodied,
    _water,
    _cooling,
    _fixed("network", "networking and storage", "the interconnect, switches and storage servers are not metered"),
    _fixed("idle", "idle or reserved capacity", "only this process's time between start() and stop() is measured"),
    _fixed("other_runs", "development and failed runs", "only the runs that were tracked are counted"),
)


class Boundary(NamedTuple):
    """What a run's figures count (``counted``) and leave out (``not_counted``), and the kind of CO2e (``co2``)."""

    counted: tuple[Counted, ...]
    not_counted: tuple[NotCounted, ...]
    co2: str = CO2_SCOPE

    @classmethod
    def build(cls, facts: Facts, rules: Sequence[Rule] = RULES) -> "Boundary":
        """The boundary of a run from its :class:`Facts`: the entries of every rule, in order."""
        entries: list[Entry] = []
        for rule in rules:
            said = rule(facts)
            entries += [] if said is None else [said] if isinstance(said, (Counted, NotCounted)) else list(said)
        return cls(
            tuple(e for e in entries if isinstance(e, Counted)), tuple(e for e in entries if isinstance(e, NotCounted))
        )

    @classmethod
    def from_dict(cls, data: Any) -> "Boundary | None":
        """A boundary read back from ``run.json``; ``None`` when the run recorded none (or not in this shape)."""
        if not isinstance(data, Mapping):
            return None
        try:
            counted = tuple(Counted(*(str(c[k]) for k in Counted._fields)) for c in data.get("counted") or ())
            left = tuple(NotCounted(*(str(n[k]) for k in NotCounted._fields)) for n in data.get("not_counted") or ())
        except (KeyError, TypeError):
            return None
        return cls(counted, left, str(data.get("co2") or CO2_SCOPE))

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready shape written to ``run.json`` (see the module's docstring)."""
        return {
            "co2": self.co2,
            "counted": [c._asdict() for c in self.counted],
            "not_counted": [n._asdict() for n in self.not_counted],
        }

    def replaced(self, entry: Counted | NotCounted) -> "Boundary":
        """This boundary with ``entry`` in place of the entry of the same term (e.g. a re-costed PUE)."""
        counted = tuple(c for c in self.counted if c.term != entry.term)
        left = tuple(n for n in self.not_counted if n.term != entry.term)
        if isinstance(entry, Counted):
            return self._replace(counted=(*counted, entry), not_counted=left)
        return self._replace(counted=counted, not_counted=(*left, entry))

    def key(self) -> tuple[Any, ...]:
        """What two boundaries must share to be one: each counted term with its words and how, the terms left out."""
        return tuple(c.key() for c in self.counted), tuple(sorted(n.term for n in self.not_counted))

    def counts_text(self, sources: bool = True, last: str = ", ") -> str:
        """``GPU energy (measured: energy_counter), ...`` (``sources``: with sources; ``last`` joins the last two)."""
        return listed([f"{c.what} ({c.how}{f': {c.source}' * bool(sources and c.source)})" for c in self.counted], last)

    def leaves_out_text(self, last: str = ", ") -> str:
        """``networking and storage, embodied emissions, ...`` (``last``: what joins the last two)."""
        return listed([n.what for n in self.not_counted], last)

    def text(self, sources: bool = True) -> str:
        """One line: what is counted and how (``sources``: and from what), what is not, and the kind of CO2e."""
        return "; ".join(self.parts(sources))

    def parts(self, sources: bool = True) -> tuple[str, str]:
        """``counts ...`` and ``not counted: ...; CO2e is ...``: :meth:`text` in two halves, for two lines."""
        return (
            f"counts {self.counts_text(sources) or 'nothing'}",
            f"not counted: {self.leaves_out_text() or 'nothing'}; CO2e is operational and location-based",
        )

    def sentence(self) -> str:
        """The paper's sentence: ``The figures count ...; they do not count ....``."""
        listed = self.leaves_out_text(", or ")
        return (
            f"The figures count {self.counts_text(sources=False, last=' and ') or 'nothing'}"
            f"{f'; they do not count {listed}' if listed else ''}."
        )


def listed(items: Sequence[str], last: str = ", ") -> str:
    """``a, b<last>c``: the items joined by commas, ``last`` between the last two."""
    return last.join((", ".join(items[:-1]), items[-1])) if len(items) > 1 else "".join(items)


def shared(boundaries: Sequence[Boundary]) -> Boundary:
    """What every boundary counts (the same term, words and how) and what every one leaves out (the same term)."""
    if not boundaries:
        return Boundary((), ())
    counted = [c for c in boundaries[0].counted if all(c.key() in {x.key() for x in b.counted} for b in boundaries)]
    left = [n for n in boundaries[0].not_counted if all(n.term in {x.term for x in b.not_counted} for b in boundaries)]
    return Boundary(tuple(counted), tuple(left))


def common(boundaries: Sequence[Boundary | None]) -> Boundary | None:
    """The boundary every run shares (the first, when all have the same :meth:`~Boundary.key`), else ``None``.

    ``None`` too when any run recorded none: a report of several runs never claims one boundary they do not share.
    """
    if not boundaries or any(b is None for b in boundaries):
        return None
    first = boundaries[0]
    return first if all(b.key() == first.key() for b in boundaries if b is not None) else None
