"""Epoch boundaries: each tool's per-epoch error for short epochs (1 s, 5 s, and 60 s in the full run).

The accuracy worker (:mod:`bench.scenarios.accuracy`) with the bursty square wave (50↔350 W at
0.3 s) inside epochs and 0.5 s idle at 60 W between them, so that energy put on the wrong side of a
boundary shows. With and without the energy counter.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.accuracy import case_params, cell, collect, jobs_for

# The jobs run bench.scenarios.accuracy.work; this module only plans them and reads them back.
LENGTHS = {"smoke": [(0.5, 2)], "quick": [(1.0, 3), (5.0, 2)], "full": [(1.0, 5), (5.0, 3), (60.0, 2)]}
GAP_S = 0.5


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import run_jobs

    cases = []
    for epoch_s, epochs in LENGTHS[ctx.mode]:
        for counter in (True, False):
            case = case_params("gaps", counter, {"epochs": epochs, "epoch_s": epoch_s, "gap_s": GAP_S})
            case.update(shape="square", case=f"{epoch_s:g} s/{'counter' if counter else 'polling'}")
            cases.append(case)
    jobs = jobs_for(ctx, cases)
    jobs.sort(key=lambda job: -job.params["epoch_s"])  # longest first, so the pool ends together
    results = run_jobs(jobs, parallel=ctx.parallel, progress=ctx.progress)
    return {"lengths": LENGTHS[ctx.mode], "cases": collect(jobs, results)}


def markdown(result: dict[str, Any]) -> str:
    from bench.report import table

    cases = result["cases"]
    names = list(dict.fromkeys(n for per in cases.values() for n in per))
    order = sorted(cases, key=lambda c: (float(c.split(" ")[0]), c))
    rows = [[case, *[cell(cases[case].get(n), "epoch") for n in names]] for case in order]
    counts = ", ".join(f"{n} × {s:g} s" for s, n in result["lengths"])
    head = (
        f"Epochs: {counts}; square wave 50↔350 W at 0.3 s inside, {GAP_S:g} s idle at 60 W between. "
        "Mean |error| (max |error|) per epoch.\n\n"
    )
    return head + table(["epoch length / GPU", *names], rows)
