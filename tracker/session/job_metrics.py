"""What the sinks log: ``energy/*`` metrics of this run's rows, or under a distributed job of the job's.

Outside a job each row written becomes its metrics (:class:`OwnRows`). Under a launcher with several
ranks, global rank 0's sinks log the job's figures (:class:`JobRows`): every rank's rows, merged as
they come (:class:`~tracker.logs.follow.JobFollower`, only what was appended since the last look),
read on the sink thread, never on the training thread. A merged row is sent once every rank's row is
in it, or once a later row is (every rank has written past it: an ``other`` row one rank never
wrote, a rank behind); at the tracker's stop, once every rank has stopped (or after
:data:`JOB_GRACE_S`), whatever is left is sent. ``energy/ranks_share`` says which share of the ranks
each row held when it was sent; the totals are every row read so far, every rank's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tracker.logs.schema import EpochRecord
from tracker.logs.totals import Totals
from tracker.session.vocabulary import RANKS_SHARE, EnergyMetrics

Sent = list[tuple[dict[str, float], int]]  # each row's metrics and the step to log them at

# How long rank 0's sinks wait at its stop for the other ranks to stop (their last rows), s.
JOB_GRACE_S = 10.0
# How often the sink thread looks at the job's files while a row waits for another rank's, s.
POLL_S = 1.0


class OwnRows:
    """This run's rows as they are written: each one's metrics at once.

    Args:
        totals: the run's totals before its first row here (a resumed run's so far; none by default).
    """

    waiting = False

    def __init__(self, totals: Totals | None = None) -> None:
        self._metrics = EnergyMetrics()
        self._totals = totals or Totals()

    def on_row(self, row: EpochRecord) -> Sent:
        """The metrics of the row just written."""
        record = row._asdict()
        self._totals = self._totals.plus(record)
        return [self._metrics.of(record, self._totals)]

    def look(self) -> Sent:
        """Nothing: every row is sent as it is written."""
        return []

    def finish(self) -> Sent:
        """Nothing is left to send."""
        return []


class JobRows:
    """The job's rows merged across its ranks (see the module), each sent once.

    Args:
        follower: a :class:`~tracker.logs.follow.JobFollower` of the job's directory, for this thread alone.
        since_utc: this tracker's start; rows that ended before it (a resumed job's) count in the
            totals but are not sent again.
        grace_s: how long :meth:`finish` waits for every rank to stop.
        sleep: waits between two looks at the end (injected by tests).
    """

    def __init__(
        self, follower: Any, since_utc: str, grace_s: float = JOB_GRACE_S, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._follower, self._since, self._grace_s, self._sleep = follower, since_utc, grace_s, sleep
        self._metrics = EnergyMetrics()
        self._sent = 0
        self.waiting = False  # a row read is not sent yet: the sink thread looks again within POLL_S

    def on_row(self, row: EpochRecord) -> Sent:
        """This rank wrote a row: look at the job's files."""
        return self.look()

    def look(self) -> Sent:
        """The rows settled since the last look: up to the last one every rank's row is in."""
        rows = self._follower.rows()
        settled = max((i + 1 for i, r in enumerate(rows) if r["ranks"] >= r["world_size"]), default=0)
        return self._send(rows, settled)

    def finish(self) -> Sent:
        """At stop: wait (at most the grace) until every rank has stopped, then send every row left."""
        deadline = time.monotonic() + self._grace_s
        rows = self._follower.rows()  # each look reads the shards' run.json again: a rank's stop is seen
        while not self._follower.finished() and time.monotonic() < deadline:
            self._sleep(0.1)
            rows = self._follower.rows()
        return self._send(rows, len(rows))

    def _send(self, rows: list[dict[str, Any]], upto: int) -> Sent:
        """The metrics of ``rows[sent:upto]``, the totals of every row read so far."""
        totals = Totals.of(rows)
        sent = []
        for row in rows[self._sent : upto]:
            metrics, step = self._metrics.of(row, totals)
            if str(row["end_utc"]) >= self._since:
                sent.append(({**metrics, RANKS_SHARE: row["ranks"] / row["world_size"]}, step))
        self._sent = max(self._sent, upto)
        self.waiting = self._sent < len(rows)
        return sent
