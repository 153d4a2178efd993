"""Benchmarks of training-energy-tracker side by side with codecarbon and carbontracker.

Run ``python bench/run.py`` (``--quick`` for a short run); see ``bench/README.md``. Nothing here is
imported by the package or by its unit tests.
"""
