"""Power traces laid out on a run's schedule of epochs and gaps, with their exact integrals.

The fake GPUs must exist before any tracker is imported (codecarbon calls ``nvmlInit`` at import),
but the epochs can only be scheduled once the tracker has started. :class:`LateTrace` therefore
draws ``idle_w`` until :meth:`LateTrace.schedule` lays the workload out from a moment in the
future; the integral stays continuous because everything before that moment was idle.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracker.testing import PowerTrace, ramp, sine, square_wave, steady

IDLE_W = 60.0
SQUARE_PERIOD_S = 0.3
# The table (#15): name -> (load, its period for the per-epoch phase).
TABLE_LOADS: dict[str, tuple[Callable[[], PowerTrace], float]] = {
    "square-0.3": (lambda: square_wave(100.0, 300.0, 0.3), 0.3),
    "square-7": (lambda: square_wave(80.0, 350.0, 7.0), 7.0),
    "sine-1.3": (lambda: sine(200.0, 100.0, 1.3), 1.3),
}
GOLDEN = 0.6180339887498949


@dataclass(frozen=True)
class Schedule:
    """When each epoch runs, in seconds of the trace's clock.

    Attributes:
        start_s: when epoch 0 begins.
        epoch_s: length of every epoch, s.
        gap_s: idle time between epochs, s.
        epochs: how many epochs.
    """

    start_s: float
    epoch_s: float
    gap_s: float
    epochs: int

    def epoch_start(self, k: int) -> float:
        """When epoch ``k`` begins, s."""
        return self.start_s + k * (self.epoch_s + self.gap_s)

    @property
    def end_s(self) -> float:
        """When the last epoch ends, s."""
        return self.epoch_start(self.epochs - 1) + self.epoch_s


def compose(segments: Sequence[tuple[float, PowerTrace]]) -> PowerTrace:
    """Concatenate traces: ``[(from_s, trace), ...]`` sorted, starting at 0; each runs on its local time."""
    starts = [start for start, _ in segments]
    traces = [trace for _, trace in segments]
    base = [0.0]
    for i in range(1, len(segments)):
        base.append(base[-1] + traces[i - 1].energy_j(starts[i] - starts[i - 1]))

    def index(t: float) -> int:
        return max(0, bisect.bisect_right(starts, t) - 1)

    def power(t: float) -> float:
        i = index(t)
        return traces[i].power_w(t - starts[i])

    def energy(t: float) -> float:
        i = index(t)
        return base[i] + traces[i].energy_j(t - starts[i])

    return PowerTrace(power, energy)


def epoch_load(shape: str, gpu: int, run_s: float) -> PowerTrace:
    """The load inside epochs: ``steady`` 250 W, ``square`` 50↔350 W at 0.3 s, ``ramp`` 50→350 W over the run.

    ``gaps`` is steady 300 W (its gaps are what matters). A second GPU always draws a steady 200 W,
    so that a tracker averaging GPUs instead of summing them shows.
    """
    if gpu > 0:
        return steady(200.0)
    if shape in TABLE_LOADS:
        return TABLE_LOADS[shape][0]()
    loads: dict[str, Callable[[], PowerTrace]] = {
        "steady": lambda: steady(250.0),
        "square": lambda: square_wave(50.0, 350.0, SQUARE_PERIOD_S),
        "ramp": lambda: ramp(50.0, 350.0, run_s),
        "gaps": lambda: steady(300.0),
    }
    return loads[shape]()


def phase_s(shape: str, gpu: int, k: int, since_start_s: float) -> float:
    """Where epoch ``k``'s load starts in its own time, s.

    A run-long ramp continues where it was; the square wave starts at a different phase in each
    epoch (golden-ratio steps, the same for every tool), as a training step's rhythm is not locked
    to the moment a tool samples; steady loads have no phase.
    """
    if gpu > 0:
        return 0.0
    if shape == "ramp":
        return since_start_s
    if shape == "square":
        return (k * GOLDEN % 1.0) * SQUARE_PERIOD_S
    if shape in TABLE_LOADS:
        return (k * GOLDEN % 1.0) * TABLE_LOADS[shape][1]
    return 0.0


def laid_out(shape: str, gpu: int, schedule: Schedule) -> PowerTrace:
    """Idle before the run and in the gaps, ``epoch_load`` in the epochs (see :func:`phase_s`)."""
    run_s = schedule.end_s - schedule.start_s
    load = epoch_load(shape, gpu, run_s)
    segments: list[tuple[float, PowerTrace]] = [(0.0, steady(IDLE_W))]
    for k in range(schedule.epochs):
        begin = schedule.epoch_start(k)
        offset = phase_s(shape, gpu, k, begin - schedule.start_s)
        segments.append((begin, _shifted(load, offset)))
        segments.append((begin + schedule.epoch_s, steady(IDLE_W)))
    return compose(segments)


def _shifted(trace: PowerTrace, offset_s: float) -> PowerTrace:
    if not offset_s:
        return trace
    return PowerTrace(
        lambda t: trace.power_w(t + offset_s), lambda t: trace.energy_j(t + offset_s) - trace.energy_j(offset_s)
    )


class LateTrace:
    """A trace that is idle until :meth:`schedule` is called, then follows the laid-out workload.

    Args:
        shape: the load shape (see :func:`epoch_load`).
        gpu: the GPU's index.
    """

    def __init__(self, shape: str, gpu: int) -> None:
        self.shape, self.gpu = shape, gpu
        self._trace = steady(IDLE_W)

    def schedule(self, schedule: Schedule) -> None:
        """Lay the workload out; ``schedule.start_s`` must lie in the future of every reading so far."""
        self._trace = laid_out(self.shape, self.gpu, schedule)

    def as_trace(self) -> PowerTrace:
        """The :class:`PowerTrace` to give a ``FakeGpu``; it follows later calls to :meth:`schedule`."""
        return PowerTrace(lambda t: self._trace.power_w(t), lambda t: self._trace.energy_j(t))
