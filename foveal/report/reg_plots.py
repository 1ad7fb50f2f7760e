"""Regression plots (PNG): predicted vs true per target, and the residual histogram per target."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from foveal.report.plots import DPI, save_png


def _grid(n: int) -> tuple[Figure, np.ndarray]:
    cols = min(3, max(1, n))
    rows = -(-n // cols)
    fig = Figure(figsize=(4.2 * cols, 3.8 * rows), dpi=DPI, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False).ravel()


def plot_predicted_vs_true(
    predicted: np.ndarray, true: np.ndarray, names: Sequence[str], out: str | Path
) -> Path:
    """One scatter per target of ``predicted`` (N, T) against ``true`` (N, T), with the y = x line
    and the target's R² in the title."""
    from sklearn.metrics import r2_score

    fig, axes = _grid(len(names))
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    for t, (ax, name) in enumerate(zip(axes, names, strict=False)):
        x, y = true[:, t], predicted[:, t]
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.scatter(x, y, s=8, alpha=0.6, color="#4c72b0", edgecolors="none")
        ax.plot([low, high], [low, high], "--", color="grey", linewidth=1.0, label="y = x")
        r2 = r2_score(x, y) if len(x) > 1 else float("nan")
        ax.set_title(f"{name}: R² {r2:.3f} (n={len(x)})")
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return save_png(fig, out)


def plot_residuals(predicted: np.ndarray, true: np.ndarray, names: Sequence[str], out: str | Path) -> Path:
    """One histogram per target of the residuals ``predicted - true`` (N, T), mean and std in the title."""
    fig, axes = _grid(len(names))
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    for t, (ax, name) in enumerate(zip(axes, names, strict=False)):
        residual = predicted[:, t] - true[:, t]
        ax.hist(residual, bins=min(40, max(5, len(residual) // 5)), color="#888888", edgecolor="black")
        ax.axvline(0.0, color="#dd4444", linewidth=1.0)
        ax.set_title(f"{name}: residual mean {residual.mean():+.3g}, std {residual.std():.3g}")
        ax.set_xlabel(f"predicted - true {name}")
        ax.set_ylabel("images")
        ax.grid(alpha=0.3)
    return save_png(fig, out)
