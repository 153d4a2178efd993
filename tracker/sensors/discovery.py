"""Discovery: the sensors this machine supports and, for each absent source, why.

Each backend (``nvml``, ``amd``, ``rapl``, ``cpu_estimate``, ``ram``, ``cpu_scope``, ``hwmon``) is imported when it
is looked for, so ``import tracker`` initialises nothing; a new backend adds its lookup here.

GPUs come from NVML, else from ``amdsmi`` (AMD); CPU from RAPL package zones, else the TDP estimate; RAM
from RAPL DRAM zones, else the RAM model; the node's own meter from hwmon's ACPI power meter, if any.
Absent hardware is an empty list plus a reason, never an exception, except for configuration errors (a
``CUDA_VISIBLE_DEVICES`` entry that matches no GPU, an explicit powercap or hwmon root missing).

The GPU driver is asked on a thread of its own, waited for at most ``timeout_s``: a driver hung
in ``nvmlInit`` (Xid recovery, a stuck PCIe read) cannot be interrupted from Python, so past the
deadline discovery goes on without GPUs, says why (``"driver hung"``) and warns once; the lookup
closes what it found if it ever returns.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.errors import ConfigurationError
from tracker.sensors import CPU, GPU, NODE, RAM, Absent, Clock, Discovery

logger = logging.getLogger(__name__)

# The longest discovery waits for the GPU driver, s. With persistence mode a healthy nvmlInit and
# device enumeration take tens of ms; past a second the driver is hung (the sampler's own bound on a read).
DISCOVERY_TIMEOUT_S = 1.0


def discover(
    *,
    nvml: Any = None,
    visible_devices: str | None = None,
    gpu_devices: Sequence[int | str] | None = None,
    powercap_root: Path | str | None = None,
    hwmon_root: Path | str | None = None,
    cpu_tdp_w: float | None = None,
    ram_w: float | None = None,
    gpus: bool = True,
    cpu: bool = True,
    ram: bool = True,
    node: bool = True,
    clock: Clock = time.monotonic,
    cpu_scope: str = "machine",
    cpu_scope_root: int | None = None,
    timeout_s: float | None = None,
) -> Discovery:
    """Find the sensors this machine supports (the order each kind is looked for in: the module docstring).

    Args:
        nvml: the ``pynvml`` module to use (a fake in tests); imported lazily when ``None``.
        visible_devices: ``CUDA_VISIBLE_DEVICES`` as a string; read from the environment when ``None``.
        gpu_devices: measure only these GPUs: logical CUDA indices (after ``CUDA_VISIBLE_DEVICES``) or UUIDs.
        powercap_root: the powercap sysfs directory; ``None`` is ``/sys/class/powercap`` (an explicit one must exist).
        hwmon_root: the hwmon sysfs directory; ``None`` is ``/sys/class/hwmon`` (an explicit one must exist).
        cpu_tdp_w: the CPU package power in watts to use instead of the table lookup.
        ram_w: the RAM power in watts to use instead of the RAM model.
        gpus: whether to measure GPUs.
        cpu: whether to measure the CPU (RAPL, else the estimate).
        ram: whether to measure RAM (RAPL DRAM, else the model).
        node: whether to read the node's own meter (beside the components, never added to them).
        clock: monotonic clock in seconds, shared with the sampler.
        cpu_scope: ``"machine"``, or ``"process"`` for this process tree's share (:mod:`tracker.sensors.cpu_scope`).
        cpu_scope_root: the root of that process tree; this process when ``None``.
        timeout_s: the longest the GPU driver is waited for, s (``None``: ``DISCOVERY_TIMEOUT_S``).

    Raises:
        ConfigurationError: a ``CUDA_VISIBLE_DEVICES`` entry or an explicit powercap or hwmon root is invalid.
    """
    found = Discovery()
    if gpus:
        look = functools.partial(_gpus, nvml, visible_devices, gpu_devices, clock)
        _guarded(found, "nvml", GPU, functools.partial(_within, found, timeout_s, look))
    if cpu or ram:
        cpu_w, ram_watts = cpu_tdp_w if cpu else False, ram_w if ram else False
        _guarded(found, "rapl", CPU, lambda: _cpu_and_ram(found, powercap_root, cpu_w, ram_watts, clock))
    _guarded(found, "hwmon", NODE, lambda: _node(found, hwmon_root, clock) if node else None)
    _apply_scope(found, cpu_scope, cpu_scope_root)
    return found


def _guarded(found: Discovery, source: str, kind: str, look: Any) -> None:
    """Run one lookup; any exception but a ConfigurationError becomes an absent source with its reason."""
    try:
        look()
    except ConfigurationError:
        raise
    except Exception as exc:  # a binding's or kernel's surprise (a UnicodeDecodeError...) must not stop training
        found.absent.append(Absent(source, kind, "driver error", f"{type(exc).__name__}: {exc}"))


class _Lookup:
    """One lookup on a thread of its own: what it found, or raised, and whether its caller gave up on it."""

    def __init__(self, look: Any) -> None:
        self.look, self.found, self.error = look, Discovery(), None
        self.done, self.late, self.lock = threading.Event(), False, threading.Lock()

    def run(self) -> None:
        try:
            self.look(self.found)
        except BaseException as exc:  # handed to the caller, who judges it (a ConfigurationError is raised)
            self.error = exc
        with self.lock:
            late = self.late
            self.done.set()
        if late:  # nobody will use them: release the driver
            self.found.close()


def _within(found: Discovery, timeout_s: float | None, look: Any) -> None:
    """Run ``look(discovery)`` on a daemon thread and merge what it finds in ``timeout_s`` seconds into ``found``."""
    timeout_s = DISCOVERY_TIMEOUT_S if timeout_s is None else timeout_s
    lookup = _Lookup(look)
    threading.Thread(target=lookup.run, name="energy-tracker.discovery", daemon=True).start()
    lookup.done.wait(timeout_s)
    with lookup.lock:
        lookup.late = not lookup.done.is_set()
    if lookup.late:
        detail = f"the GPU driver did not answer within {timeout_s:g} s"
        hint = "check nvidia-smi; a driver slow to initialise needs persistence mode (nvidia-smi -pm 1)"
        found.absent.append(Absent("nvml", GPU, "driver hung", detail, hint))
        logger.warning("energy-tracker: %s; GPUs are not measured in this run (%s)", detail, hint)
        return
    if lookup.error is not None:
        raise lookup.error
    found.sensors.extend(lookup.found.sensors)
    found.absent.extend(lookup.found.absent)


def _gpus(nvml: Any, visible_devices: str | None, gpu_devices: Any, clock: Clock, found: Discovery) -> None:
    from tracker.sensors import nvml as nvml_backend

    if visible_devices is None:
        visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    sensors, absent = nvml_backend.find_gpus(
        nvml=nvml, visible_devices=visible_devices, devices=gpu_devices, clock=clock
    )
    if not sensors:  # an NVIDIA machine is not searched for AMD GPUs too: their names would clash
        from tracker.sensors import amd

        env = os.environ
        sensors, amd_absent = amd.find_amd_gpus(
            rocr_visible=env.get("ROCR_VISIBLE_DEVICES"), hip_visible=env.get("HIP_VISIBLE_DEVICES"),
            devices=gpu_devices, clock=clock,
        )  # fmt: skip
        absent = [*absent, *amd_absent]
    found.sensors.extend(sensors)
    found.absent.extend(absent)


def _cpu_and_ram(found: Discovery, powercap_root: Any, cpu_tdp_w: Any, ram_w: Any, clock: Clock) -> None:
    # cpu_tdp_w/ram_w False: that kind is not measured; None: RAPL, else the estimate; a number: the user's watts.
    from tracker.sensors import cpu_estimate, rapl
    from tracker.sensors import ram as ram_backend

    rapl_sensors, rapl_absent = rapl.find_rapl(root=powercap_root, clock=clock)
    found.absent.extend(rapl_absent)
    if cpu_tdp_w is not False:
        package = [s for s in rapl_sensors if s.kind == CPU and cpu_tdp_w is None]
        found.sensors.extend(package or [cpu_estimate.CpuEstimateSensor(tdp_w=cpu_tdp_w, clock=clock)])
    if ram_w is not False:
        dram = [s for s in rapl_sensors if s.kind == RAM and ram_w is None]
        found.sensors.extend(dram or [ram_backend.RamModelSensor(power_w=ram_w, clock=clock)])


def _node(found: Discovery, hwmon_root: Any, clock: Clock) -> None:
    from tracker.sensors import hwmon

    sensors, absent = hwmon.find_power_meters(root=hwmon_root, clock=clock)
    found.sensors.extend(sensors)
    found.absent.extend(absent)


def _apply_scope(found: Discovery, scope: str, root_pid: int | None) -> None:
    if scope != "process":
        return
    from tracker.sensors.cpu_scope import ProcessScopedSensor

    found.sensors[:] = [ProcessScopedSensor(s, root_pid=root_pid) if s.kind == CPU else s for s in found.sensors]
