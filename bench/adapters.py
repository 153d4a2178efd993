"""One small adapter per tracker, so that every scenario drives each tool the same way.

Each adapter is used inside a bench worker (a fresh process): ``import_tool()``, ``start()``
(construct and start), ``begin(i)``/``end(i)`` around each epoch, ``stop()``, then ``results()``
with the tool's own GPU figures in J. What each tool needed is in ``bench/README.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

J_PER_KWH = 3_600_000
COUNTRY = "DEU"

# name -> (tool, options); the names are the columns of every table.
SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "none": ("none", {}),
    "ours": ("ours", {}),
    "ours-1s": ("ours", {"interval_s": 1.0}),
    "ours-0.1s": ("ours", {"interval_s": 0.1}),
    "ours-0.05s": ("ours", {"interval_s": 0.05}),
    "codecarbon-15s": ("codecarbon", {"measure_power_secs": 15}),
    "codecarbon-1s": ("codecarbon", {"measure_power_secs": 1}),
    "carbontracker": ("carbontracker", {}),
}


class NoTracker:
    """The baseline: does nothing."""

    def import_tool(self) -> None:
        """Nothing to import."""

    def start(self, epochs: int, workdir: Path, gpu_only: bool = False) -> None:
        """Nothing to start."""

    def begin(self, index: int) -> None:
        """Nothing to mark."""

    def end(self, index: int) -> None:
        """Nothing to mark."""

    def stop(self) -> None:
        """Nothing to stop."""

    def results(self) -> dict[str, Any]:
        """No figures."""
        return {}


class Ours(NoTracker):
    """training-energy-tracker's ``EnergyTracker``, per-epoch rows through ``begin_epoch``/``end``.

    Args:
        interval_s: the sampling interval, s; ``None`` is the tracker's default.
    """

    def __init__(self, interval_s: float | None = None) -> None:
        self.interval_s = interval_s
        self.tracker: Any = None

    def import_tool(self) -> None:
        """Import what ``EnergyTracker`` needs."""
        from tracker import EnergyTracker

        self._cls = EnergyTracker

    def start(self, epochs: int, workdir: Path, gpu_only: bool = False) -> None:
        """Construct and start, writing logs under ``workdir``."""
        options: dict[str, Any] = {"log_dir": workdir / "energy", "country": COUNTRY, "epochs": epochs}
        if self.interval_s is not None:
            options["interval_s"] = self.interval_s
        if gpu_only:
            options["measure"] = ("gpu",)
        self.tracker = self._cls(**options)
        self.tracker.start()

    def begin(self, index: int) -> None:
        """Open epoch ``index``."""
        self.tracker.begin_epoch(index)

    def end(self, index: int) -> None:
        """Close the open epoch (its row is written)."""
        self.tracker.end()

    def stop(self) -> None:
        """Stop and keep the summary."""
        self.summary = self.tracker.stop()

    def results(self) -> dict[str, Any]:
        """Per-epoch GPU energy and band from ``epochs.csv``; the run's total and band from the summary."""
        from tracker import load_run

        rows = sorted((r for r in load_run(self.tracker.run_dir).epochs if r["phase"] == "train"), key=_epoch)
        s = self.summary
        return {
            "interval_s": self.tracker.interval_s,
            "epoch_gpu_j": [float(r["gpu_kwh"]) * J_PER_KWH for r in rows],
            "epoch_band_j": [[float(r[f"energy_kwh_{end}"]) * J_PER_KWH for end in ("low", "high")] for r in rows],
            "total_gpu_j": s.gpu_kwh * J_PER_KWH,
            "total_band_j": [s.energy_kwh_low * J_PER_KWH, s.energy_kwh_high * J_PER_KWH],
            "gpu_method": s.gpu_method,
        }


def _epoch(row: dict[str, Any]) -> int:
    return int(row["epoch"])


class Codecarbon(NoTracker):
    """codecarbon's ``OfflineEmissionsTracker``.

    Args:
        measure_power_secs: its measurement interval, s (default 15).
        per_epoch: ``"task"`` (``start_task``/``stop_task``, which give a per-epoch figure) or
            ``"flush"`` (``flush()`` at each epoch end, as its Keras example does).
    """

    def __init__(self, measure_power_secs: float = 15, per_epoch: str = "task") -> None:
        self.measure_power_secs, self.per_epoch = measure_power_secs, per_epoch
        self.epoch_j: list[float] = []

    def import_tool(self) -> None:
        """Import codecarbon (this initialises NVML)."""
        from codecarbon import OfflineEmissionsTracker

        self._cls = OfflineEmissionsTracker

    def start(self, epochs: int, workdir: Path, gpu_only: bool = False) -> None:
        """Construct offline (country given) and start; its CSV goes to ``workdir``."""
        self.tracker = self._cls(
            country_iso_code=COUNTRY, measure_power_secs=self.measure_power_secs, output_dir=str(workdir)
        )
        self.tracker.start()

    def begin(self, index: int) -> None:
        """``start_task`` in task mode."""
        if self.per_epoch == "task":
            self.tracker.start_task(f"epoch_{index}")

    def end(self, index: int) -> None:
        """``stop_task`` (keeping its GPU energy) or ``flush``."""
        if self.per_epoch == "task":
            data = self.tracker.stop_task()
            self.epoch_j.append(data.gpu_energy * J_PER_KWH if data is not None else float("nan"))
        else:
            self.tracker.flush()

    def stop(self) -> None:
        """``stop()``."""
        self.tracker.stop()

    def results(self) -> dict[str, Any]:
        """Per-task GPU energy and the run's GPU energy from ``stop()``."""
        final = getattr(self.tracker, "final_emissions_data", None)
        return {
            "epoch_gpu_j": list(self.epoch_j),
            "total_gpu_j": final.gpu_energy * J_PER_KWH if final is not None else None,
        }


class Carbontracker(NoTracker):
    """carbontracker's ``CarbonTracker`` with its defaults, except ``ignore_errors=True``.

    With ``ignore_errors=False`` (its default) a failure in its monitoring thread calls
    ``os._exit(70)`` and one in the constructor ``sys.exit(70)``, killing the benchmark.
    """

    def import_tool(self) -> None:
        """Import carbontracker."""
        from carbontracker.tracker import CarbonTracker

        self._cls = CarbonTracker

    def start(self, epochs: int, workdir: Path, gpu_only: bool = False) -> None:
        """Construct (which starts its threads); keep its monitoring thread for the figures."""
        self.tracker = self._cls(epochs=epochs, ignore_errors=True)
        self.thread = getattr(self.tracker, "tracker", None)

    def begin(self, index: int) -> None:
        """``epoch_start()``."""
        self.tracker.epoch_start()

    def end(self, index: int) -> None:
        """``epoch_end()``."""
        self.tracker.epoch_end()

    def stop(self) -> None:
        """``stop()`` (a no-op once all epochs ended)."""
        self.tracker.stop()

    def results(self) -> dict[str, Any]:
        """Per-epoch GPU energy of its ``gpu`` component, before its PUE of 1.58, and their sum."""
        gpu = next((c for c in getattr(self.thread, "components", []) if c.name == "gpu"), None)
        if gpu is None:
            return {"epoch_gpu_j": [], "total_gpu_j": None}
        epochs = [float(e) * J_PER_KWH for e in gpu.energy_usage(self.thread.epoch_times)]
        return {"epoch_gpu_j": epochs, "total_gpu_j": sum(epochs)}


_TOOLS = {"none": NoTracker, "ours": Ours, "codecarbon": Codecarbon, "carbontracker": Carbontracker}


def make(name: str, **extra: Any) -> NoTracker:
    """The adapter for a tracker name of :data:`SPECS`, with ``extra`` options for its constructor."""
    tool, options = SPECS[name]
    return _TOOLS[tool](**options, **extra)
