"""Discovery: the sensors this machine supports and, for each absent source, why.

Each backend (``nvml``, ``amd``, ``rapl``, ``cpu_estimate``, ``ram``, ``cpu_scope``) is imported when it
is looked for, so ``import tracker`` initialises nothing; a new backend adds its lookup here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.errors import ConfigurationError
from tracker.sensors import CPU, GPU, RAM, Absent, Clock, Discovery


def discover(
    *,
    nvml: Any = None,
    visible_devices: str | None = None,
    gpu_devices: Sequence[int | str] | None = None,
    powercap_root: Path | str | None = None,
    cpu_tdp_w: float | None = None,
    ram_w: float | None = None,
    gpus: bool = True,
    cpu: bool = True,
    ram: bool = True,
    clock: Clock = time.monotonic,
    cpu_scope: str = "machine",
    cpu_scope_root: int | None = None,
) -> Discovery:
    """Find the sensors this machine supports.

    GPUs come from NVML, else from ``amdsmi`` (AMD); CPU from RAPL package zones, else the TDP estimate; RAM from RAPL
    DRAM zones, else the RAM model. Absent hardware is an empty list plus a reason, never an
    exception, except for configuration errors (a ``CUDA_VISIBLE_DEVICES`` entry that matches
    no GPU, a powercap root that does not exist when one was given explicitly).

    Args:
        nvml: the ``pynvml`` module to use (a fake in tests); imported lazily when ``None``.
        visible_devices: ``CUDA_VISIBLE_DEVICES`` as a string; read from the environment when ``None``.
        gpu_devices: measure only these GPUs: logical CUDA indices (as the process sees them, after
            ``CUDA_VISIBLE_DEVICES``) or UUIDs; ``None`` measures every visible GPU.
        powercap_root: the powercap sysfs directory; ``None`` is ``/sys/class/powercap`` and may be absent,
            an explicit root must exist.
        cpu_tdp_w: the CPU package power in watts to use instead of the table lookup.
        ram_w: the RAM power in watts to use instead of the RAM model.
        gpus: whether to measure GPUs.
        cpu: whether to measure the CPU (RAPL, else the estimate).
        ram: whether to measure RAM (RAPL DRAM, else the model).
        clock: monotonic clock in seconds, shared with the sampler.
        cpu_scope: ``"machine"``, or ``"process"`` to count this process tree's share of the CPU's
            energy (:mod:`tracker.sensors.cpu_scope`).
        cpu_scope_root: the root of that process tree; this process when ``None``.

    Raises:
        ConfigurationError: a ``CUDA_VISIBLE_DEVICES`` entry or an explicit powercap root is invalid.
    """
    found = Discovery()
    if gpus:
        _guarded(found, "nvml", GPU, lambda: _gpus(found, nvml, visible_devices, gpu_devices, clock))
    if cpu or ram:
        cpu_w, ram_watts = cpu_tdp_w if cpu else False, ram_w if ram else False
        _guarded(found, "rapl", CPU, lambda: _cpu_and_ram(found, powercap_root, cpu_w, ram_watts, clock))
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


def _gpus(found: Discovery, nvml: Any, visible_devices: str | None, gpu_devices: Any, clock: Clock) -> None:
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


def _apply_scope(found: Discovery, scope: str, root_pid: int | None) -> None:
    if scope != "process":
        return
    from tracker.sensors.cpu_scope import ProcessScopedSensor

    found.sensors[:] = [ProcessScopedSensor(s, root_pid=root_pid) if s.kind == CPU else s for s in found.sensors]
