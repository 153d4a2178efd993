"""A real CUDA training loop under one tracker (run by ``bench/gpu.py`` on a machine with an NVIDIA GPU).

A small convolutional network on synthetic 32×32 images, fixed steps per epoch, each epoch closed
by ``torch.cuda.synchronize()`` before the tracker's boundary call. Reports throughput, the tool's
GPU energy per epoch and in all, and, for ours, the counter against the integral of the power
readings beside it (``devices.csv``: ``energy_kwh`` against ``integrated_kwh``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def _model_and_step(batch: int) -> Any:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(64, 128, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(8),
        torch.nn.Flatten(),
        torch.nn.Linear(128 * 64, 10),
    ).cuda()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()

    return step


def _counter_vs_integral(run_dir: Path) -> dict[str, float] | None:
    from tracker import load_run

    rows = [r for r in load_run(run_dir).devices if r["kind"] == "gpu" and r.get("integrated_kwh") not in (None, "")]
    counter = sum(float(r["energy_kwh"]) for r in rows)
    integral = sum(float(r["integrated_kwh"]) for r in rows)
    if not counter:
        return None
    return {"counter_kwh": counter, "integral_kwh": integral, "integral_over_counter": integral / counter}


def work(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from bench import adapters

    if not torch.cuda.is_available():
        return {"error": "no CUDA GPU visible"}
    step = _model_and_step(params["batch"])
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    adapter = adapters.make(params["tracker"])
    adapter.import_tool()
    epochs, steps = params["epochs"], params["steps"]
    adapter.start(epochs=epochs, workdir=Path.cwd())
    t0 = time.perf_counter()
    for epoch in range(epochs):
        adapter.begin(epoch)
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        adapter.end(epoch)
    wall = time.perf_counter() - t0
    adapter.stop()
    result = {"steps_per_s": epochs * steps / wall, "wall_s": wall, "device": torch.cuda.get_device_name(0)}
    result.update(adapter.results())
    if isinstance(adapter, adapters.Ours):
        result["counter_vs_integral"] = _counter_vs_integral(adapter.tracker.run_dir)
    return result
