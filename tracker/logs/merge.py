"""One job from many writers: the rows of every rank (or every run sharing a job id) as one run.

In a distributed job each rank writes a run directory of its own, a *shard*, under the job's
directory: ``<log_dir>/<job>/ranks/<host>-r<rank>/`` (``run.json``, ``epochs.csv``, ``devices.csv``),
so no rank ever waits for another. The reader merges them (:func:`merge`), as does each rank at its
stop for the job-level files. Runs of separate processes that share a job id (a SLURM array, one
process per node) merge the same way (:func:`group_by_job`).

Rows are matched across shards by ``(epoch, phase, n-th such row)``. A device seen by several ranks
(the same GPU UUID, or the same host's CPU, RAM and node meter) is counted once, the lowest rank's row kept
(:func:`keep_once`); a shard's figures lose the duplicates' energy, its CO2 and band scaled with it.
The node meters' ``node_kwh`` is summed over the machines (each once) only when every machine of the row
has one, since a meter holds its machine's components: else it is left empty, and ``notes`` says why.
A rank without a row that the others have is named in the row's ``notes``; when that rank did not
finish (killed, interrupted) the merged row is ``interrupted``.

A rank killed mid-epoch (SIGKILL, OOM, a lost node) leaves its shard ``running``; the reader finds
its process gone as for a single run (:mod:`tracker.logs.liveness`: same host, pid and start time;
other host, a heartbeat older than ``STALE_HEARTBEAT_S``), marks the shard ``killed`` and adds its
open epoch up to the last heartbeat as an ``interrupted`` row. That row merges like any other: the
epoch's energy so far on that rank is counted (its own figure standing for both ends of its band,
as a heartbeat carries none; no device rows, as it carries no per-device split; the share of a
device another rank's rows of that epoch hold left out, by :func:`sensor_shares`), and the merged
row is ``interrupted`` with ``rN: killed: the energy up to the last heartbeat`` in its ``notes``.
Later epochs name the rank as ``no row from rN@host (its run: killed)``. The job's status is
:func:`job_status`.

Pure functions over rows as dicts: no file is read here (:mod:`tracker.logs.reader` does that).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tracker.energy import ABSENT, J_PER_KWH, joined
from tracker.logs.liveness import KILLED, RECOVERED, machine_of
from tracker.logs.schema import EMBODIED, PARTIAL, WATER
from tracker.logs.totals import Totals

GPU, NODE = "gpu", "node"
RUNNING = "running"
KIND_COLUMNS = {"gpu": "gpu_kwh", "cpu": "cpu_kwh", "ram": "ram_kwh"}

Key = tuple[Any, ...]


class Shard:
    """One writer's rows: ``info`` (``run.json``), ``epochs`` and ``devices`` as read back."""

    __slots__ = ("name", "info", "epochs", "devices")

    def __init__(
        self, name: str, info: dict[str, Any], epochs: list[dict[str, Any]], devices: list[dict[str, Any]]
    ) -> None:
        self.name, self.info, self.epochs, self.devices = name, info, epochs, devices

    @property
    def host(self) -> str:
        """The host it ran on."""
        return str(self.info.get("host") or "")

    @property
    def rank(self) -> int:
        """Its global rank (0 for a run outside a distributed job)."""
        rank = (self.info.get("launch") or {}).get("rank", 0)
        return rank if isinstance(rank, int) else 0

    @property
    def status(self) -> str:
        """``complete``, ``interrupted``, ``killed`` (its process is gone, found by the reader), or ``running``."""
        return str(self.info.get("status") or "running")

    @property
    def machine(self) -> str:
        """The machine it ran on: host and kernel id (two nodes may share a hostname); the host for older shards."""
        return machine_of(self.info.get("process"), self.host)

    def launch(self, name: str, default: Any = 0) -> Any:
        """A field of its ``launch`` record (``restart``, ``world_size``, ...)."""
        value = (self.info.get("launch") or {}).get(name, default)
        return value if isinstance(value, type(default)) else default

    @property
    def launcher(self) -> tuple[Any, ...] | None:
        """What every rank of its launch shares: the token a framework agreed, else the node's launcher process."""
        agreed = self.launch("launcher", "")
        if agreed:
            return ("agreed", agreed)
        process = self.info.get("process")
        if not isinstance(process, dict) or not isinstance(process.get("ppid"), int):
            return None
        return (self.machine, process["ppid"], process.get("ppid_start_ticks"))


def _identity(row: Mapping[str, Any], machine: str | None = None) -> Key:
    uuid = row.get("uuid")
    if row.get("kind") == GPU and uuid:
        return (GPU, uuid)  # a UUID names one physical device from wherever it is seen
    return (row.get("kind"), machine or row.get("host"), row.get("sensor"))


def _rank(row: Mapping[str, Any]) -> int:
    rank = row.get("rank")
    return rank if isinstance(rank, int) else 0


def keep_once(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split the device rows of one epoch and phase into those counted and the duplicates dropped.

    A GPU is the same device wherever its UUID is seen; CPU and RAM sensors are the same when their
    host and sensor name are. Of several rows of one device, the lowest rank's is kept.
    """
    return _keep_once(rows, [_identity(row) for row in rows])


def _keep_once(rows: Sequence[Mapping[str, Any]], keys: Sequence[Key]) -> tuple[list[Any], list[Any]]:
    best: dict[Key, Mapping[str, Any]] = {}
    for row, key in zip(rows, keys, strict=True):
        if key not in best or _rank(row) < _rank(best[key]):
            best[key] = row
    kept = {id(row) for row in best.values()}
    return [r for r in rows if id(r) in kept], [r for r in rows if id(r) not in kept]


def _keyed_epochs(epochs: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    seen: Counter[Key] = Counter()
    keyed = {}
    for row in epochs:
        label = (row.get("epoch"), row.get("phase"))
        keyed[(*label, seen[label])] = row
        seen[label] += 1
    return keyed


def _keyed_devices(devices: Iterable[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    # Device rows follow their epoch row in file order; a new group starts where the epoch and phase
    # change or a sensor comes round again.
    seen: Counter[Key] = Counter()
    groups: dict[Key, list[dict[str, Any]]] = {}
    label: Key | None = None
    sensors: set[Any] = set()
    for row in devices:
        here = (row.get("epoch"), row.get("phase"))
        if here != label or row.get("sensor") in sensors:
            label, sensors = here, set()
            seen[here] += 1
        sensors.add(row.get("sensor"))
        groups.setdefault((*here, seen[here] - 1), []).append(row)
    return groups


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


# Each banded or derived figure of a row and the central figure that stands for it when it is empty
# (a heartbeat's row, a killed rank's open epoch, has no band: its own figure bounds it both ways).
_SCALED = (
    ("energy_kwh_low", "energy_kwh"),
    ("energy_kwh_high", "energy_kwh"),
    ("co2_kg", "co2_kg"),
    ("co2_kg_low", "co2_kg"),
    ("co2_kg_high", "co2_kg"),
)


def _scaled_part(row: dict[str, Any], dropped: list[Mapping[str, Any]]) -> dict[str, float]:
    """A shard row's figures less the energy of its duplicate devices (CO2 and band scaled with the energy)."""
    get = row.get
    part = {column: max(0.0, _num(get(column))) for column in KIND_COLUMNS.values()}
    for device in dropped:
        column = KIND_COLUMNS.get(device.get("kind"))
        if column is not None:
            part[column] = max(0.0, part[column] - _num(device.get("energy_kwh")))
    energy = sum(part.values())
    total = _num(get("energy_kwh"))
    ratio = energy / total if total > 0 else 1.0
    part["energy_kwh"] = energy
    for column, central in _SCALED:
        value = get(column)
        part[column] = _num(value if value is not None else get(central)) * ratio
    for column in WATER:  # water is the energy times fixed figures: scaled with it, and left empty where it is
        if get(column) is not None:
            part[column] = _num(get(column)) * ratio
    for column in EMBODIED:  # a device's embodied share is its own: taken off with it, not scaled
        if get(column) is not None:
            part[column] = max(0.0, _num(get(column)) - sum(_num(d.get(column)) for d in dropped))
    if get("node_kwh") is not None:  # the node's meter: beside the energy, its duplicates taken off
        twice = sum(_num(d.get("energy_kwh")) for d in dropped if d.get("kind") == NODE)
        part["node_kwh"] = max(0.0, _num(get("node_kwh")) - twice)
    return part


class _Group:
    """The rows of one key across shards."""

    __slots__ = ("rows", "devices")

    def __init__(self) -> None:
        self.rows: list[tuple[Shard, dict[str, Any]]] = []
        self.devices: list[tuple[Shard, dict[str, Any]]] = []


def _written(epochs: dict[Key, dict[str, Any]], devices: dict[Key, Any], shard: Shard) -> dict[Key, dict[str, Any]]:
    """A shard's rows less a last row caught between its two writes.

    The writer appends a row to ``epochs.csv``, then its device rows to ``devices.csv``. A merge that
    reads a running shard between the two would count that row's GPUs without knowing which are
    another rank's duplicates (counting them twice), so such a row waits for the next merge.
    """
    last = next(reversed(epochs), None)
    if last is None or last in devices or shard.status != "running" or not _num(epochs[last].get("energy_kwh")):
        return epochs
    return {key: row for key, row in epochs.items() if key != last}


def _groups(shards: Sequence[Shard]) -> dict[Key, _Group]:
    groups: dict[Key, _Group] = {}
    for shard in shards:
        devices = _keyed_devices(shard.devices)
        for key, row in _written(_keyed_epochs(shard.epochs), devices, shard).items():
            group = groups.setdefault(key, _Group())
            group.rows.append((shard, row))
            group.devices.extend((shard, d) for d in devices.get(key, []))
    return groups


def sensor_shares(shard: Shard) -> dict[Key, tuple[str, float]]:
    """Each device a shard measures (by :func:`_identity`): its kind and its share of that kind's energy.

    The devices are those of its ``run.json`` sensors and its device rows; the shares are from its
    device rows (equal within a kind where it wrote none yet).
    """
    energy: dict[Key, tuple[str, float]] = {}
    for sensor in shard.info.get("sensors") or []:
        info = sensor.get("info") if isinstance(sensor, dict) else None
        if isinstance(info, dict):
            row = {"kind": sensor.get("kind"), "uuid": info.get("uuid"), "sensor": sensor.get("name")}
            energy.setdefault(_identity(row, shard.machine), (str(row["kind"]), 0.0))
    for row in shard.devices:
        key = _identity(row, shard.machine)
        kind, so_far = energy.get(key, (str(row.get("kind")), 0.0))
        energy[key] = (kind, so_far + _num(row.get("energy_kwh")))
    by_kind: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for kind, kwh in energy.values():
        by_kind[kind] += kwh
        counts[kind] += 1
    return {
        key: (kind, kwh / by_kind[kind] if by_kind[kind] > 0 else 1.0 / counts[kind])
        for key, (kind, kwh) in energy.items()
    }


def _heartbeat_duplicates(shard: Shard, part: Mapping[str, Any], group: _Group) -> list[dict[str, Any]]:
    """A row without device rows (a killed rank's heartbeat): its share of devices other ranks' rows hold.

    Returned as device-like rows (``kind``, ``energy_kwh``) to take off its figures, like :func:`keep_once`'s.
    """
    others = {_identity(d, s.machine) for s, d in group.devices if s is not shard}
    made = _embodied_shares(shard)
    dropped = []
    for key, (kind, share) in sensor_shares(shard).items():
        if key in others and kind in KIND_COLUMNS:
            row = {"kind": kind, "energy_kwh": _num(part.get(KIND_COLUMNS[kind])) * share}
            dropped.append(row | {c: _num(part.get(c)) * made.get(key, {}).get(c, 0.0) for c in EMBODIED})
    return dropped


def _embodied_shares(shard: Shard) -> dict[Key, dict[str, float]]:
    """Each device's share of a shard's embodied columns, from its device rows (a device's rate is fixed).

    Empty where the shard wrote no device row with an embodied share (then none is taken off).
    """
    sums: dict[Key, dict[str, float]] = {}
    for row in shard.devices:
        device = sums.setdefault(_identity(row, shard.machine), dict.fromkeys(EMBODIED, 0.0))
        for column in EMBODIED:
            device[column] += _num(row.get(column))
    whole = {column: math.fsum(device[column] for device in sums.values()) for column in EMBODIED}
    return {key: {c: device[c] / whole[c] if whole[c] > 0 else 0.0 for c in EMBODIED} for key, device in sums.items()}


def _merged_row(name: str, group: _Group, shards: Sequence[Shard]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    kept, dropped = _keep_once([d for _, d in group.devices], [_identity(d, s.machine) for s, d in group.devices])
    dropped_ids = {id(d) for d in dropped}
    first = min(group.rows, key=lambda pair: pair[0].rank)[1]
    row: dict[str, Any] = {**first, "run": name}
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for s, d in group.devices:  # indexed once: a job of N ranks is not N x N work per row
        by_shard.setdefault(id(s), []).append(d)
    sums: dict[str, float] = {}
    for shard, part in group.rows:
        mine = [d for d in by_shard.get(id(shard), ()) if id(d) in dropped_ids]
        if id(shard) not in by_shard:
            mine = _heartbeat_duplicates(shard, part, group)
            dropped.extend(mine)
        for column, value in _scaled_part(part, mine).items():
            sums[column] = sums.get(column, 0.0) + value
    row.update(sums)
    rows = [r for _, r in group.rows]
    row["start_utc"] = min(str(r.get("start_utc") or "") for r in rows)
    row["end_utc"] = max(str(r.get("end_utc") or "") for r in rows)
    row["duration_s"] = max(_num(r.get("duration_s")) for r in rows)
    # a killed rank's samples were planned when its epoch opened, not processed: its energy counts, they do not
    samples = [r.get("samples") for r in rows if isinstance(r.get("samples"), int) and r.get("notes") != RECOVERED]
    row["samples"] = sum(samples) if samples else None
    for kind in KIND_COLUMNS:
        row[f"{kind}_method"] = joined(r.get(f"{kind}_method") for r in rows)
    row["node_kwh"], node_note = node_kwh(sums.get("node_kwh"), *_machines(group))
    node_method = joined(r.get("node_method") for r in rows)
    row["node_method"] = node_method if row["node_kwh"] is not None and node_method != ABSENT else ""
    row["gap_s"] = max(_num(r.get("gap_s")) for r in rows)
    _derived(row)
    row["status"], row["notes"] = _status_and_flags(group, shards)
    row["notes"] = ";".join(filter(None, [row["notes"], node_note]))
    if dropped:  # what the merge left out, and why
        note = f"{len(dropped)} device shares left out: the same device as another rank's row (the lowest rank's kept)"
        row["notes"] = ";".join(filter(None, [row["notes"], note]))
    return row, [dict(d, run=name) for d in kept]


def _machines(group: _Group) -> tuple[set[str], set[str]]:
    """The machines of a merged row's shards, and those whose row has a node meter's figure."""
    machines = {shard.machine for shard, _ in group.rows}
    return machines, {shard.machine for shard, row in group.rows if row.get("node_kwh") is not None}


def node_kwh(total: float | None, machines: set[str], metered: set[str]) -> tuple[float | None, str]:
    """The node meters' energy of a merged row (each machine's once), and a note when only some machines have one.

    A machine's meter holds all of its components, so the figure stands beside the job's components
    only when every machine of the row was metered; otherwise it is left empty, and the note says why.
    """
    if not metered:
        return None, ""
    if metered != machines:
        return None, f"node meter on {len(metered)} of {len(machines)} machines: node_kwh left empty (not all held)"
    return total or 0.0, ""


def _derived(row: dict[str, Any]) -> None:
    duration, energy_j = _num(row.get("duration_s")), row["energy_kwh"] * J_PER_KWH
    gpu_measured = row.get("gpu_method") != ABSENT
    row["gpu_power_mean_w"] = row["gpu_kwh"] * J_PER_KWH / duration if gpu_measured and duration > 0 else None
    samples = row.get("samples")
    row["energy_per_sample_j"] = energy_j * _num(row.get("pue") or 1.0) / samples if samples else None


def _status_and_flags(group: _Group, shards: Sequence[Shard]) -> tuple[str, str]:
    present = {id(s) for s, _ in group.rows}
    flags = [f"r{s.rank}: {flag}" for s, r in group.rows for flag in str(r.get("notes") or "").split(";") if flag]
    interrupted = any(r.get("status") not in ("complete", PARTIAL) for _, r in group.rows)
    for shard in shards:
        if id(shard) in present:
            continue
        state = "still running: not this far yet" if shard.status == RUNNING else shard.status
        flags.append(f"no row from r{shard.rank}@{shard.host} (its run: {state})")
        interrupted = interrupted or shard.status != "complete"
    # a part of an epoch cut by steps or time stays partial once merged: the epoch is finished by its last row
    partial = all(r.get("status") == PARTIAL for _, r in group.rows)
    return ("interrupted" if interrupted else PARTIAL if partial else "complete"), ";".join(flags)


def _cumulative(rows: list[dict[str, Any]]) -> None:
    energy = co2 = 0.0
    for row in rows:
        energy += row["energy_kwh"]
        co2 += row["co2_kg"]
        old_energy = _num(row.get("cumulative_energy_kwh"))
        scale = energy / old_energy if old_energy > 0 else None
        row["cumulative_energy_kwh"], row["cumulative_co2_kg"] = energy, co2
        for column in (
            "forecast_total_kwh",
            "forecast_total_co2_kg",
            "forecast_total_co2_kg_low",
            "forecast_total_co2_kg_high",
        ):
            # every rank has finished as many epochs: the lowest rank's forecast, scaled to the job's totals
            if row.get(column) is not None:
                row[column] = row[column] * scale if scale is not None else None


def merge(name: str, shards: Sequence[Shard]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The job's ``run.json``, ``epochs.csv`` and ``devices.csv`` contents from its shards.

    The shards are first split into attempts (:func:`attempts`); devices seen twice are dropped only
    within an attempt, and every attempt's rows are counted, each saying which attempt it is.

    Args:
        name: the job's name, written in every row.
        shards: every writer's rows (ranks of one job, or runs sharing a job id).

    Returns:
        ``(info, epochs, devices)`` as :class:`~tracker.logs.reader.Run` holds them.
    """
    split = attempts(shards)
    epochs, devices = [], []
    for number, attempt in enumerate(split, 1):
        rows, kept = _merge_attempt(name, attempt)
        if len(split) > 1:
            for row in rows:
                row["notes"] = ";".join(filter(None, [_attempt_note(number, len(split), attempt), row["notes"]]))
        epochs.extend(rows)
        devices.extend(kept)
    _cumulative(epochs)
    return merged_info(name, split, epochs), epochs, devices


def _merge_attempt(name: str, shards: Sequence[Shard]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    groups = _groups(shards)
    # rows are written as they close: the order in which they end (a phase's row ends before its epoch's)
    ordered = sorted(groups.items(), key=lambda item: min(str(r.get("end_utc") or "") for _, r in item[1].rows))
    epochs, devices = [], []
    for _, group in ordered:
        row, kept = _merged_row(name, group, shards)
        epochs.append(row)
        devices.extend(kept)
    return epochs, devices


def _attempt_note(number: int, count: int, attempt: Sequence[Shard]) -> str:
    ranks = ",".join(f"r{s.rank}" for s in attempt)
    restart = attempt[0].launch("restart")
    return (
        f"attempt {number} of {count} in this directory (restart {restart}, {ranks}): merged with no other "
        "attempt's rows, its energy counted whole"
    )


def attempts(shards: Sequence[Shard]) -> list[list[Shard]]:
    """The shards split into attempts: the sets of ranks that provably ran together, first started first.

    A shard joins an attempt only when it has the same restart count (``TORCHELASTIC_RESTART_COUNT``)
    and world size, its rank is not taken there, and, on a machine where the attempt already has a
    shard, it has the same launcher (the parent process every rank of a node shares, or the token a
    framework that started the ranks itself agreed, ``launch.launcher``). Anything else
    (a second job in an existing directory, an elastic restart, a rank reused) is an attempt of its
    own: no device is dropped against another attempt's rows.
    """
    found: list[list[Shard]] = []
    ordered = sorted(shards, key=lambda s: (s.launch("restart"), str(s.info.get("start_utc") or ""), s.rank))
    for shard in ordered:
        home = next((group for group in found if _admits(group, shard)), None)
        if home is None:
            found.append([shard])
        else:
            home.append(shard)
    return [sorted(group, key=lambda s: (s.rank, s.name)) for group in found]


def _admits(group: Sequence[Shard], shard: Shard) -> bool:
    if _attempt_key(group[0]) != _attempt_key(shard):
        return False
    if any(s.rank == shard.rank for s in group):
        return False
    launcher = shard.launcher
    same_machine = [s.launcher for s in group if s.machine == shard.machine]
    return launcher is None or all(other is None or other == launcher for other in same_machine)


def _attempt_key(shard: Shard) -> tuple[int, int]:
    return shard.launch("restart"), shard.launch("world_size", 1)


def merged_info(name: str, split: Sequence[Sequence[Shard]], epochs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The job's ``run.json``: the lowest rank's of the last attempt, with every shard, attempt and what is missing.

    The job's status is its last attempt's (an elastic restart that finished is ``complete``; the
    attempts before it are listed in ``attempts`` and named in their rows' notes).
    """
    shards = [s for attempt in split for s in attempt]
    if not shards:
        return {"run": name, "status": "running", "shards": []}
    last = split[-1]
    base = min(last, key=lambda s: s.rank).info
    world = (base.get("launch") or {}).get("world_size") or len(last)
    missing = sorted(set(range(world)) - {s.rank for s in last}) if isinstance(world, int) else []
    status = job_status({s.status for s in last})
    if RUNNING in {s.status for s in shards}:
        status = RUNNING
    ends = [s.info.get("end_utc") for s in shards]
    return {
        **base,
        "run": name,
        "status": "interrupted" if missing and status == "complete" else status,
        "job_id": base.get("job_id"),
        "world_size": world,
        "missing_ranks": missing,
        "start_utc": min(str(s.info.get("start_utc") or "") for s in shards),
        "end_utc": None if None in ends else max(str(e) for e in ends),
        "host": ",".join(dict.fromkeys(s.host for s in shards)),
        "sensors": [dict(x, host=s.host, rank=s.rank) for s in shards for x in s.info.get("sensors") or []],
        "shards": [
            {"name": s.name, "host": s.host, "rank": s.rank, "status": s.status, "rows": len(s.epochs), "attempt": n}
            for n, attempt in enumerate(split, 1)
            for s in attempt
        ],
        "attempts": [
            {
                "restart": a[0].launch("restart"),
                "ranks": [s.rank for s in a],
                "status": job_status({s.status for s in a}),
            }  # noqa: E501
            for a in split
        ],
        "totals": _totals(epochs),
    }


def job_status(statuses: set[str]) -> str:
    """A job's status from its shards' statuses.

    ``running`` while any rank still runs (its rows may yet come); else ``killed`` if any rank's
    process was found gone without an end (:mod:`tracker.logs.liveness`), even if the others
    completed: the job did not finish all its work; else ``complete`` if every rank completed; else
    ``interrupted`` (a rank stopped by an exception or a Ctrl-C, recorded by the tracker itself).
    """
    if RUNNING in statuses:
        return RUNNING
    if KILLED in statuses:
        return KILLED
    return "complete" if statuses <= {"complete"} else "interrupted"


def _totals(epochs: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    totals = Totals.of(epochs)
    sums = {**totals.sums(), **totals.embodied(), **totals.water()}
    columns = ("energy_kwh", "gpu_kwh", "cpu_kwh", "ram_kwh", "co2_kg", "co2_kg_low", "co2_kg_high", *EMBODIED, *WATER)
    return {c: sums[c] for c in columns}


def job_of(info: Mapping[str, Any]) -> str | None:
    """The job id a run records, or ``None``."""
    job = info.get("job_id")
    return str(job) if job else None


def group_by_job(runs: Sequence[Any]) -> list[list[Any]]:
    """Runs in groups: ranks of one distributed job written as runs of their own together, the others alone.

    A lone run (``world_size`` 1) is never merged with another, whatever job id it shares: three
    runs one after another in one SLURM allocation are three runs, and two tasks of an array on one
    node each keep their CPU energy. Runs that record ranks of a larger world and one job id are
    grouped; :func:`merge` then splits them into attempts.

    Args:
        runs: objects with an ``info`` mapping (:class:`~tracker.logs.reader.Run`).
    """
    groups: dict[Any, list[Any]] = {}
    for index, run in enumerate(runs):
        world = (run.info.get("launch") or {}).get("world_size")
        if run.info.get("shards") is not None or job_of(run.info) is None or not (isinstance(world, int) and world > 1):
            groups[("alone", index)] = [run]  # a job already merged from its ranks, a lone run, or no job id
        else:
            groups.setdefault(("job", job_of(run.info)), []).append(run)
    return list(groups.values())
