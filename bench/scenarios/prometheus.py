"""Prometheus: what an endpoint scraped every 100 ms costs the training thread (issue 22).

One fresh process, the real monotonic clock, 8 fake GPUs with energy counters, the sampler at its
default interval, a row every 100 steps (so the counters move). The training thread runs steps of
a fixed CPU-bound work (about 1 ms of pure Python) back to back; blocks of 1,000 steps alternate
between a tracker with ``prometheus_port`` on 127.0.0.1, scraped every 100 ms by another process that GETs
``/metrics`` as Prometheus does, and a tracker without it. Per step: µs, median of each kind of
block; the difference is what the endpoint costs, beside the block-to-block spread.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

BLOCKS = {"smoke": 2, "quick": 6, "full": 20}
STEPS, ROW_EVERY, SCRAPE_S = 1_000, 100, 0.1


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, run_jobs

    (result,) = run_jobs([Job("prometheus", {"blocks": BLOCKS[ctx.mode]}, timeout_s=1800.0)], parallel=1,
                         progress=ctx.progress)  # fmt: skip
    return {"prometheus": result}


# Scrapes the endpoint every interval until a line comes on stdin; prints how many scrapes it made.
SCRAPER = """
import sys, threading, urllib.request
url, interval, done, n = sys.argv[1], float(sys.argv[2]), threading.Event(), 0
threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
while not done.wait(interval):
    with urllib.request.urlopen(url, timeout=5.0) as reply:
        reply.read()
    n += 1
print(n)
"""


def _work_unit() -> int:
    total = 0
    for i in range(20_000):
        total += i * i % 7
    return total


def _block(scraped: bool) -> tuple[list[float], int]:
    """One tracker, ``STEPS`` steps; returns µs per step and the scrapes made."""
    from tracker import EnergyTracker
    from tracker.testing import FakeGpu, FakeNvml, steady

    nvml = FakeNvml([FakeGpu(trace=steady(300.0)) for _ in range(8)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {"prometheus_port": f"127.0.0.1:{port}"} if scraped else {}
    per_step = []
    with tempfile.TemporaryDirectory() as tmp:
        energy = EnergyTracker(tmp, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=400.0,
                               row_every_n_steps=ROW_EVERY, **options)  # fmt: skip
        with energy, energy.epoch(0):
            scraper = None
            if scraped:  # another process, as Prometheus is (the bench worker's audit hook blocks connections)
                url = f"http://127.0.0.1:{port}/metrics"
                scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, url, str(SCRAPE_S)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
                time.sleep(0.3)  # its interpreter started
            for _ in range(STEPS):
                started = time.perf_counter_ns()
                _work_unit()
                energy.step()
                per_step.append((time.perf_counter_ns() - started) / 1000)
            scrapes = int(scraper.communicate("stop\n", timeout=30)[0] or 0) if scraper else 0
    return per_step, scrapes


def work(params: dict[str, Any]) -> dict[str, Any]:
    """The blocks, alternating, each in a process of its own.

    The bench worker's audit hook blocks name lookups and connections, loopback included, which an
    endpoint needs: each block runs in a fresh interpreter without it (this module run as a script).
    """
    on: list[float] = []
    off: list[float] = []
    scrapes = 0
    for block in range(params["blocks"]):
        scraped = block % 2 == 0
        done = subprocess.run([sys.executable, "-m", "bench.scenarios.prometheus", "on" if scraped else "off"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
        times, made = json.loads(done.stdout.strip().splitlines()[-1])
        (on if scraped else off).append(statistics.median(times))
        scrapes += made
    return {"on_us": on, "off_us": off, "scrapes": scrapes, "blocks": params["blocks"]}


def markdown(result: dict[str, Any]) -> str:
    from bench.report import table

    p = result["prometheus"]
    if "on_us" not in p:
        return f"prometheus: error: {p.get('error')}"
    on, off = statistics.median(p["on_us"]), statistics.median(p["off_us"])
    spread = max(p["off_us"]) - min(p["off_us"]) if len(p["off_us"]) > 1 else float("nan")
    body = [
        ["µs per training step, endpoint scraped every 100 ms (median of block medians)", f"{on:,.1f}"],
        ["µs per training step, no endpoint", f"{off:,.1f}"],
        ["difference, µs (spread of the no-endpoint blocks)", f"{on - off:+,.1f} ({spread:,.1f})"],
    ]
    return "\n".join([
        f"**Prometheus**: 8 fake GPUs, a row every {ROW_EVERY} steps, blocks of {STEPS:,} steps of ~1 ms of "
        f"Python work alternating with and without the endpoint ({p['blocks']} blocks, {p['scrapes']} scrapes).",
        "",
        table(["", "value"], body),
    ])  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(_block(scraped=sys.argv[1] == "on")))
