"""The benchmarks still run: ``bench/run.py --smoke`` on tiny sizes, ours and no tracker only.

Never asserts a timing; only that every scenario ran and produced its figures.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_runs_and_writes_results(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--smoke",
            "--only",
            "startup,micro,accuracy",
            "--trackers",
            "none,ours",
            "--out",
            str(tmp_path),
            "--no-readme",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [result_file] = tmp_path.glob("*-smoke.json")
    results = json.loads(result_file.read_text())["results"]
    assert set(results["startup"]["summary"]) == {"none", "ours-1s", "ours-0.1s"}
    assert all(not s["errors"] for s in results["startup"]["summary"].values())
    assert [m["readings"] for m in results["micro"]["memory"]] == [10_000, 10_000]
    assert "error" not in results["micro"]["ticks"]
    cases = results["accuracy"]["cases"]
    assert len(cases) == 10
    assert all(set(per) == {"ours"} and "error" not in per["ours"] for per in cases.values())
    assert "#### Goals" in done.stdout
