"""Fixtures of the reliability suite."""

from __future__ import annotations

import pytest


@pytest.fixture
def paths(tmp_path):
    """Files and directories that make bad paths, and malformed intensity CSVs."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory\n")
    csvs = {
        "header": "when,value\n2024-01-01T00:00Z,300\n",
        "value": "timestamp,g_per_kwh\n2024-01-01T00:00Z,lots\n",
        "negative": "timestamp,g_per_kwh\n2024-01-01T00:00Z,-3\n",
        "gap": "timestamp,g_per_kwh\n2024-01-01T00:00Z,300\n2024-01-01T02:00Z,300\n",
        "minute": "timestamp,g_per_kwh\n2024-01-01T00:30Z,300\n",
        "fields": "timestamp,g_per_kwh\n2024-01-01T00:00Z,300,1\n",
        "empty": "",
    }
    for name, text in csvs.items():
        (tmp_path / f"{name}.csv").write_text(text)
    return {"file": a_file, "dir": tmp_path}
