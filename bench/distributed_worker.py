"""One rank of ``bench/distributed.py``: a loop of sleeping epochs under one tool, its per-epoch costs timed.

``python bench/distributed_worker.py OUT --tool ours|ours-alone|codecarbon [--epochs N] [--epoch-s S]``,
launched by ``torchrun``. The node's two fake GPUs (steady 200 W each, ``tracker.testing.fake_pynvml``
installed as ``pynvml`` before the tool is imported) are seen by every rank, as on a node where
``CUDA_VISIBLE_DEVICES`` is unset. Writes ``OUT/<tool>-r<rank>.json``: the time each epoch's
begin and end calls took, the stop's, the tool's own GPU energy, and the fakes' true energy over
the span from ``start()``'s return to the ``stop()`` call (the tools take their first reading in
``start()`` and their last in ``stop()``; a codecarbon duration in task mode is the last task's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GPU_W = 200.0
GPUS = 2
J_PER_KWH = 3_600_000


def install_fake_gpus() -> None:
    """Two steady 200 W GPUs behind the ``pynvml`` name, for every tool."""
    from tracker.testing import FakeGpu, fake_pynvml, steady

    sys.modules["pynvml"] = fake_pynvml([FakeGpu(trace=steady(GPU_W)) for _ in range(GPUS)])


class Ours:
    """``EnergyTracker``: ``distributed=None`` finds the job from torchrun's variables; ``False`` measures alone."""

    def __init__(self, out: Path, epochs: int, distributed: bool | None) -> None:
        from tracker import EnergyTracker

        self.tracker = EnergyTracker(out / "logs", epochs=epochs, country="DEU", distributed=distributed)

    def start(self) -> None:
        """Start measuring."""
        self.tracker.start()

    def begin(self, index: int) -> None:
        """Open epoch ``index``."""
        self.tracker.begin_epoch(index)

    def end(self, index: int) -> None:
        """Write the epoch's row (this rank's shard)."""
        self.tracker.end()

    def stop(self) -> float:
        """Stop (a rank of the job also merges the shards); this process's GPU energy, J."""
        return self.tracker.stop().gpu_kwh * J_PER_KWH


class Codecarbon:
    """codecarbon's ``OfflineEmissionsTracker``, a task per epoch, as its users run it in each rank."""

    def __init__(self, out: Path, epochs: int, distributed: bool | None) -> None:
        from codecarbon import OfflineEmissionsTracker

        self.tracker = OfflineEmissionsTracker(country_iso_code="DEU", output_dir=str(out), log_level="error")

    def start(self) -> None:
        """Start measuring."""
        self.tracker.start()

    def begin(self, index: int) -> None:
        """``start_task``."""
        self.tracker.start_task(f"epoch_{index}")

    def end(self, index: int) -> None:
        """``stop_task``."""
        self.tracker.stop_task()

    def stop(self) -> float:
        """Stop; codecarbon's GPU energy of this process, J."""
        self.tracker.stop()
        return self.tracker.final_emissions_data.gpu_energy * J_PER_KWH


TOOLS = {"ours": (Ours, None), "ours-alone": (Ours, False), "codecarbon": (Codecarbon, None)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--tool", choices=sorted(TOOLS), required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--epoch-s", type=float, default=0.5)
    args = parser.parse_args()
    install_fake_gpus()
    cls, distributed = TOOLS[args.tool]
    tool = cls(args.out, args.epochs, distributed)
    tool.start()
    started = time.monotonic()
    costs = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        tool.begin(epoch)
        t1 = time.perf_counter()
        time.sleep(args.epoch_s)
        t2 = time.perf_counter()
        tool.end(epoch)
        costs.append((t1 - t0) + (time.perf_counter() - t2))
    t3, stopping = time.perf_counter(), time.monotonic()
    gpu_j = tool.stop()
    stop_s = time.perf_counter() - t3
    span_s = stopping - started  # from the first reading (start() returned) to the last (stop() called)
    rank = int(os.environ.get("RANK", "0"))
    result = {"epoch_cost_s": costs, "stop_s": stop_s, "gpu_j": gpu_j, "true_gpu_j": GPU_W * GPUS * span_s}
    (args.out / f"{args.tool}-r{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
