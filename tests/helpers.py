"""Helpers shared by tests: driving a tracker on a fake clock."""

from __future__ import annotations

import random

from tracker.session import EnergyTracker
from tracker.testing import FakeClock


def run_for(tracker: EnergyTracker, clock: FakeClock, seconds: float, interval_s: float = 1.0,
            jitter: float = 0.0, rng: random.Random | None = None) -> None:
    """Advance the fake clock by ``seconds``, ticking the sampler about every ``interval_s``."""
    rng = rng or random.Random(0)
    left = seconds
    while left > 1e-12:
        step = min(left, interval_s * (1 + rng.uniform(-jitter, jitter)))
        clock.advance(step)
        left -= step
        tracker._sampler.tick()
