"""The README's column lists are what the tracker writes."""

from __future__ import annotations

import re
from pathlib import Path

from tracker.logs.schema import DEVICE_COLUMNS, EPOCH_COLUMNS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_epochs_csv_columns_in_the_readme_match_the_schema():
    listed = re.search(r"`epochs.csv` columns \(units in the names\): `([^`]*)`", README).group(1)
    assert [c.strip() for c in listed.split(",")] == list(EPOCH_COLUMNS)


def test_devices_csv_columns_in_the_readme_match_the_schema():
    listed = re.search(r"\| `devices.csv` \| one row per epoch × device: `([^`]*)` \|", README).group(1)
    assert [c.strip() for c in listed.split(",")] == list(DEVICE_COLUMNS)
