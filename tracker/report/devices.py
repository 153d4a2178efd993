"""``energy-tracker devices``: what this machine can measure, and why the rest cannot be.

:func:`survey` discovers the sensors, reads each twice :data:`WAIT_S` apart (a counter's power is
its energy difference over the time between the reads; the CPU estimate needs two reads to see
utilisation) and closes them. :func:`describe` turns the result into plain text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from tracker.energy import counter_delta_j
from tracker.errors import SensorError
from tracker.sensors import CPU, GPU, NODE, RAM, Reading, Sensor
from tracker.sensors.discovery import discover
from tracker.sensors.methods import RAPL, RAPL_DRAM, is_measured

WAIT_S = 0.5


def power_w(first: Reading, second: Reading) -> float | None:
    """Mean power in W between two readings of one sensor.

    The counter difference (wraparound included) over the time between them, else the second reading's power.
    """
    dt = second.time_s - first.time_s
    if first.energy_j is not None and second.energy_j is not None and dt > 0:
        delta, event = counter_delta_j(first.energy_j, second.energy_j, second.counter_range_j)
        if event != "reset" and delta >= 0:
            return delta / dt
    return second.power_w


def _read(sensor: Sensor) -> Reading | str:
    try:
        return sensor.read()
    except SensorError as exc:
        return f"read failed: {exc}"


def measure_power(
    sensors: Sequence[Sensor], wait_s: float = WAIT_S, sleep: Callable[[float], None] = time.sleep
) -> list[tuple[float | None, str]]:
    """``(power in W or None, error text)`` for each sensor, from two reads ``wait_s`` apart."""
    first = [_read(s) for s in sensors]
    _wait_polled(sensors, wait_s, sleep)
    second = [_read(s) for s in sensors]
    results = []
    for a, b in zip(first, second, strict=True):
        if isinstance(a, str) or isinstance(b, str):
            results.append((None, a if isinstance(a, str) else str(b)))
        else:
            results.append((power_w(a, b), ""))
    return results


def _wait_polled(sensors: Sequence[Sensor], wait_s: float, sleep: Callable[[float], None]) -> None:
    """Wait ``wait_s``, reading meanwhile the sensors that poll at their driver's refresh rate, as a run would.

    Their info then says the refresh period inferred (``power_update_s``) and the poll it calls for
    (``poll_interval_s``), as the run's fast lane would find them.
    """
    polled = [s for s in sensors if "poll_interval_s" in s.info]
    left = wait_s
    while polled and left > 1e-9:
        step = min([left, *(s.max_interval_s or left for s in polled)])
        sleep(step)
        left -= step
        for sensor in polled:
            _read(sensor)
    if not polled:
        sleep(wait_s)


def survey(
    wait_s: float = WAIT_S, sleep: Callable[[float], None] = time.sleep, **discover_options: Any
) -> dict[str, Any]:
    """The sensors found (name, kind, method, info, power_w, error), the absent sources, and a verdict.

    Args:
        wait_s: seconds between the two reads of each sensor.
        sleep: waits that long (tests pass one that advances a fake clock).
        **discover_options: passed to :func:`tracker.sensors.discovery.discover` (tests pass fakes).
    """
    discovery = discover(**discover_options)
    try:
        powers = measure_power(discovery.sensors, wait_s, sleep)
    finally:
        discovery.close()
    sensors = [
        {"name": s.name, "kind": s.kind, "method": s.method, "info": dict(s.info), "power_w": p, "error": error}
        for s, (p, error) in zip(discovery.sensors, powers, strict=True)
    ]
    return {"sensors": sensors, "absent": [a._asdict() for a in discovery.absent], "verdict": verdict(sensors)}


def verdict(sensors: Sequence[dict[str, Any]]) -> str:
    """One plain sentence: what is measured here and what is estimated (and the node's own meter, beside them)."""
    node = (
        " The node's own meter (ACPI power meter) is read beside them, never added."
        if any(s["kind"] == NODE for s in sensors)
        else ""
    )
    return _components_verdict([s for s in sensors if s["kind"] != NODE]) + node


def _components_verdict(sensors: Sequence[dict[str, Any]]) -> str:
    measured = sorted({s["kind"] for s in sensors if is_measured(s["method"])})
    estimated = sorted({s["kind"] for s in sensors if not is_measured(s["method"])})
    has_gpu = any(s["kind"] == GPU for s in sensors)
    has_rapl = any(s["method"] in (RAPL, RAPL_DRAM) for s in sensors)
    if not has_gpu and not has_rapl:
        cpu = next((s for s in sensors if s["kind"] == CPU), None)
        ram = next((s for s in sensors if s["kind"] == RAM), None)
        cpu_text = f"CPU energy is estimated from utilisation x TDP ({_tdp(cpu)})" if cpu else "no CPU estimate"
        ram_text = f"RAM energy from a model ({_ram(ram)})" if ram else "no RAM model"
        return (
            f"No GPU and no readable RAPL here: nothing is measured by a hardware counter; {cpu_text} and "
            f"{ram_text}. Every component's figure on this machine is an estimate."
        )
    text = f"Measured by hardware counters: {', '.join(measured) or 'nothing'}."
    return text + (f" Estimated: {', '.join(estimated)}." if estimated else "")


def _tdp(cpu: dict[str, Any] | None) -> str:
    info = (cpu or {}).get("info", {})
    return f"{cpu['method'] if cpu else ''}: {info.get('tdp_w', '?')} W, {info.get('tdp_source', 'source unrecorded')}"


def _ram(ram: dict[str, Any] | None) -> str:
    info = (ram or {}).get("info", {})
    return f"{info.get('model', '?')}, {info.get('size_gib', '?')} GiB {info.get('size_source', '')}".rstrip()


def describe(found: dict[str, Any]) -> str:
    """The survey as plain text: sensors with their power and details, absent sources with reasons and hints."""
    lines = [f"Sensors found (power over {WAIT_S:g} s):"]
    for s in found["sensors"]:
        power = f"{s['power_w']:.2f} W" if s["power_w"] is not None else s["error"] or "no power figure"
        lines.append(f"  {s['name']}  [{s['kind']}, {s['method']}]  {power}")
        lines.extend(f"      {key}: {value}" for key, value in s["info"].items())
    if not found["sensors"]:
        lines.append("  none")
    lines.append("Absent sources:")
    for a in found["absent"]:
        lines.append(f"  {a['source']} ({a['kind']}): {a['reason']}" + (f": {a['detail']}" if a["detail"] else ""))
        if a["hint"]:
            lines.append(f"      hint: {a['hint']}")
    if not found["absent"]:
        lines.append("  none")
    return "\n".join([*lines, "", found["verdict"]]) + "\n"
