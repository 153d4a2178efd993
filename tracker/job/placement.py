"""Who measures what in a distributed job: one place for every way in (tracker, loop, Lightning, Trainer).

Vendor-neutral: a device is a UUID or an index, whatever its maker. The rules:

- a process alone on its node measures everything asked;
- CPU and RAM, and the node's own meter, are node-wide: local rank 0 measures them, no other rank;
- GPUs: a rank that names the device it trains on (``own``) measures that one; otherwise it measures
  every GPU it sees, and duplicates (the same UUID seen by several ranks of a node) are dropped when
  rows are merged, keeping the lowest rank's (:func:`keep_once`, in :mod:`tracker.logs.merge`, where
  the reader uses it too). So ranks that see every GPU and
  ranks that see only their own are both counted once, without the ranks ever talking to each other.

The launcher's environment (``torchrun``, ``accelerate launch``, ``deepspeed``, ``torch.multiprocessing``
scripts that set the same variables) says where a process sits; reading it makes no collective.
"""

import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from tracker.errors import ConfigurationError
from tracker.sensors import CPU, GPU, RAM

# torchrun's default rendezvous id: the same for every job, so it names none.
_NO_RUN_ID = ("", "none")
# Runs of what a directory name should not hold; a pattern string, so that re compiles it on first use
# (and caches it), not at import.
_UNSAFE = r"[^A-Za-z0-9._-]+"


class Launch(NamedTuple):
    """Where this process sits in its job.

    Attributes:
        rank: global rank; local_rank: rank on this node.
        world_size: processes in the job; local_world_size: processes on this node.
        job_id: what every process of the job shares (``TORCHELASTIC_RUN_ID``, ``SLURM_ARRAY_JOB_ID`` with
            ``_SLURM_ARRAY_TASK_ID``, ``SLURM_JOB_ID``, a Kubernetes pod's name, or a name given; see
            :func:`job_id_from`), ``None`` when none is known.
        job_source: where ``job_id`` came from (the variable's name, or ``given``).
        restart: which attempt of an elastic job this is (``TORCHELASTIC_RESTART_COUNT``, 0 first).
        node_known: whether the launcher said which ranks share this node; when it did not (``RANK``
            and ``WORLD_SIZE`` without ``LOCAL_RANK``: srun, MPI), every rank measures its node's CPU
            and RAM and the merge keeps one rank's per machine.
        launcher: what every process of this launch shares when a framework agreed it (Lightning: rank
            0's token, sent to the others once at setup), for the merge to tell this launch's shards
            from another's; ``None``: the node's launcher is every local rank's parent process.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    job_id: str | None = None
    job_source: str | None = None
    restart: int = 0
    node_known: bool = True
    launcher: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether the job has more than one process."""
        return self.world_size > 1

    @property
    def node_wide(self) -> bool:
        """Whether this process measures the node's CPU and RAM (local rank 0, or alone)."""
        return self.local_rank == 0


def _int_var(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(
            f"the environment variable {name}={text!r} is not a non-negative integer; the launcher "
            "(torchrun, accelerate, deepspeed) sets it: unset it, or give distributed=False to measure alone"
        )
    return value


# Where a job's id is found, first found first: torchrun's rendezvous (what the ranks of one launch
# share), SLURM's (an array task as sacct names it, <array job>_<task>), a Kubernetes pod's name.
JOB_ID_SOURCES = ("TORCHELASTIC_RUN_ID", "SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "POD_NAME", "HOSTNAME")


def job_id_from(environ: Mapping[str, str], given: str | None = None) -> tuple[str | None, str | None]:
    """The job's id and where it came from: ``given``, else the launcher's, the scheduler's or the pod's.

    ``HOSTNAME`` counts only inside Kubernetes (``KUBERNETES_SERVICE_HOST`` set), where it is the pod's name.
    """
    if given:
        return given, "given"
    for name in JOB_ID_SOURCES:
        value = environ.get(name, "").strip()
        if name == "HOSTNAME" and not environ.get("KUBERNETES_SERVICE_HOST"):
            continue
        if value.lower() not in _NO_RUN_ID:
            task = environ.get("SLURM_ARRAY_TASK_ID", "").strip() if name == "SLURM_ARRAY_JOB_ID" else ""
            return (f"{value}_{task}" if task else value), name
    return None, None


def detect(environ: Mapping[str, str] | None = None, job_id: str | None = None) -> Launch:
    """This process's place from the launcher's variables and the job id.

    ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` (DeepSpeed: ``LOCAL_SIZE``).

    Raises:
        ConfigurationError: a variable is not a non-negative integer, or the rank is not below the size.
    """
    env = os.environ if environ is None else environ
    world = max(1, _int_var(env, "WORLD_SIZE", 1))
    rank = _int_var(env, "RANK", 0)
    local_rank, local_world, node_known = _on_node(env, rank, world)
    if rank >= world or local_rank >= local_world:
        raise ConfigurationError(
            f"RANK={rank}, LOCAL_RANK={local_rank} with WORLD_SIZE={world}, LOCAL_WORLD_SIZE={local_world}: a rank "
            "must be below its size; launch with torchrun (which sets them), or give distributed=False"
        )
    found, source = job_id_from(env, job_id)
    restart = _int_var(env, "TORCHELASTIC_RESTART_COUNT", 0)
    return Launch(rank, local_rank, world, local_world, found, source, restart, node_known)


def framework_launch(
    rank: int,
    local_rank: int,
    world_size: int,
    local_world_size: int,
    agreed: str,
    job_id: str | None,
    source: str,
    environ: Mapping[str, str] | None = None,
) -> Launch:
    """A process's place as a framework that started the ranks itself says it (Lightning's ``Trainer``).

    Args:
        rank: the global rank, as the framework says it.
        local_rank: the rank on this node.
        world_size: processes in the job.
        local_world_size: processes on this node.
        agreed: a token every rank of the job was given by one collective (rank 0's): the job's id when
            neither ``job_id`` nor a launcher or scheduler names one, and the launch's ``launcher``.
        job_id: the job id given by the user, if any.
        source: the framework's name, for ``job_source`` and the job directory's name.
        environ: the environment (default ``os.environ``), for a scheduler's job id and the restart count.
    """
    env = os.environ if environ is None else environ
    found, found_source = job_id_from(env, job_id)
    restart = _int_var(env, "TORCHELASTIC_RESTART_COUNT", 0)
    if found is None:
        found, found_source = agreed, source
    return Launch(rank, local_rank, world_size, max(1, local_world_size), found, found_source, restart, True, agreed)


# Where a launcher says a process's rank on its node, and how many its node runs; DeepSpeed says
# LOCAL_SIZE where torchrun says LOCAL_WORLD_SIZE; srun and Open MPI name their own.
_LOCAL = (
    ("LOCAL_RANK", ("LOCAL_WORLD_SIZE", "LOCAL_SIZE")),
    ("SLURM_LOCALID", ()),
    ("OMPI_COMM_WORLD_LOCAL_RANK", ("OMPI_COMM_WORLD_LOCAL_SIZE",)),
)


def _on_node(env: Mapping[str, str], rank: int, world: int) -> tuple[int, int, bool]:
    """``(local rank, processes on the node, whether the launcher said so)``.

    A launcher that gives no local rank leaves the node unknown: the process then counts as first
    and alone on its node (it measures the node's CPU and RAM), and the merge keeps one such
    measurement per machine (:mod:`tracker.logs.merge`). A local rank without the node's size counts
    up to its rank.
    """
    for rank_var, size_vars in _LOCAL:
        if env.get(rank_var, "") != "":
            local_rank = _int_var(env, rank_var, 0)
            sizes = [_int_var(env, name, 0) for name in size_vars]
            local_world = next((size for size in sizes if size), world if rank_var == "LOCAL_RANK" else 0)
            return local_rank, max(1, local_world, local_rank + 1), True
    if world == 1:
        return rank, 1, True
    return 0, 1, False


class Assignment(NamedTuple):
    """What one process measures: ``kinds`` (some of gpu, cpu, ram) and which GPUs (``None``: all it sees)."""

    kinds: tuple[str, ...]
    gpu_devices: tuple[int | str, ...] | None


def assign(
    measure: Sequence[str],
    local_rank: int,
    local_world_size: int,
    own: int | str | None = None,
    gpu_devices: Sequence[int | str] | None = None,
) -> Assignment:
    """What a process measures, by the rules of this module.

    Args:
        measure: the kinds asked for.
        local_rank: the process's rank on its node.
        local_world_size: how many processes its node runs.
        own: the device (UUID or index) this rank trains on, when known.
        gpu_devices: GPUs the user named; they win over ``own``.

    Returns:
        The kinds and GPUs; an empty ``kinds`` means this process measures nothing.
    """
    devices = tuple(gpu_devices) if gpu_devices is not None else (own,) if own is not None else None
    if local_world_size <= 1:
        return Assignment(tuple(measure), devices)
    kinds = tuple(k for k in measure if k == GPU or local_rank == 0)
    return Assignment(kinds, devices)


def job_dir_name(launch: Launch, run_name: str | None, host: str, parent_pid: int) -> str:
    """The job's run directory name, the same in every process of the job without asking the others.

    ``run_name`` when given, else from the job id; without either, the node's launcher process
    (every local rank's parent), so each node of such a job writes a directory of its own.
    """
    if run_name:
        return run_name
    if launch.job_id:
        prefix = {"TORCHELASTIC_RUN_ID": "torchrun", "SLURM_JOB_ID": "slurm", "SLURM_ARRAY_JOB_ID": "slurm",
                  "POD_NAME": "pod", "HOSTNAME": "pod", "lightning": "lightning"}  # fmt: skip
        label = prefix.get(launch.job_source or "", "job")
        return f"{label}-{re.sub(_UNSAFE, '_', launch.job_id)}"
    return f"job-{re.sub(_UNSAFE, '_', host)}-{parent_pid}"


def shard_name(host: str, rank: int) -> str:
    """A rank's shard directory name under ``<job>/ranks/``."""
    return f"{re.sub(_UNSAFE, '_', host)}-r{rank}"


__all__ = [
    "CPU",
    "GPU",
    "RAM",
    "Assignment",
    "Launch",
    "assign",
    "detect",
    "framework_launch",
    "job_dir_name",
    "shard_name",
]
