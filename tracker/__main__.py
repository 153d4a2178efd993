"""``python -m tracker``: the ``energy-tracker`` command."""

from tracker.cli import main

raise SystemExit(main())
