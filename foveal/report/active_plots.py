"""The learning-curve plot of ``foveal active simulate``: metric vs labelled images, one line per
strategy with its seed band (mean +- std), the normalised area under each curve in the legend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foveal.report.plots import finish_axes, new_figure, save_png


def plot_learning_curves(curves: dict[str, dict[str, Any]], metric: str, out: str | Path) -> Path:
    """Draw ``curves`` (strategy -> {"labelled": [x], "mean": [y], "std": [y], "auc": {"mean", "std"},
    "seeds": [...]}) to the PNG ``out``; random is drawn dashed grey."""
    fig, ax = new_figure((7.0, 4.8))
    for name, curve in curves.items():
        x, mean, std = curve["labelled"], curve["mean"], curve["std"]
        style = {"color": "0.4", "linestyle": "--"} if name == "random" else {}
        auc = curve["auc"]
        label = f"{name} (AUC {auc['mean']:.3f} ± {auc['std']:.3f}, {len(curve['seeds'])} seeds)"
        line = ax.plot(x, mean, marker="o", markersize=3, label=label, **style)[0]
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    finish_axes(ax, "labelled images", metric, f"Active learning: {metric} vs labelled images")
    return save_png(fig, out)
