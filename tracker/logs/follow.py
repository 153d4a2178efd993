"""Following a distributed job while it runs: only the rows appended since the last look are read.

:class:`JobFollower` keeps, for each rank's shard, how far into ``epochs.csv`` and ``devices.csv``
it has read, and adds each new row's share to the job's figures once that row's device rows are
on disk too. A device that a lower rank of the same attempt also measures (its GPU UUID, or its
machine's CPU and RAM, by the shards' ``run.json``) is left out of the higher rank's share, the rule
of :func:`~tracker.logs.merge.keep_once`, decided per row without waiting for the other ranks. A
look costs the new rows and a ``stat`` per shard: it does not grow with the rows already read.
The report's figures are :func:`~tracker.logs.reader.load_run`'s full merge; these are for live logs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tracker.logs import merge
from tracker.logs.reader import _parse, _read_info, is_job_dir, shard_dirs
from tracker.logs.schema import COMPLETE, DEVICE_TYPES, DEVICES_CSV, EPOCH_TYPES, EPOCHS_CSV, PARTIAL, RUN_JSON

_FIGURES = ("energy_kwh", "co2_kg", "gpu_kwh", "cpu_kwh", "ram_kwh")
# Summed over the ranks' parts that count them (embodied kg CO2e, water L); ``None`` while no part does.
_COUNTED = ("embodied_co2_kg", "water_l")


class _Tail:
    """The complete lines appended to one CSV file since the last read.

    A new metric column rewrites the file's header and pads every row before it (only within its
    first ``WIDE_ROWS`` rows, :mod:`tracker.logs.writer`): the header is then read again and the
    rows already read are skipped by count, so a row is never read twice or missed.
    """

    __slots__ = ("path", "types", "offset", "header", "lines")

    def __init__(self, path: Path, types: dict[str, type]) -> None:
        self.path, self.types, self.offset, self.header, self.lines = path, types, 0, "", 0

    def new_rows(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                if self.header and f.readline().decode("utf-8", errors="replace") != self.header:
                    self._skip_read_lines(f)  # the header grew: the offsets of the rows read have moved
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        text = data[:end].decode("utf-8", errors="replace")
        if not self.header:
            self.header, _, text = text.partition("\n")
            self.header += "\n"
        self.lines += text.count("\n")
        return _parse(self.header + text, self.types)[0] if text else []

    def _skip_read_lines(self, f: Any) -> None:
        f.seek(0)
        self.header = f.readline().decode("utf-8", errors="replace")
        for _ in range(self.lines):
            f.readline()
        self.offset = f.tell()


class _Followed:
    """One shard as read so far: its ``run.json``, its rows waiting for their device rows, its keys."""

    __slots__ = ("shard", "epochs", "devices", "waiting", "by_key", "keys", "device_state", "mtime")

    def __init__(self, path: Path) -> None:
        self.shard = merge.Shard(path.name, {}, [], [])
        self.epochs, self.devices = _Tail(path / EPOCHS_CSV, EPOCH_TYPES), _Tail(path / DEVICES_CSV, DEVICE_TYPES)
        self.waiting: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.keys: Counter[tuple[Any, ...]] = Counter()
        self.device_state: list[Any] = [None, set(), Counter()]  # label, sensors in the group, groups per label
        self.mtime = -1.0

    def read(self, path: Path) -> None:
        try:
            mtime = (path / RUN_JSON).stat().st_mtime
        except OSError:
            mtime = -1.0
        if mtime != self.mtime:
            self.mtime, self.shard.info = mtime, _read_info(path)
        for row in self.epochs.new_rows():
            label = (row.get("epoch"), row.get("phase"))
            self.waiting.append(((*label, self.keys[label]), row))
            self.keys[label] += 1
        for row in self.devices.new_rows():
            self._add_device(row)

    def _add_device(self, row: dict[str, Any]) -> None:
        # the grouping of merge._keyed_devices, one row at a time
        label, sensors, seen = self.device_state
        here = (row.get("epoch"), row.get("phase"))
        if here != label or row.get("sensor") in sensors:
            label, sensors = here, set()
            seen[here] += 1
            self.device_state[:2] = [label, sensors]
        sensors.add(row.get("sensor"))
        self.by_key.setdefault((*here, seen[here] - 1), []).append(row)

    def ready(self) -> list[tuple[tuple[Any, ...], dict[str, Any], list[dict[str, Any]]]]:
        """The rows whose device rows are on disk (or that have none to wait for), in file order."""
        measures = bool(self.shard.info.get("sensors"))
        done = []
        while self.waiting:
            key, row = self.waiting[0]
            if key not in self.by_key and measures and merge._num(row.get("energy_kwh")):
                break
            done.append((key, row, self.by_key.pop(key, [])))
            self.waiting.pop(0)
        return done


class JobFollower:
    """A running job's rows, merged as they come (see the module); ``rows()`` after each look."""

    def __init__(self, job_dir: str | Path) -> None:
        self.job_dir = Path(job_dir)
        self._shards: dict[Path, _Followed] = {}
        self._rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._ranks: dict[tuple[Any, ...], set[int]] = {}
        self._machines: dict[tuple[Any, ...], tuple[set[str], set[str]]] = {}  # all, and those with a node meter
        self._node: dict[tuple[Any, ...], float] = {}

    def rows(self) -> list[dict[str, Any]]:
        """The job's rows so far, one per epoch and phase (and attempt), in the order they first appeared.

        Each holds ``epoch``, ``phase``, ``end_utc``, ``duration_s``, the summed figures (``energy_kwh``,
        ``co2_kg``, ``gpu_kwh``, ``cpu_kwh``, ``ram_kwh``, ``gpu_power_mean_w``), ``embodied_co2_kg`` and
        ``water_l`` (``None`` where no rank's row counts them), ``node_kwh`` (the node
        meters', each machine's once, beside the energy; ``None`` unless every machine so far has one),
        and what it covers so far: ``ranks`` (how many ranks' rows it holds) of ``world_size``, ``status``
        (``partial`` when a rank's row is, else ``interrupted`` when one is, else ``complete``) and
        ``last_step`` (the highest optimizer step counted, ``None`` when none is).
        """
        try:
            paths = shard_dirs(self.job_dir) if is_job_dir(self.job_dir) else [self.job_dir]
        except OSError:
            paths = []
        for path in paths:
            self._shards.setdefault(path, _Followed(path)).read(path)
        attempts = merge.attempts([f.shard for f in self._shards.values()])
        for number, attempt in enumerate(attempts):
            lower = _lower_devices(attempt)
            for shard in attempt:
                followed = next(f for f in self._shards.values() if f.shard is shard)
                for key, row, devices in followed.ready():
                    dropped = [d for d in devices if merge._identity(d, shard.machine) in lower.get(shard.rank, ())]
                    self._add((number, *key), row, merge._scaled_part(row, dropped))
                    self._cover((number, *key), row, shard)
        return [self._with_node(key, row) for key, row in self._rows.items()]

    def _with_node(self, key: tuple[Any, ...], row: dict[str, Any]) -> dict[str, Any]:
        """The row with ``node_kwh``: the node meters' energy when every machine so far has one, else ``None``."""
        return {**row, "node_kwh": merge.node_kwh(self._node.get(key), *self._machines[key])[0]}

    def finished(self) -> bool:
        """Whether every rank of the latest attempt seen has written its shard and stopped (as last read)."""
        shards = [f.shard for f in self._shards.values()]
        latest = merge.attempts(shards)[-1] if shards else []
        world = max((s.launch("world_size", 1) for s in latest), default=1)
        return len(latest) >= world and all(s.status != merge.RUNNING for s in latest)

    def _cover(self, key: tuple[Any, ...], row: dict[str, Any], shard: merge.Shard) -> None:
        """Which ranks the merged row holds, of how many, its status and its last step."""
        merged, ranks = self._rows[key], self._ranks.setdefault(key, set())
        ranks.add(shard.rank)
        machines, metered = self._machines.setdefault(key, (set(), set()))
        machines.add(shard.machine)
        if row.get("node_kwh") is not None:
            metered.add(shard.machine)
        merged["ranks"], merged["world_size"] = len(ranks), max(shard.launch("world_size", 1), len(ranks))
        statuses = {merged.get("status") or COMPLETE, row.get("status") or COMPLETE}
        merged["status"] = PARTIAL if PARTIAL in statuses else max(statuses, key=lambda s: s != COMPLETE)
        if isinstance(row.get("last_step"), int):
            merged["last_step"] = max(row["last_step"], merged.get("last_step") or 0)
        merged.setdefault("last_step", None)

    def _add(self, key: tuple[Any, ...], row: dict[str, Any], part: dict[str, float]) -> None:
        merged = self._rows.setdefault(key, {"epoch": row.get("epoch"), "phase": row.get("phase"), "end_utc": "",
                                            "duration_s": 0.0, **dict.fromkeys(_FIGURES, 0.0),
                                            **dict.fromkeys(_COUNTED)})  # fmt: skip
        for figure in _FIGURES:
            merged[figure] += part.get(figure, 0.0)
        for figure in _COUNTED:
            if figure in part:
                merged[figure] = (merged[figure] or 0.0) + part[figure]
        if "node_kwh" in part:
            self._node[key] = self._node.get(key, 0.0) + part["node_kwh"]
        merged["end_utc"] = max(merged["end_utc"], str(row.get("end_utc") or ""))
        merged["duration_s"] = max(merged["duration_s"], merge._num(row.get("duration_s")))
        measured = merged.get("gpu_measured") or row.get("gpu_method") not in (None, "", merge.ABSENT)
        merged["gpu_measured"] = measured
        seconds = merged["duration_s"]
        merged["gpu_power_mean_w"] = merged["gpu_kwh"] * merge.J_PER_KWH / seconds if measured and seconds else None


def _lower_devices(attempt: list[merge.Shard]) -> dict[int, set[tuple[Any, ...]]]:
    """For each rank, the devices a lower rank of the attempt also measures (by the shards' ``run.json``)."""
    seen: set[tuple[Any, ...]] = set()
    lower: dict[int, set[tuple[Any, ...]]] = {}
    for shard in sorted(attempt, key=lambda s: s.rank):
        mine = set(merge.sensor_shares(shard))
        lower[shard.rank] = mine & seen
        seen |= mine
    return lower
