"""Entry point of every bench process: ``python -m bench.worker '<json>'``.

Installs the audit hook before anything else, runs ``bench.scenarios.<scenario>.work(params)``
and prints its result as one JSON line after :data:`bench.runner.MARK`. Only the standard library
is imported before the scenario runs, so that import timings start from a bare interpreter.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback

from bench import audit

MARK = "BENCH-RESULT "  # bench.runner.MARK; not imported, to keep this process's imports minimal


def main(argv: list[str]) -> int:
    audit.install()
    payload = json.loads(argv[1])
    try:
        module = importlib.import_module(f"bench.scenarios.{payload['scenario']}")
        result = module.work(payload["params"])
    except Exception as exc:  # report the failure as a result; the orchestrator shows it in the tables
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    sys.stdout.flush()
    print(MARK + json.dumps(result, default=float), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
