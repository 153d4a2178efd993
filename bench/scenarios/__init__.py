"""Benchmark scenarios: each module has ``work(params)`` (runs in a worker) and ``run(ctx)`` (the plan)."""
