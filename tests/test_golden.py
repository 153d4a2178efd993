"""Golden outputs: the report's text, markdown, JSON and CSV and the paper paragraph of a fixed run directory.

``tests/data/golden/resnet-sweep`` holds two finished runs (one GPU run, one CPU-only run, Germany's
grid) written by ``EnergyTracker`` with fake sensors; the expected renderings sit beside them in
``tests/data/golden/expected``. Three more sets, written by ``tests/data/golden/make_runs.py``, have their
paper paragraphs checked: ``grids-mixed`` (France twice, California, the world average, the authors' own
figure), ``grids-world`` (four runs on the world average) and ``pue-mixed`` (one grid, PUEs 1.1 and 1.5).
After an intended change, regenerate them with
``UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and read the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracker.report import paper
from tracker.report import render as report
from tracker.report.experiments import Recost, recost

DATA = Path(__file__).parent / "data" / "golden"
RUNS = DATA / "resnet-sweep"


def rendered(kind: str) -> str:
    if kind.startswith("paper-"):  # paper-<set>.txt: the paragraph of another set of runs
        runs = DATA / kind.removeprefix("paper-").removesuffix(".txt")
        return paper.paper_text(report.load_summaries([str(runs)], recursive=False))
    summaries = report.load_summaries([str(RUNS)], recursive=False)
    if kind.startswith("recosted."):
        summaries = recost(summaries, Recost.build(country="FRA", pue=1.1))
    text = paper.paper_text(summaries) if kind == "paper.txt" else report.render(summaries, kind.split(".")[-1])
    return text.replace(str(RUNS), "<RUNS>")


KINDS = ["report.text", "report.markdown", "report.json", "report.csv", "paper.txt", "recosted.txt", "recosted.csv",
         "paper-grids-mixed.txt", "paper-grids-world.txt", "paper-pue-mixed.txt"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_renderings_match_the_golden_files(kind):
    expected = DATA / "expected" / kind
    got = rendered(kind)
    if os.environ.get("UPDATE_GOLDEN"):
        expected.parent.mkdir(exist_ok=True)
        expected.write_text(got, encoding="utf-8")
    assert got == expected.read_text(encoding="utf-8")
