"""``Job``: this process's part in its job, what ``EnergyTracker`` asks about anything distributed.

Every way in (a plain script, torchrun, ``accelerate``, SLURM and MPI launchers, the Hugging Face
Trainer, Lightning) meets the same model: every rank writes a shard of its own under the job's
directory (``<log_dir>/<job>/ranks/<host>-r<rank>/``), no rank waits for another, and the job is
merged when it is read (:mod:`tracker.logs.merge`, :mod:`tracker.logs.follow`). This object holds:

- placement: the :class:`~tracker.job.placement.Launch` (from the launcher's variables, or given by a
  framework that knows it) and what this process measures (:func:`~tracker.job.placement.assign`);
- the job directory and the shard's name (:func:`~tracker.job.placement.job_dir_name`, ``shard_name``);
- identity: the writing process (:func:`~tracker.logs.liveness.this_process`), which with the launch's
  restart count and world size tells one attempt of the job from another when its shards are merged;
- what the tracker needs of the merge: the job's files at stop (:func:`~tracker.logs.jobfiles.write_job`)
  and its rows so far (:class:`~tracker.logs.follow.JobFollower`).

The merge, following and liveness stay in :mod:`tracker.logs`: they are the reader's side (the
report, ``watch`` and ``load_run`` read a job with them, from files alone), and the reader sits below
the session; this folder is the writer's side of the same files, between the two.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.job import placement
from tracker.logs import liveness
from tracker.logs.schema import SHARDS_DIR
from tracker.logs.writer import new_run_dir

logger = logging.getLogger(__name__)


class Job:
    """This process's part in its job: placement, directory, identity, the job's rows (see the module).

    Args:
        distributed: ``True`` a rank writing its shard, ``False`` alone, ``None`` as the launcher says.
        job_id: the job's id when given (else the launcher's or the scheduler's).
        rank: this process's rank when no launcher says it.
        launch: this process's place as a framework that started the ranks says it (Lightning's), if any.
        host: this machine's name.
    """

    def __init__(
        self, distributed: bool | None, job_id: str | None, rank: int, *, launch: placement.Launch | None, host: str
    ) -> None:
        self.host = host
        self.sharded = False
        self.launch = self._place(distributed, job_id, rank, launch)
        self.process = liveness.this_process()
        self.dir: Path | None = None
        self._follower: Any = None  # a tracker.logs.follow.JobFollower once rows() is asked

    def _place(
        self, distributed: bool | None, job_id: str | None, rank: int, given: placement.Launch | None
    ) -> placement.Launch:
        """Where this process sits: the launcher's (or the framework's) ranks when sharded, else ``rank`` alone."""
        if distributed is False:
            # this process measures alone: the job id is for the rows
            found, source = placement.job_id_from(os.environ, job_id)
            return placement.Launch(rank=given.rank if given else rank, job_id=found, job_source=source)
        launch = given or placement.detect(job_id=job_id)
        if distributed is None and not launch.distributed:
            return placement.Launch(rank=rank, job_id=launch.job_id, job_source=launch.job_source)
        self.sharded = True
        return launch

    @property
    def rank(self) -> int:
        """This process's global rank."""
        return self.launch.rank

    @property
    def writes(self) -> bool:
        """Whether this process writes rows: rank 0, or every rank writing its own shard."""
        return self.rank == 0 or self.sharded

    def kinds(self, measure: Sequence[str]) -> tuple[str, ...]:
        """The kinds of ``measure`` this process measures (CPU and RAM by one rank per node)."""
        return placement.assign(measure, self.launch.local_rank, self.launch.local_world_size).kinds

    def tree_root(self) -> int:
        """The pid whose process tree this rank's CPU share counts: the node's launcher when it runs several ranks."""
        return os.getppid() if self.launch.local_world_size > 1 else os.getpid()

    def run_dir(self, log_dir: Path, run_name: str | None, reopened: Path | None) -> Path:
        """The run directory this process writes: ``reopened`` (a resumed run's), else a new one.

        Sharded, a new one is this rank's shard under the job's directory, and a resumed shard keeps its
        job; a state saved by another rank (Lightning's checkpoint holds rank 0's) names this rank's own shard
        beside it, so that no two ranks write one shard.
        """
        if reopened is not None:
            if not (self.sharded and reopened.parent.name == SHARDS_DIR):
                return reopened
            self.dir = reopened.parent.parent
            own = reopened.parent / placement.shard_name(self.host, self.rank)
            return own if own.is_dir() else new_run_dir(own.parent, own.name)
        if not self.sharded:
            return new_run_dir(log_dir, run_name)
        launch = self.launch
        if launch.world_size > launch.local_world_size and not (run_name or launch.job_id):
            logger.warning(
                "energy-tracker: a job on several nodes without a job id (TORCHELASTIC_RUN_ID is 'none', no "
                "SLURM_JOB_ID): each node writes a job directory of its own; give run_name= or job_id=, or "
                "torchrun --rdzv-id, for one"
            )
        self.dir = log_dir / placement.job_dir_name(launch, run_name, self.host, os.getppid())
        shards = self.dir / SHARDS_DIR
        shards.mkdir(parents=True, exist_ok=True)  # every rank may come first; none waits for another
        return new_run_dir(shards, placement.shard_name(self.host, self.rank))

    def finish(self) -> None:
        """At stop: the job's merged files, written by whichever rank finds no merge under way."""
        if self.dir is not None:
            from tracker.logs.jobfiles import write_job  # the reader's side: a job's, at stop

            write_job(self.dir)

    def follower(self, where: Path | None = None) -> Any:
        """A :class:`~tracker.logs.follow.JobFollower` of its own, of ``where`` (default the job's directory).

        One per reading thread: the sinks' thread follows the job with one, ``rows`` with another.
        """
        from tracker.logs.follow import JobFollower  # the reader's side: only for a caller that follows

        return JobFollower(where or self.dir)

    def rows(self, run_dir: Path | None) -> list[dict[str, Any]]:
        """The job's rows so far (``run_dir``'s alone outside a job), merged as they come; see ``job_rows``."""
        where = self.dir or run_dir
        if where is None:
            return []
        if self._follower is None:
            self._follower = self.follower(where)
        return self._follower.rows()


__all__ = ["Job"]
