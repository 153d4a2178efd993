"""Which GPUs a process sees: ``CUDA_VISIBLE_DEVICES`` and ``devices=`` resolved against NVML's list.

NVML numbers every GPU of the machine and ignores ``CUDA_VISIBLE_DEVICES`` (docs/measurement.md §2),
so :mod:`tracker.sensors.nvml` enumerates all GPUs and these functions pick the ones CUDA shows,
renumbered by logical CUDA index: NVML indices, ``GPU-`` UUIDs or unique prefixes of them, and
``MIG-`` UUIDs, which resolve to their parent GPU. An entry that matches no GPU, or several, is a
:class:`~tracker.errors.ConfigurationError` listing the valid choices.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

from tracker.errors import ConfigurationError, SensorError
from tracker.sensors.nvml_calls import SOURCE, call, optional, text

__all__ = ["Gpu", "group_by_gpu", "select_gpus", "visible_gpus"]


class Gpu(NamedTuple):
    """A GPU as NVML lists it, or as CUDA shows it (then ``mig_uuid`` names the MIG instance it was chosen by)."""

    index: int  # NVML index in the list of all GPUs, logical CUDA index in the list of visible ones
    handle: Any  # the same object in every Gpu made from one NVML listing
    uuid: str
    mig_uuid: str | None = None


def visible_gpus(nvml: Any, gpus: list[Gpu], spec: str | None) -> list[Gpu]:
    """The GPUs CUDA shows this process, by logical index (NVML ignores CUDA_VISIBLE_DEVICES: measurement.md §2)."""
    if spec is None:
        return gpus
    visible: list[Gpu] = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry.startswith("-") and entry[1:].isdigit():
            break  # CUDA stops at an invalid ordinal: "-1" is the usual way to hide every GPU
        if entry:
            visible.append(_resolve(nvml, gpus, entry)._replace(index=len(visible)))
    return visible


def _resolve(nvml: Any, gpus: list[Gpu], entry: str) -> Gpu:
    what = f"CUDA_VISIBLE_DEVICES entry {entry!r}"
    if entry.isdigit():
        if int(entry) < len(gpus):
            return gpus[int(entry)]
        raise _no_match(nvml, what, "is not an NVML index here", gpus)
    if entry.upper().startswith("GPU-"):
        return _by_prefix(nvml, what, entry, gpus)
    if entry.upper().startswith("MIG-"):
        return _mig_parent(nvml, what, entry, gpus)._replace(mig_uuid=entry)
    raise _no_match(nvml, what, "is neither an index nor a GPU-/MIG- UUID", gpus)


def _by_prefix(nvml: Any, what: str, prefix: str, choices: list[Gpu]) -> Gpu:
    # nvmlDeviceGetHandleByUUID takes only exact UUIDs, while CUDA accepts unique prefixes: scan (vllm #53570).
    found = {g.uuid: g for g in choices if g.uuid.lower().startswith(prefix.lower())}
    if len(found) == 1:
        return next(iter(found.values()))
    raise _no_match(nvml, what, "is ambiguous" if found else "matches no GPU", choices)


def _mig_parent(nvml: Any, what: str, entry: str, gpus: list[Gpu]) -> Gpu:
    if "/" in entry:  # the pre-R470 form MIG-GPU-<parent uuid>/<GI>/<CI> names its parent
        return _by_prefix(nvml, what, entry[4:].split("/")[0], gpus)
    try:
        mig = call(nvml, SOURCE, "nvmlDeviceGetHandleByUUID", entry)
        parent = call(nvml, SOURCE, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig)
        uuid = text(call(nvml, SOURCE, "nvmlDeviceGetUUID", parent))
    except SensorError as e:
        raise _no_match(nvml, what, f"matches no MIG instance ({e})", gpus) from e
    return next(g for g in gpus if g.uuid == uuid)


def select_gpus(nvml: Any, visible: list[Gpu], devices: Sequence[int | str] | None) -> list[Gpu]:
    """The visible GPUs named in ``devices`` (logical indices or UUIDs), in its order; all when ``None``."""
    if devices is None:
        return visible
    chosen: list[Gpu] = []
    for want in devices:
        chosen.extend(g for g in _match(nvml, visible, str(want).strip()) if g not in chosen)
    return chosen


def _match(nvml: Any, visible: list[Gpu], want: str) -> list[Gpu]:
    what = f"devices entry {want!r}"
    if want.isdigit():
        found = [g for g in visible if g.index == int(want)]
        if not found:
            raise _no_match(nvml, what, "is not a logical index here", visible)
        return found
    if any(want == g.mig_uuid for g in visible):
        return [g for g in visible if want == g.mig_uuid]
    # torch.cuda.get_device_properties(i).uuid comes without the "GPU-" prefix.
    uuid = _by_prefix(nvml, what, want if want.upper().startswith("GPU-") else f"GPU-{want}", visible).uuid
    return [g for g in visible if g.uuid == uuid]


def group_by_gpu(chosen: list[Gpu]) -> list[tuple[Gpu, list[str]]]:
    """One entry per physical GPU, so two MIG instances of one GPU are never measured twice."""
    groups: dict[str, tuple[Gpu, list[str]]] = {}
    for gpu in chosen:
        groups.setdefault(gpu.uuid, (gpu, []))[1].extend([gpu.mig_uuid] if gpu.mig_uuid else [])
    return list(groups.values())


def _no_match(nvml: Any, what: str, why: str, choices: list[Gpu]) -> ConfigurationError:
    listed = ", ".join(
        f"{g.index}: {g.uuid} ({text(optional(nvml, SOURCE, 'nvmlDeviceGetName', g.handle)) or 'unknown'})"
        for g in choices
    )
    return ConfigurationError(
        f"{what} {why}. Valid choices: {listed or 'none'}. "
        "Write an index, a GPU- UUID or a unique prefix of one, or a MIG- UUID as `nvidia-smi -L` lists them."
    )
