"""``energy-tracker reconcile``: a run's energy beside an independent meter's, and which devices and time each covers.

The meters, read from files written in their own documented formats:

- **dcgm-exporter** (NVIDIA's Prometheus exporter for DCGM): ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``, a
  counter of the "Total energy consumption since boot (in mJ)" of each GPU (dcgm-exporter's
  ``etc/default-counters.csv``), one sample per GPU labelled ``gpu``, ``UUID``, ``pci_bus_id``, ``device``,
  ``modelName`` and ``Hostname`` (``hostname`` since dcgm-exporter PR #655, merged in May 2026); with
  ``--use-old-namespace`` the label is ``uuid`` and the 1.x metric ``dcgm_total_energy_consumption``
  (``etc/1.x-compatibility-metrics.csv``). Two ways people keep it:

  - scrapes of its endpoint (``curl host:9400/metrics > before.prom``, another after the job) in
    Prometheus's text exposition format (prometheus.io, *Exposition formats*: a sample line is
    ``metric_name [{label_name="label_value", ...}] value [timestamp]``, the timestamp an int64 of
    milliseconds since the epoch). A sample's time is its timestamp where it has one, else the time given
    for its file (``--at FILE=TIME``), else the file's modification time; the output says which.
  - a Prometheus HTTP API answer saved as JSON (prometheus.io, *HTTP API*, ``/api/v1/query_range``:
    ``{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {...}, "values":
    [[<unix_time>, "<sample_value>"], ...]}]}}``, times in seconds, values as strings; an instant
    ``/api/v1/query`` answer, ``"vector"`` with one ``"value"`` per series, works too).

  The counter's energy over its samples' window is the sum of its increases (``tracker/energy.py``'s
  counter delta); a decrease is a reset (the driver reloaded, the machine rebooted: the counter counts
  since then), after which its value is the energy since, a lower bound. The samples' window may be wider
  than the run's: the seconds outside the run are shown, and where samples fall on both sides of the run's
  edges, the counter's energy within the run is bounded from the samples around each edge (a counter only
  grows, so no assumption about the power in between), with the linear interpolation between them.

  The text is parsed here rather than by ``prometheus_client.parser``: only one metric's lines are read,
  an error names the file, the line and what was expected (the library's names neither), and the library,
  the ``prometheus`` extra, is not needed to read a file.

- **Slurm's accounting**: ``sacct --format=JobID,ConsumedEnergyRaw`` (optionally ``ElapsedRaw`` and
  ``NNodes``) saved with ``--parsable2`` (``|``-separated, "without a '|' at the end", a header first; ``-p``'s
  trailing ``|`` is read too) or in the default fixed-width table (a header, a line of dashes; a cell too wide
  for its column is cut and ends with ``+``, and is refused). ConsumedEnergyRaw is the "total energy consumed by
  all tasks in a job, in joules", "only in the case of an exclusive job allocation" the job's own (sacct's man
  page); job ids are ``<job>[.<step>]`` (steps ``batch``, ``extern``, ``0``...), an array task's ``<job>_<task>``.
  Which lines are used, so that no node's energy is counted twice, is :func:`slurm_energy`'s rule. What the
  figure measures is the site's ``AcctGatherEnergyType`` plugin's (slurm.conf: ``ipmi``, ``pm_counters``,
  ``xcc`` the node from its BMC, ``rapl`` the CPUs' RAPL, ``gpu`` the GPUs): it is compared with the run's node
  meter (``node_kwh``) where the run has one and the plugin reads the node, else with the tracker's components,
  and the output says which.

The tracker's side is the run's ``devices.csv`` (each GPU's energy by UUID, all its rows: epochs, phases
and the ``other`` rows between them, idle time included) over the run's rows' window (``epochs.csv``).
Differences are the tracker's figure minus the meter's, in percent of the meter's.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import tracker.units as units
from tracker.energy import J_PER_KWH, counter_delta_j, joined
from tracker.errors import ConfigurationError
from tracker.logs.reader import Run, load_run
from tracker.logs.schema import OTHER_PHASE
from tracker.logs.totals import Totals
from tracker.report.text import table

DCGM = "dcgm-exporter"
DCGM_METRICS = ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "dcgm_total_energy_consumption")
UUID_LABELS, HOST_LABELS, MODEL_LABELS = ("UUID", "uuid"), ("Hostname", "hostname"), ("modelName",)
MJ_PER_J = 1000.0
MS_PER_S = 1000.0
EXPECTED_LINE = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-...",...} VALUE_MJ [TIMESTAMP_MS]'
EXPECTED_JSON = (
    'a Prometheus HTTP API answer: {"status": "success", "data": {"resultType": "matrix", "result": '
    '[{"metric": {"__name__": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "UUID": ...}, "values": [[TIME_S, "MJ"], ...]}]}}'
)
IN_RUN = ("meter_in_run_low_j", "meter_in_run_j", "meter_in_run_high_j")  # the meter within the run's window, J
# How a sample's time was obtained, as the output words it.
TIMESTAMP, GIVEN, MTIME, QUERY = "exposition timestamp", "--at", "file modification time", "query answer"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+(?P<ms>-?\d+))?"
)
_LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')


class Sample(NamedTuple):
    """One reading of a GPU's energy counter: ``time_s`` (UNIX time, s), ``energy_mj`` (mJ), ``timed_by``."""

    time_s: float
    energy_mj: float
    timed_by: str


class MeterGpu(NamedTuple):
    """One GPU as dcgm-exporter saw it: its labels and its counter's samples, oldest first."""

    uuid: str
    host: str
    model: str
    samples: tuple[Sample, ...]


class Reconciliation(NamedTuple):
    """A run beside a meter.

    Attributes:
        run, path: the run's name and directory.
        meter: ``dcgm-exporter`` or ``sacct``; measures: what the meter's figure is (words).
        run_start_utc, run_end_utc, run_s: the window of the run's rows (ISO 8601 UTC) and its length, s.
        sources: each file read: ``path``, ``format`` and how its times were obtained (``timed_by``).
        compared: one entry per device (or job) both sides saw: each side's energy (J and kWh), the
            difference (tracker − meter, J, kWh and % of the meter's) and each side's window.
        only_tracker, only_meter: devices (or rows) seen by one side alone.
        total: the compared entries summed (``tracker_j``, ``meter_j``, the difference).
        notes: what a reader must know to read the figures (resets, windows, the meter's scope).
    """

    run: str
    path: str
    meter: str
    measures: str
    run_start_utc: str
    run_end_utc: str
    run_s: float
    sources: list[dict[str, Any]]
    compared: list[dict[str, Any]]
    only_tracker: list[dict[str, Any]]
    only_meter: list[dict[str, Any]]
    total: dict[str, Any]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return self._asdict()


# ---- reading dcgm-exporter's files ---------------------------------------------------------------------------------


def parse_time(text: str) -> float:
    """``TIME`` of ``--at FILE=TIME``: ISO 8601 with a UTC offset (``2026-03-01T12:00:00Z``) or UNIX seconds; UNIX s.

    Raises:
        ConfigurationError: neither, or an ISO time without an offset (whose zone would be a guess).
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ConfigurationError(
            f"time {text!r} is not an ISO 8601 time with a UTC offset nor UNIX seconds: write e.g. "
            "2026-03-01T12:00:00Z or 1772366400"
        )
    return when.timestamp()


def parse_at(values: Iterable[str]) -> dict[str, float]:
    """``--at FILE=TIME`` values as ``{resolved path: UNIX s}``.

    Raises:
        ConfigurationError: a value without ``=`` or with a bad time.
    """
    times = {}
    for value in values:
        path, sep, when = value.rpartition("=")
        if not sep or not path:
            raise ConfigurationError(f"--at {value!r}: write FILE=TIME, e.g. before.prom=2026-03-01T12:00:00Z")
        times[str(Path(path).resolve())] = parse_time(when)
    return times


def read_dcgm(
    paths: Sequence[str | os.PathLike[str]], at: Mapping[str, float] | None = None
) -> tuple[list[MeterGpu], list[dict[str, Any]]]:
    """The GPUs in dcgm-exporter scrapes and query answers, and a description of each file.

    Args:
        paths: exposition-format scrapes of ``/metrics`` and Prometheus HTTP API answers (JSON), any mix.
        at: the time each scrape was taken, UNIX s, by resolved path (:func:`parse_at`), for samples without
            a timestamp; a scrape neither has nor is given is timed by its modification time.

    Raises:
        ConfigurationError: a file holds no energy counter sample, or a malformed one (file, line, what was expected).
        OSError: a file cannot be read.
    """
    found: list[tuple[dict[str, str], Sample]] = []
    sources = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        where = str(path)
        if text.lstrip().startswith("{"):
            samples, form = parse_query_answer(text, where), "Prometheus HTTP API answer (JSON)"
        else:
            samples, form = parse_exposition(text, where, _file_time(path, at or {})), "exposition-format scrape"
        if not samples:
            raise ConfigurationError(
                f"{where}: no {DCGM_METRICS[0]} sample; expected lines like {EXPECTED_LINE} "
                "(the counter is in dcgm-exporter's default-counters.csv; a custom one must list it)"
            )
        timed_by = sorted({s.timed_by for _, s in samples})
        sources.append({"path": where, "format": form, "samples": len(samples), "timed_by": timed_by})
        found += samples
    return _by_uuid(found), sources


def _file_time(path: str | os.PathLike[str], at: Mapping[str, float]) -> tuple[float, str]:
    resolved = str(Path(path).resolve())
    if resolved in at:
        return at[resolved], GIVEN
    return os.stat(path).st_mtime, MTIME


def parse_exposition(text: str, where: str, file_time: tuple[float, str]) -> list[tuple[dict[str, str], Sample]]:
    """The energy counter's samples in Prometheus text exposition format; other metrics' lines are skipped.

    Args:
        text: the scrape.
        where: the file's name, for messages.
        file_time: ``(UNIX s, how it was obtained)`` for samples without a timestamp.

    Raises:
        ConfigurationError: a line of the counter that is not ``name{labels} value [timestamp_ms]``.
    """
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        name = _NAME.match(line)
        if not line or line.startswith("#") or name is None or name.group() not in DCGM_METRICS:
            continue
        found.append(_sample_line(line, f"{where}:{number}", file_time))
    return found


def _sample_line(line: str, where: str, file_time: tuple[float, str]) -> tuple[dict[str, str], Sample]:
    match = _SAMPLE.fullmatch(line)
    labels = _labels(match.group("labels") or "") if match else None
    value = _number(match.group("value")) if match else None
    if match is None or labels is None or value is None or value < 0:
        raise ConfigurationError(f"{where}: {line[:120]!r} is not a sample line; expected {EXPECTED_LINE}")
    if match.group("ms") is not None:
        return labels, Sample(int(match.group("ms")) / MS_PER_S, value, TIMESTAMP)
    return labels, Sample(file_time[0], value, file_time[1])


def _labels(text: str) -> dict[str, str] | None:
    r"""``key="value",...`` as a dict (escapes ``\\\\``, ``\\"`` and ``\\n`` undone); ``None`` if malformed."""
    labels, pos = {}, 0
    while pos < len(text.rstrip()):
        match = _LABEL.match(text, pos)
        if match is None:
            return None
        value = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), match.group("value"))
        labels[match.group("key")], pos = value, match.end()
    return labels


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_query_answer(text: str, where: str) -> list[tuple[dict[str, str], Sample]]:
    """The energy counter's samples in a Prometheus HTTP API ``query_range`` (or ``query``) answer.

    Raises:
        ConfigurationError: not JSON, not a successful matrix or vector answer, a series of another
            metric (``rate()``, ``increase()`` drop ``__name__``: query the raw counter), or a bad point.
    """
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"{where}:{e.lineno}: not JSON ({e.msg}); expected {EXPECTED_JSON}") from None
    data = answer.get("data") if isinstance(answer, dict) else None
    if (
        answer.get("status") != "success"
        or not isinstance(data, dict)
        or data.get("resultType") not in ("matrix", "vector")
    ):
        raise ConfigurationError(f"{where}: not a successful matrix or vector answer; expected {EXPECTED_JSON}")
    found = []
    for i, series in enumerate(data.get("result") or []):
        labels = series.get("metric") if isinstance(series, dict) else None
        if not isinstance(labels, dict) or labels.get("__name__") not in DCGM_METRICS:
            raise ConfigurationError(
                f"{where}: result {i} is not the raw counter (its __name__ is {labels and labels.get('__name__')!r}); "
                f"query {DCGM_METRICS[0]} itself, not rate() or increase() of it"
            )
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        found += [(labels, _point(point, f"{where}: result {i}, point {j}")) for j, point in enumerate(points)]
    return found


def _point(point: Any, where: str) -> Sample:
    pair = point if isinstance(point, list) and len(point) == 2 else (None, None)
    time_s, value = _number(pair[0]), _number(pair[1])
    if time_s is None or value is None or value < 0:
        raise ConfigurationError(f'{where}: {point!r} is not a point; expected [UNIX_TIME_S, "VALUE_MJ"]')
    return Sample(time_s, value, QUERY)


def _by_uuid(found: Iterable[tuple[dict[str, str], Sample]]) -> list[MeterGpu]:
    gpus: dict[str, MeterGpu] = {}
    for labels, sample in found:
        uuid = _label(labels, UUID_LABELS)
        if not uuid:
            raise ConfigurationError(
                f"a {DCGM_METRICS[0]} sample has no UUID label ({sorted(labels)}): dcgm-exporter labels each "
                "GPU's samples with UUID; without it the GPU cannot be matched to the run's devices"
            )
        known = gpus.get(uuid) or MeterGpu(uuid, _label(labels, HOST_LABELS), _label(labels, MODEL_LABELS), ())
        gpus[uuid] = known._replace(samples=(*known.samples, sample))
    return [g._replace(samples=tuple(sorted(g.samples))) for g in gpus.values()]


def _label(labels: Mapping[str, str], names: Sequence[str]) -> str:
    return next((labels[n] for n in names if labels.get(n)), "")


# ---- the counter's energy over a window ---------------------------------------------------------------------------


class Counter(NamedTuple):
    """A GPU's counter read back: ``cumulative`` (UNIX s, J since its first sample) at each sample, and its resets."""

    cumulative: tuple[tuple[float, float], ...]
    resets: int

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Counter:
        """The counter of ``samples`` (oldest first): increases summed, a decrease counted as a reset."""
        total, resets, points = 0.0, 0, [(samples[0].time_s, 0.0)]
        for before, after in zip(samples, samples[1:], strict=False):
            delta, event = counter_delta_j(before.energy_mj / MJ_PER_J, after.energy_mj / MJ_PER_J, None)
            total, resets = total + delta, resets + (event == "reset")
            points.append((after.time_s, total))
        return cls(tuple(points), resets)

    @property
    def energy_j(self) -> float:
        """The energy from the first sample to the last, J."""
        return self.cumulative[-1][1]

    def within(self, start_s: float, end_s: float) -> tuple[float, float, float] | None:
        """The energy from ``start_s`` to ``end_s``: ``(low, interpolated, high)``, J; ``None`` if not bracketed.

        ``low`` counts the samples inside the window, ``high`` those around it: a counter only grows, so the
        energy lies between them; the interpolation is linear between the samples around each edge.
        """
        times = [t for t, _ in self.cumulative]
        last_before_start, first_after_end = bisect.bisect_right(times, start_s) - 1, bisect.bisect_left(times, end_s)
        if last_before_start < 0 or first_after_end >= len(times):
            return None
        first_in, last_in = bisect.bisect_left(times, start_s), bisect.bisect_right(times, end_s) - 1
        low = self.cumulative[last_in][1] - self.cumulative[first_in][1] if first_in <= last_in else 0.0
        high = self.cumulative[first_after_end][1] - self.cumulative[last_before_start][1]
        return low, self._at(end_s) - self._at(start_s), high

    def _at(self, when_s: float) -> float:
        times = [t for t, _ in self.cumulative]
        i = min(max(bisect.bisect_left(times, when_s), 1), len(times) - 1)
        (t0, e0), (t1, e1) = self.cumulative[i - 1], self.cumulative[i]
        return e1 if t1 == t0 else e0 + (e1 - e0) * (when_s - t0) / (t1 - t0)


# ---- the run's side ------------------------------------------------------------------------------------------------


def run_window(run: Run) -> tuple[float, float]:
    """The run's rows' window, UNIX s: the earliest ``start_utc`` to the latest ``end_utc`` (open rows included).

    Raises:
        ConfigurationError: the run has no row with times.
    """
    rows = [*run.epochs, *run.open]
    starts = [_utc_s(r.get("start_utc")) for r in rows]
    ends = [_utc_s(r.get("end_utc")) for r in rows]
    starts, ends = [s for s in starts if s is not None], [e for e in ends if e is not None]
    if not starts or not ends:
        raise ConfigurationError(
            f"run {str(run.path)!r} has no row with start_utc and end_utc to compare a meter's window with"
        )
    return min(starts), max(ends)


def _utc_s(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        return None


def iso_utc(time_s: float) -> str:
    """UNIX seconds as ISO 8601 UTC to the millisecond (``2026-03-01T12:00:00.000+00:00``)."""
    return datetime.fromtimestamp(time_s, timezone.utc).isoformat(timespec="milliseconds")


def tracker_gpus(run: Run) -> dict[str, dict[str, Any]]:
    """Each GPU of the run's ``devices.csv`` by UUID: ``host``, ``model``, ``energy_j`` (all rows) and ``other_j``.

    ``other_j`` is the part in ``other`` rows (before the first epoch, between epochs and phases, after the
    last): time a meter sees as much as an epoch, idle or not.
    """
    gpus: dict[str, dict[str, Any]] = {}
    for row in run.devices:
        if row.get("kind") != "gpu" or not row.get("uuid"):
            continue
        gpu = gpus.setdefault(row["uuid"], {"host": row.get("host") or "", "model": row.get("model") or "",
                                            "parts_kwh": [], "other_kwh": []})  # fmt: skip
        gpu["parts_kwh"].append(float(row.get("energy_kwh") or 0.0))
        if row.get("phase") == OTHER_PHASE:
            gpu["other_kwh"].append(float(row.get("energy_kwh") or 0.0))
    return {
        uuid: {"host": g["host"], "model": g["model"], "energy_j": math.fsum(g["parts_kwh"]) * J_PER_KWH,
               "other_j": math.fsum(g["other_kwh"]) * J_PER_KWH}
        for uuid, g in gpus.items()
    }  # fmt: skip


# ---- the comparison ------------------------------------------------------------------------------------------------


def reconcile_dcgm(
    run_path: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]], at: Mapping[str, float] | None = None
) -> Reconciliation:
    """The run at ``run_path`` beside dcgm-exporter's energy counter in ``paths``, GPU by GPU (matched by UUID).

    Raises:
        ConfigurationError: unusable input: a file without the counter or malformed (named with its line), a
            GPU with a single sample, or no GPU of the run in the files (the UUIDs of both sides are named).
        OSError: a file cannot be read.
    """
    run = load_run(run_path)
    start_s, end_s = run_window(run)
    meter, sources = read_dcgm(paths, at)
    ours = tracker_gpus(run)
    theirs = {g.uuid: g for g in meter}
    if not set(ours) & set(theirs):
        raise ConfigurationError(
            f"no GPU of run {run.name!r} is in the dcgm-exporter files: the run's UUIDs "
            f"{sorted(ours) or '(none: devices.csv has no GPU with a UUID)'}, the files' {sorted(theirs)}"
        )
    compared = [_gpu_entry(ours[u], theirs[u], start_s, end_s) for u in sorted(set(ours) & set(theirs))]
    return Reconciliation(
        run.name, str(run.path), DCGM, f"{DCGM_METRICS[0]} (mJ since boot, per GPU)", iso_utc(start_s), iso_utc(end_s),
        end_s - start_s, sources, compared,
        [{"uuid": u, **ours[u]} for u in sorted(set(ours) - set(theirs))],
        [{"uuid": u, "host": theirs[u].host, "model": theirs[u].model} for u in sorted(set(theirs) - set(ours))],
        total(compared), _dcgm_notes(compared, sources),
    )  # fmt: skip


def _gpu_entry(ours: Mapping[str, Any], theirs: MeterGpu, start_s: float, end_s: float) -> dict[str, Any]:
    if len(theirs.samples) < 2:
        raise ConfigurationError(
            f"GPU {theirs.uuid} has one {DCGM_METRICS[0]} sample: give a scrape from before the run and one from after "
            "(or a query_range answer covering it)"
        )
    counter = Counter.of(theirs.samples)
    first, last = theirs.samples[0].time_s, theirs.samples[-1].time_s
    in_run = counter.within(start_s, end_s)
    entry = {
        "uuid": theirs.uuid, "host": ours["host"] or theirs.host, "meter_host": theirs.host,
        "model": ours["model"] or theirs.model,
        **difference(ours["energy_j"], counter.energy_j), "tracker_other_j": ours["other_j"],
        "meter_start_utc": iso_utc(first), "meter_end_utc": iso_utc(last), "samples": len(theirs.samples),
        "samples_in_run": sum(start_s <= s.time_s <= end_s for s in theirs.samples),
        "timed_by": sorted({s.timed_by for s in theirs.samples}), "resets": counter.resets,
        **window_overlap(first, last, start_s, end_s),
        **dict(zip(IN_RUN, in_run or (None, None, None), strict=True)),
    }  # fmt: skip
    return entry


def difference(tracker_j: float, meter_j: float) -> dict[str, Any]:
    """Both sides and the difference (tracker − meter), in J, kWh and % of the meter's figure (``None`` if it is 0)."""
    delta = tracker_j - meter_j
    return {
        "tracker_j": tracker_j, "tracker_kwh": tracker_j / J_PER_KWH,
        "meter_j": meter_j, "meter_kwh": meter_j / J_PER_KWH,
        "difference_j": delta, "difference_kwh": delta / J_PER_KWH,
        "difference_pct": 100.0 * delta / meter_j if meter_j else None,
    }  # fmt: skip


def window_overlap(first_s: float, last_s: float, start_s: float, end_s: float) -> dict[str, float]:
    """The meter's window ``first_s``–``last_s`` against the run's ``start_s``–``end_s``.

    Returns:
        ``outside_run_s``: seconds the meter counts outside the run; ``run_uncovered_s``: seconds of the run the
        meter does not count.
    """
    outside = max(0.0, min(start_s, last_s) - first_s) + max(0.0, last_s - max(end_s, first_s))
    covered = max(0.0, min(last_s, end_s) - max(first_s, start_s))
    return {"outside_run_s": outside, "run_uncovered_s": (end_s - start_s) - covered}


def total(compared: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The compared entries summed: both sides and the difference."""
    return difference(math.fsum(c["tracker_j"] for c in compared), math.fsum(c["meter_j"] for c in compared))


def _dcgm_notes(compared: Sequence[Mapping[str, Any]], sources: Sequence[Mapping[str, Any]]) -> list[str]:
    notes = []
    if any(MTIME in s["timed_by"] for s in sources):
        notes.append("scrapes without timestamps are timed by their files' modification time: give --at FILE=TIME "
                     "(the time of the curl) if the files were copied or touched since")  # fmt: skip
    for c in compared:
        if c["resets"]:
            notes.append(f"{c['uuid']}: the counter went down {c['resets']} time(s) (a driver reload or reboot); "
                         "the energy after each reset is counted from zero, a lower bound")  # fmt: skip
        if c["outside_run_s"] > 0 or c["run_uncovered_s"] > 0:
            notes.append(_window_note(c))
    idle = [f"{c['uuid']} {units.energy(c['tracker_other_j'] / J_PER_KWH)}" for c in compared if c["tracker_other_j"]]
    if idle:
        notes.append("the tracker's figures count the whole run, idle time included: of them, its 'other' rows "
                     f"(before, between and after epochs and phases) hold {', '.join(idle)}")  # fmt: skip
    return notes


def _window_note(c: Mapping[str, Any]) -> str:
    parts = [f"{c['uuid']}: dcgm's window counts {units.duration(c['outside_run_s'])} outside the run and misses "
             f"{units.duration(c['run_uncovered_s'])} of it"]  # fmt: skip
    if c["meter_in_run_j"] is not None and not c["samples_in_run"]:
        parts.append(f"no sample falls within the run, so within it dcgm's counter gives at most "
                     f"{units.energy(c['meter_in_run_high_j'] / J_PER_KWH)}: scrape at its start and end, "
                     "or export a query_range answer, to bound it")  # fmt: skip
    elif c["meter_in_run_j"] is not None:
        low, mid, high = (c[k] / J_PER_KWH for k in IN_RUN)
        inside = "within" if low <= c["tracker_kwh"] <= high else "outside"
        parts.append(f"within the run's window dcgm's counter gives {units.energy_band(low, high)} (the samples "
                     f"around each edge), {units.energy(mid)} interpolated; the tracker's "
                     f"{units.energy(c['tracker_kwh'])} is {inside} that band")  # fmt: skip
    else:
        parts.append("no samples on both sides of the run's edges, so dcgm's energy within the run cannot be bounded")
    return "; ".join(parts)


# ---- Slurm's accounting (sacct) ------------------------------------------------------------------------------------

SACCT = "sacct"
# Slurm's "no value" for a 64-bit field (slurm.h: NO_VAL64 is 0xfffffffffffffffe): a step's energy left unset.
NO_VALUE_FROM = 2**63
# ConsumedEnergy's unit prefixes (sacct: "Value may include a unit prefix (K,M,G,T,P)"), powers of 1000.
PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
# Where each acct_gather_energy plugin reads (slurm.conf, AcctGatherEnergyType); the tracker's figure for it.
PLUGINS = {
    "ipmi": ("node", "the node's BMC through IPMI"),
    "pm_counters": ("node", "the node's BMC on HPE Cray systems"),
    "xcc": ("node", "the node's Lenovo XClarity Controller"),
    "rapl": ("cpu+ram", "the CPUs' RAPL counters"),
    "gpu": ("gpu", "the GPUs' management library"),
}
EXPECTED_SACCT = (
    "sacct --format=JobID,ConsumedEnergyRaw[,ElapsedRaw,NNodes] output: --parsable2 ('|'-separated, a header first) "
    "or the default fixed-width table (a header, then a line of dashes)"
)
# Step names in the order they are chosen (module docstring): the allocation's own step, the batch script's.
WHOLE_STEPS = ("extern", "batch", "interactive")


class SacctRow(NamedTuple):
    """One line of sacct.

    ``job_id`` as printed (``123``, ``123.batch``, ``123_4.0``), ``energy_j`` (J; ``None``: no value), ``elapsed_s``
    and ``nodes`` (``None`` when not asked for), ``line`` (its line number in the file).
    """

    job_id: str
    energy_j: float | None
    elapsed_s: float | None
    nodes: int | None
    line: int

    @property
    def step(self) -> str:
        """The step's name after the job id's ``.`` (``batch``, ``extern``, ``0``), empty for the job's own line."""
        return self.job_id.partition(".")[2]


def read_sacct(path: str | os.PathLike[str]) -> tuple[list[SacctRow], str]:
    """The lines of a saved ``sacct`` output, and its format's name.

    Raises:
        ConfigurationError: no JobID or energy column, a cell cut to its column's width (ends with ``+``), or an
            energy that is not a number (the file, line and what was expected are named).
        OSError: the file cannot be read.
    """
    where = str(path)
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise ConfigurationError(f"{where}: empty; expected {EXPECTED_SACCT}")
    if "|" in numbered[0][1]:
        header, cells = _parsable(numbered)
        form = "sacct --parsable2"
    else:
        header, cells = _fixed_width(numbered, where)
        form = "sacct fixed-width"
    columns = _columns(header, f"{where}:{numbered[0][0]}")
    return [_sacct_row(row, columns, f"{where}:{n}", n) for n, row in cells], form


def _parsable(numbered: list[tuple[int, str]]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    split = [(n, line.split("|")) for n, line in numbered]
    return split[0][1], split[1:]


def _fixed_width(numbered: list[tuple[int, str]], where: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    if len(numbered) < 2 or not re.fullmatch(r"[-\s]+", numbered[1][1]):
        raise ConfigurationError(
            f"{where}:{numbered[0][0]}: no line of dashes under the header; expected {EXPECTED_SACCT}"
        )
    spans = [m.span() for m in re.finditer(r"-+", numbered[1][1])]
    cut = lambda line: [line[a:b].strip() for a, b in spans]  # noqa: E731
    return cut(numbered[0][1]), [(n, cut(line)) for n, line in numbered[2:]]


def _columns(header: list[str], where: str) -> dict[str, int]:
    names = {name.strip().lower(): i for i, name in enumerate(header)}
    found = {key: next((names[n] for n in options if n in names), None) for key, options in (
        ("job", ("jobid", "jobidraw")), ("raw", ("consumedenergyraw",)), ("prefixed", ("consumedenergy",)),
        ("elapsed_raw", ("elapsedraw",)), ("elapsed", ("elapsed",)), ("nodes", ("nnodes", "allocnodes")))}  # fmt: skip
    if found["job"] is None or (found["raw"] is None and found["prefixed"] is None):
        raise ConfigurationError(
            f"{where}: the header {[h.strip() for h in header]} names no JobID and ConsumedEnergyRaw; "
            f"expected {EXPECTED_SACCT}"
        )
    return {k: v for k, v in found.items() if v is not None}


def _sacct_row(cells: list[str], columns: Mapping[str, int], where: str, line: int) -> SacctRow:
    cell = lambda key: cells[columns[key]].strip() if key in columns and columns[key] < len(cells) else ""  # noqa: E731
    for key in ("job", "raw", "prefixed"):
        if cell(key).endswith("+"):
            raise ConfigurationError(
                f"{where}: {cell(key)!r} was cut to its column's width by sacct; run sacct with --parsable2 "
                "(or widen the column: JobID%30)"
            )
    energy = _energy(cell("raw"), 1.0, where) if "raw" in columns else _energy(cell("prefixed"), None, where)
    elapsed = _number(cell("elapsed_raw")) if "elapsed_raw" in columns else _elapsed(cell("elapsed"))
    return SacctRow(cell("job"), energy, elapsed, int(_number(cell("nodes")) or 0) or None, line)


def _energy(text: str, factor: float | None, where: str) -> float | None:
    """A ConsumedEnergyRaw cell (``factor`` 1) or a ConsumedEnergy one (a unit prefix: ``factor`` None), J."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text)
    if match is None or (factor == 1.0 and match.group(2)):
        raise ConfigurationError(f"{where}: energy {text!r} is not a number of joules; expected {EXPECTED_SACCT}")
    value = float(match.group(1)) * PREFIXES[match.group(2)]
    return None if value >= NO_VALUE_FROM else value


def _elapsed(text: str) -> float | None:
    """An Elapsed cell, ``[DD-[HH:]]MM:SS``, as seconds; ``None`` if it is not one."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text)
    if match is None:
        return None
    days, hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def slurm_energy(rows: Sequence[SacctRow], job_id: str) -> tuple[float, str, list[SacctRow]]:
    """The job's energy from its sacct lines without counting a node twice: ``(J, which lines, those lines)``.

    Slurm adds each step's energy to the job's as the step completes, or the extern step's alone with
    ``PrologFlags=Contain`` (slurmctld's ``step_mgr.c``, ``_internal_step_complete``), and a step's figure is
    its nodes' energy while it ran (collected per node: slurm.conf, ``AcctGatherEnergyType``). The batch step
    spans the script and the srun steps inside it run at the same time, so the job's own line counts their
    nodes twice. Chosen: the extern step (the whole allocation), else the batch (or interactive) step on one
    node, else the numbered steps summed, else the job's own line (``sacct -X`` lists no steps).

    Raises:
        ConfigurationError: no line of the job has an energy (the site collects none, or the job still runs).
    """
    valued = [r for r in rows if r.energy_j]
    steps = {r.step: r for r in valued if r.step}
    numbered = [r for r in valued if r.step.isdigit()]
    own = next((r for r in valued if not r.step), None)
    multi_node = any((r.nodes or 0) > 1 for r in rows)
    for name in WHOLE_STEPS:
        if name in steps and (name == "extern" or not (multi_node and numbered)):
            return steps[name].energy_j or 0.0, f"the {name} step", [steps[name]]
    if numbered:
        return math.fsum(r.energy_j or 0.0 for r in numbered), "the numbered (srun) steps summed", numbered
    if own is not None:
        return own.energy_j or 0.0, "the job's own line", [own]
    raise ConfigurationError(
        f"sacct gives no energy for job {job_id} (ConsumedEnergyRaw empty or 0 on its {len(rows)} lines): the site "
        "collects none (AcctGatherEnergyType=acct_gather_energy/none; scontrol show config says), or the job still runs"
    )


def run_job_id(run: Run, given: str | None) -> str:
    """The job id to look up: ``given``, else the run's rows' ``job_id``.

    Raises:
        ConfigurationError: none given and the rows hold none, or several.
    """
    if given:
        return given
    ids = sorted({str(r.get("job_id")) for r in [*run.epochs, *run.open] if r.get("job_id")})
    if len(ids) != 1:
        raise ConfigurationError(
            f"run {run.name!r} has {'no job_id' if not ids else f'job ids {ids}'} in its rows: give --job-id "
            "(SLURM_JOB_ID, or <job>_<task> for an array task)"
        )
    return ids[0]


def tracker_energy(run: Run, plugin: str | None) -> tuple[float, str]:
    """The run's figure to set beside sacct's, J, and what it is: by the plugin's scope, the node's meter where known.

    ``node``: the run's ``node_kwh`` (the machine's own meter, :class:`~tracker.logs.totals.Totals`) where its
    rows have it, else its components' sum (``energy_kwh``), which leaves out what only a node meter sees;
    ``cpu+ram`` and ``gpu``: those components.
    """
    rows = [*run.epochs, *run.open]
    totals = Totals.of(rows)
    methods = ", ".join(f"{k} {joined(r.get(f'{k}_method') for r in rows)}" for k in ("gpu", "cpu", "ram"))
    scope = PLUGINS[plugin][0] if plugin else "node"
    if scope == "gpu":
        return totals.gpu_kwh * J_PER_KWH, f"the tracker's GPUs (gpu_kwh; {methods})"
    if scope == "cpu+ram":
        both = totals.cpu_kwh + totals.ram_kwh
        return both * J_PER_KWH, f"the tracker's CPUs and memory (cpu_kwh + ram_kwh; {methods})"
    if totals.node_kwh is not None:
        return totals.node_kwh * J_PER_KWH, _node_words(totals, joined(r.get("node_method") for r in rows))
    return totals.energy_kwh * J_PER_KWH, (
        f"the tracker's components (energy_kwh = GPU + CPU + RAM; {methods}): the run has no node meter, so what "
        "only a node meter sees (fans, power supplies, disks, network) is in sacct's figure and not in this one"
    )


def _node_words(totals: Totals, method: str) -> str:
    words = f"the tracker's node meter (node_kwh, {method}: the whole machine)"
    read = totals.node_components_kwh or 0.0
    if read < totals.energy_kwh * (1 - 1e-9):
        words += (f"; it read only the rows holding {units.energy(read)} of the components' "
                  f"{units.energy(totals.energy_kwh)}, so it covers part of the run")  # fmt: skip
    return words


def reconcile_sacct(
    run_path: str | os.PathLike[str], path: str | os.PathLike[str], job_id: str | None = None, plugin: str | None = None
) -> Reconciliation:
    """The run at ``run_path`` beside the energy Slurm's accounting gives its job in a saved ``sacct`` output.

    Args:
        run_path: the run (or a distributed job's) directory.
        path: the saved sacct output.
        job_id: the job to look up (default: the run's ``job_id``).
        plugin: the site's ``AcctGatherEnergyType`` without its ``acct_gather_energy/`` (:data:`PLUGINS`), which
            chooses the tracker's figure; unknown (None): the node's, the run's node meter where it has one.

    Raises:
        ConfigurationError: unusable input: no job id, no line of the job, no energy, a malformed file.
        OSError: a file cannot be read.
    """
    run = load_run(run_path)
    start_s, end_s = run_window(run)
    job = run_job_id(run, job_id)
    rows, form = read_sacct(path)
    mine = [r for r in rows if r.job_id.partition(".")[0] == job]
    if not mine:
        seen = sorted({r.job_id.partition(".")[0] for r in rows})
        raise ConfigurationError(
            f"{path}: no line of job {job} (the file's jobs: {seen[:10]}); give --job-id if the run's is not it"
        )
    meter_j, which, chosen = slurm_energy(mine, job)
    ours_j, ours_words = tracker_energy(run, plugin)
    elapsed = max((r.elapsed_s for r in chosen if r.elapsed_s is not None), default=None)
    entry = {"job_id": job, "host": "", "meter_lines": [r.job_id for r in chosen], "meter_elapsed_s": elapsed,
             **difference(ours_j, meter_j), **_elapsed_overlap(elapsed, end_s - start_s)}  # fmt: skip
    lines = [{"job_id": r.job_id, "energy_j": r.energy_j, "elapsed_s": r.elapsed_s, "line": r.line} for r in mine]
    source = {
        "path": str(path),
        "format": form,
        "timed_by": ["elapsed time" if elapsed is not None else "not given"],
        "lines": lines,
    }
    return Reconciliation(
        run.name, str(run.path), SACCT, _sacct_measures(plugin, which), iso_utc(start_s), iso_utc(end_s),
        end_s - start_s, [source], [entry], [], [], total([entry]), _sacct_notes(mine, chosen, ours_words, elapsed),
    )  # fmt: skip


def _elapsed_overlap(elapsed_s: float | None, run_s: float) -> dict[str, float | None]:
    if elapsed_s is None:
        return {"outside_run_s": None, "run_uncovered_s": None}
    return {"outside_run_s": max(0.0, elapsed_s - run_s), "run_uncovered_s": max(0.0, run_s - elapsed_s)}


def _sacct_measures(plugin: str | None, which: str) -> str:
    where = (
        PLUGINS[plugin][1]
        if plugin
        else "whatever the site's acct_gather_energy plugin reads (not given: --slurm-plugin)"
    )
    return f"ConsumedEnergyRaw (J) of {which}, from {where}"


def _sacct_notes(mine: Sequence[SacctRow], chosen: Sequence[SacctRow], ours: str, elapsed: float | None) -> list[str]:
    notes = [
        f"compared with {ours}",
        "sacct's energy is whatever the site's AcctGatherEnergyType plugin measures (slurm.conf): ipmi, pm_counters "
        "and xcc the whole node from its BMC, rapl the CPU packages and DRAM, gpu the GPUs; "
        "scontrol show config | grep AcctGatherEnergyType says which (give it as --slurm-plugin)",
        "Slurm collects energy per node: on a node shared with other jobs the figure is not this job's alone "
        "(sacct's man page: only an exclusive allocation's figure is the job's)",
    ]
    own = next((r for r in mine if not r.step and r.energy_j), None)
    if own is not None and own not in chosen:
        notes.append(f"the job's own line reads {units.energy(own.energy_j / J_PER_KWH)}: Slurm adds its steps' energy "
                     "to it, and steps that ran at the same time (the batch step and the srun steps inside it) each "
                     "count their nodes, so it is not used")  # fmt: skip
    if elapsed is None:
        notes.append("sacct's lines have no ElapsedRaw: add it to --format to compare the time each side covers")
    return notes


# ---- output --------------------------------------------------------------------------------------------------------


def render_text(rec: Reconciliation) -> str:
    """The reconciliation as text: the run, the files, a table of what both sides saw, what one side saw, notes."""
    lines = [
        f"Run {rec.run} against {rec.meter}: {rec.measures}",
        f"  run: {rec.run_start_utc} to {rec.run_end_utc} ({units.duration(rec.run_s)}), {rec.path}",
        *(f"  {rec.meter}: {s['path']} ({s['format']}; times: {', '.join(s['timed_by'])})" for s in rec.sources),
        *(_sacct_line(line, rec.compared) for s in rec.sources for line in s.get("lines", ())),
        "  difference: the tracker's figure minus the meter's, in % of the meter's",
        "",
        table(*_table(rec), markdown=False),
    ]
    lines += [f"Seen by the tracker only: {_device(d)}" for d in rec.only_tracker]
    lines += [f"Seen by {rec.meter} only: {_device(d)}" for d in rec.only_meter]
    lines += ["", *(units.wrap(f"Note: {n}", indent=6) for n in rec.notes)] if rec.notes else []
    return "\n".join(lines) + "\n"


def _sacct_line(line: Mapping[str, Any], compared: Sequence[Mapping[str, Any]]) -> str:
    used = any(line["job_id"] in c.get("meter_lines", ()) for c in compared)
    energy = "no value" if line["energy_j"] is None else units.energy(line["energy_j"] / J_PER_KWH)
    elapsed = "" if line["elapsed_s"] is None else f", {units.duration(line['elapsed_s'])}"
    return f"    line {line['line']}: {line['job_id']} {energy}{elapsed}{' (used)' if used else ''}"


def _device(d: Mapping[str, Any]) -> str:
    where = ", ".join(str(d[k]) for k in ("host", "model") if d.get(k))
    return f"{d.get('uuid') or d.get('job_id')}{f' ({where})' if where else ''}"


def _table(rec: Reconciliation) -> tuple[list[str], list[list[str]]]:
    headers = ["device" if rec.meter == DCGM else "job", "host", "tracker", rec.meter, "difference", "%",
               f"{rec.meter} window (UTC)" if rec.meter == DCGM else f"{rec.meter} time", "outside run",
               "run not covered"]  # fmt: skip
    rows = [_row(c) for c in rec.compared]
    if len(rec.compared) > 1:
        rows.append(["total", "", *_figures(rec.total), "", "", ""])
    return headers, rows


def _row(c: Mapping[str, Any]) -> list[str]:
    window = "unknown"
    if c.get("meter_start_utc"):
        window = f"{c['meter_start_utc'][:19]} to {c['meter_end_utc'][11:19]}"
    elif c.get("meter_elapsed_s") is not None:
        window = f"{units.duration(c['meter_elapsed_s'])} elapsed"
    outside, uncovered = (c.get(k) for k in ("outside_run_s", "run_uncovered_s"))
    return [c.get("uuid") or c.get("job_id", ""), c.get("host", ""), *_figures(c), window,
            units.duration(outside), units.duration(uncovered)]  # fmt: skip


def _figures(c: Mapping[str, Any]) -> list[str]:
    pct = c["difference_pct"]
    return [units.energy(c["tracker_kwh"]), units.energy(c["meter_kwh"]), units.energy(c["difference_kwh"]),
            "unknown" if pct is None else f"{units.significant(pct)} %"]  # fmt: skip


def render(rec: Reconciliation, fmt: str = "text") -> str:
    """``rec`` as ``text`` or ``json``."""
    return json.dumps(rec.as_dict(), indent=2) + "\n" if fmt == "json" else render_text(rec)
