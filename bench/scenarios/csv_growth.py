"""The cost of writing one ``epochs.csv`` row as a run grows, when every epoch logs a metric key never seen before.

``python -m bench.scenarios.csv_growth [--epochs N]``: a :class:`~tracker.logs.writer.RunWriter`
writes N epoch rows (every column of :class:`~tracker.logs.schema.EpochRecord` filled, one device
row each), each with a new metric key; prints the median wall time of ``write_epoch`` (one row,
fsynced) around epoch 10 and around the last epoch, in ms, wall time (the fsync included, so
the disk's noise too) and this process's CPU time (the copying and formatting alone).
A flat cost: both alike. Timings only, never asserted by a test (``bench/README.md`` has the figures).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _row(epoch: int) -> dict[str, Any]:
    from tracker.logs.schema import EPOCH_TYPES

    filler = {int: epoch, float: 0.123456789 * (epoch + 1), str: "train"}
    return {**{name: filler[kind] for name, kind in EPOCH_TYPES.items()}, "loss": 1.0 / (epoch + 1),
            f"key_{epoch}": epoch}  # fmt: skip


def _device(epoch: int) -> dict[str, Any]:
    from tracker.logs.schema import DEVICE_TYPES

    filler = {int: epoch, float: 0.5, str: "gpu:0"}
    return {name: filler[kind] for name, kind in DEVICE_TYPES.items()}


def per_epoch_ms(epochs: int, window: int = 11) -> dict[str, float]:
    """Median ``write_epoch`` time (ms) over ``window`` epochs centred on epoch 10 and on the last epochs."""
    from tracker.logs.writer import RunWriter

    wall, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(Path(tmp))
        for epoch in range(epochs):
            row, device = _row(epoch), _device(epoch)
            t0, c0 = time.perf_counter(), time.process_time()
            writer.write_epoch(row, [device])
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        size_kb = (Path(tmp) / "epochs.csv").stat().st_size / 1024
    half = window // 2
    return {
        "epoch 10, wall (ms)": statistics.median(wall[10 - half : 10 + half + 1]),
        f"epoch {epochs}, wall (ms)": statistics.median(wall[-window:]),
        "epoch 10, CPU (ms)": statistics.median(cpu[10 - half : 10 + half + 1]),
        f"epoch {epochs}, CPU (ms)": statistics.median(cpu[-window:]),
        "epochs.csv (KiB)": size_kb,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1500)
    args = parser.parse_args(argv)
    for name, value in per_epoch_ms(args.epochs).items():
        print(f"{name}: {value:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
