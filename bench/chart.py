"""The results chart: start-up, training overhead and accuracy of each tracker, side by side (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {
    "ours": "#1b7837",
    "ours-1s": "#1b7837",
    "ours-0.1s": "#7fbf7b",
    "codecarbon-15s": "#2166ac",
    "codecarbon-1s": "#67a9cf",
    "carbontracker": "#b2182b",
    "none": "#999999",
}


FLOOR_PCT = 1e-3  # errors below this are drawn at it, labelled "<0.001"


def _color(name: str) -> str:
    return COLORS.get(name, "#555555")


def _startup(ax: Any, startup: dict[str, Any]) -> None:
    names = [n for n in startup["summary"] if n != "none"]
    imports = [(startup["summary"][n]["import_s"]["median"] or 0) * 1000 for n in names]
    starts = [(startup["summary"][n]["start_stop_s"]["median"] or 0) * 1000 for n in names]
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], imports, height=0.4, color=[_color(n) for n in names], alpha=0.5, label="import")
    ax.barh([i - 0.2 for i in y], starts, height=0.4, color=[_color(n) for n in names], label="start+stop")
    ax.set_yticks(list(y), names)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log), median; pale: import, dark: start+stop")
    ax.set_title("Start-up cost")


def _overhead(ax: Any, overhead: dict[str, Any]) -> None:
    names = [n for n in overhead["summary"] if n != "none"]
    ratios = [overhead["summary"][n]["cost_ratio"] for n in names]
    y = list(range(len(names)))
    med = [r["median"] or 0 for r in ratios]
    err = [[m - (r["min"] or m) for m, r in zip(med, ratios, strict=True)]]
    err.append([(r["max"] or m) - m for m, r in zip(med, ratios, strict=True)])
    ax.barh(y, [m - 1 for m in med], left=1, xerr=err, color=[_color(n) for n in names], capsize=3)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(0.998, color="gray", linestyle="--", linewidth=0.8)
    ax.set_yticks(y, names)
    ax.set_xlabel("throughput ÷ no tracker, from measured costs (dashed: goal 0.998)")
    ax.set_title("Training overhead")


def _accuracy(ax: Any, accuracy: dict[str, Any]) -> None:
    cases = accuracy["cases"]
    names = list(dict.fromkeys(n for per in cases.values() for n in per))
    width = 0.8 / max(1, len(names))
    for j, path in enumerate(("counter", "polling")):
        for i, name in enumerate(names):
            errs = [
                per[name]["epoch_abs_mean"]
                for case, per in cases.items()
                if case.endswith(path) and name in per and per[name].get("epoch_abs_mean") is not None
            ]
            mean = sum(errs) / len(errs) * 100 if errs else None
            value = max(mean or 0.0, FLOOR_PCT)
            x = j + (i - (len(names) - 1) / 2) * width
            ax.bar(x, value, width, color=_color(name), label=name if j == 0 else None)
            text = "–" if mean is None else f"{mean:.2g}" if mean >= FLOOR_PCT else f"<{FLOOR_PCT:g}"
            ax.text(x, value, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks([0, 1], ["energy counter", "power polling"])
    ax.set_yscale("log")
    ax.set_ylabel("mean |per-epoch error| %, over all load shapes (log)")
    ax.set_title("Accuracy on a fake GPU of known energy")
    ax.legend(fontsize=7)


def draw(results: dict[str, Any], path: Path) -> Path | None:
    """Draw what the results hold into ``path``; ``None`` when matplotlib or every scenario is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    drawers = (("startup", _startup), ("overhead", _overhead), ("accuracy", _accuracy))
    panels = [(key, panel) for key, panel in drawers if key in results]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (key, draw_panel) in zip(axes[0], panels, strict=True):
        if "error" in results[key]:
            ax.set_title(f"{key}: failed")
            continue
        draw_panel(ax, results[key])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
