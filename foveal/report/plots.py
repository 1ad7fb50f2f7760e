"""Training and evaluation plots written as PNG files.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through
pyplot: no GUI backend, no global figure registry to leak or close, and importing this module does
not switch the backend of a user's notebook. Every file is written atomically (a temporary file in
the same folder, then ``os.replace``), so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from foveal.atomic import atomic_write
from foveal.errors import check_choice
from foveal.metrics.calibration import calibration_bins, confidences_and_outcomes, expected_calibration_error
from foveal.metrics.classification import KINDS, confusion_matrix_normalised

if TYPE_CHECKING:
    from torch import Tensor

DPI = 100


def plot_history(history: list[dict[str, float]], out_dir: str | Path) -> list[Path]:
    """Plot per-epoch history rows ({"epoch", "train/loss", "val/loss", "val/<metric>", "lr"}).

    Writes ``loss.png`` (train and val loss), ``metrics.png`` (every other ``val/*`` value, one panel
    each) and ``lr.png`` (``lr`` or Lightning's ``lr-<optimizer>`` keys), each only when it has data;
    rows may lack keys. The x value is a row's ``epoch``, else its index. Returns the written paths.
    """
    out_dir = Path(out_dir)
    series = _series(history)
    written = []
    losses = [key for key in ("train/loss", "val/loss") if key in series]
    if losses:
        fig, ax = new_figure()
        for key in losses:
            ax.plot(*series[key], marker="o", markersize=3, label=key)
        finish_axes(ax, "epoch", "loss", "Loss")
        written.append(save_png(fig, out_dir / "loss.png"))
    metrics = sorted(key for key in series if key.startswith("val/") and key != "val/loss")
    if metrics:
        ncols = min(3, len(metrics))
        nrows = math.ceil(len(metrics) / ncols)
        fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows), dpi=DPI, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, key in zip(axes, metrics, strict=False):  # the grid may have spare axes
            ax.plot(*series[key], marker="o", markersize=3)
            ax.set_title(key)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)
        written.append(save_png(fig, out_dir / "metrics.png"))
    rates = sorted(key for key in series if key == "lr" or key.startswith("lr-"))
    if rates:
        fig, ax = new_figure()
        for key in rates:
            ax.plot(*series[key], marker="o", markersize=3, label=key)
        finish_axes(ax, "epoch", "learning rate", "Learning rate")
        written.append(save_png(fig, out_dir / "lr.png"))
    return written


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]], class_names: list[str], out: str | Path, normalise: bool = True
) -> Path:
    """Plot a (C, C) confusion matrix (rows = true, columns = predicted) with annotated cells.

    ``normalise`` shows row fractions (a true class without samples stays at 0) instead of counts.
    Non-zero cells are annotated up to 40 classes; zero cells stay blank.
    """
    counts = np.asarray(cm, dtype=np.float64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix must be ({n}, {n}) for {n} class names, got {counts.shape}")
    values = confusion_matrix_normalised(counts) if normalise else counts
    side = max(4.5, 0.32 * n + 2.5)
    fig, ax = new_figure(figsize=(side + 1.0, side))
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalise else max(values.max(), 1.0))
    fig.colorbar(image, ax=ax, shrink=0.8)
    fontsize = max(6.0, min(10.0, 200.0 / n))
    if n <= 40:
        high = values.max() / 2 if values.max() > 0 else 1.0
        for (row, col), value in np.ndenumerate(values):
            if value == 0:  # blank zero cells: easier to read, and text is the slow part to render
                continue
            text = f"{value:.2f}" if normalise else f"{int(value)}"
            colour = "white" if value > high else "black"
            ax.text(col, row, text, ha="center", va="center", fontsize=fontsize, color=colour)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=max(fontsize, 8.0))
    ax.set_yticks(range(n), class_names, fontsize=max(fontsize, 8.0))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalise else ""))
    return save_png(fig, out)


def plot_roc(
    probs: np.ndarray, targets: np.ndarray, kind: str, class_names: list[str], out: str | Path
) -> Path:
    """Plot ROC curves with the AUC in the legend.

    ``probs`` (N, C); ``targets`` (N,) class indices (binary, multiclass) or (N, C) 0/1 (multilabel).
    Binary draws class 1 against class 0; multiclass draws each class one-vs-rest; multilabel each
    label. A class with only positives or only negatives is listed as "n/a".
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    curves = _curves(probs, targets, kind, class_names)
    fig, ax = new_figure(figsize=(9.0, 5.4) if len(curves) > 10 else (6.4, 4.8))
    for index, (name, positive, score) in enumerate(curves):
        if positive.all() or not positive.any():
            ax.plot([], [], " ", label=f"{name}: AUC n/a (one class only)")
            continue
        fpr, tpr, _ = roc_curve(positive, score)
        label = f"{name}: AUC={roc_auc_score(positive, score):.3f}"
        ax.plot(fpr, tpr, label=label, **curve_style(index, len(curves)))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "false positive rate", "true positive rate", "ROC", many=len(curves) > 10)
    return save_png(fig, out)


def plot_pr(
    probs: np.ndarray, targets: np.ndarray, kind: str, class_names: list[str], out: str | Path
) -> Path:
    """Plot precision-recall curves with the average precision (AP) in the legend.

    Same inputs as :func:`plot_roc`; a class without positives is listed as "n/a".
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    curves = _curves(probs, targets, kind, class_names)
    fig, ax = new_figure(figsize=(9.0, 5.4) if len(curves) > 10 else (6.4, 4.8))
    for index, (name, positive, score) in enumerate(curves):
        if not positive.any():
            ax.plot([], [], " ", label=f"{name}: AP n/a (no positives)")
            continue
        precision, recall, _ = precision_recall_curve(positive, score)
        label = f"{name}: AP={average_precision_score(positive, score):.3f}"
        ax.plot(recall, precision, drawstyle="steps-post", label=label, **curve_style(index, len(curves)))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "recall", "precision", "Precision-recall", many=len(curves) > 10)
    return save_png(fig, out)


def plot_lr_find(
    lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, out: str | Path
) -> Path:
    """Plot a learning-rate range test: loss against learning rate (log x axis), marking ``suggestion``."""
    if len(lrs) != len(losses) or len(lrs) == 0:
        raise ValueError(
            f"lrs and losses must be non-empty and of equal length, got {len(lrs)} and {len(losses)}"
        )
    fig, ax = new_figure()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    if suggestion is not None:
        nearest = int(np.argmin(np.abs(np.log(np.asarray(lrs, dtype=np.float64)) - math.log(suggestion))))
        ax.axvline(suggestion, color="tab:red", linestyle="--", linewidth=1)
        ax.plot(
            [suggestion], [losses[nearest]], "o", color="tab:red", label=f"suggested lr = {suggestion:.2e}"
        )
    finish_axes(ax, "learning rate", "loss", "Learning-rate finder", legend=suggestion is not None)
    return save_png(fig, out)


def reliability_diagram(
    probs: Tensor | np.ndarray,
    targets: Tensor | np.ndarray,
    out_png: str | Path,
    n_bins: int = 15,
    title: str = "Reliability",
) -> Path:
    """Write a reliability diagram of ``probs`` (N, C) against ``targets`` (as
    ``foveal.metrics.calibration.expected_calibration_error`` takes them) to ``out_png``.

    Top: the accuracy of each confidence bin as bars against the diagonal (perfect calibration), the
    gap to the bin's mean confidence shaded red; bottom: how many predictions fall in each bin. The
    title carries the ECE. Multilabel pools every (image, label) pair in the bars.
    """
    conf, hits = confidences_and_outcomes(probs, targets)
    ece = expected_calibration_error(probs, targets, n_bins)
    accuracy, confidence, count = calibration_bins(conf, hits, n_bins)
    width = 1.0 / n_bins
    centres = (np.arange(n_bins) + 0.5) * width
    used = count > 0
    fig = Figure(figsize=(5.4, 6.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[used], accuracy[used], width=width, color="#4c72b0", edgecolor="black", label="accuracy")
    gap_low = np.minimum(accuracy, confidence)[used]
    top.bar(
        centres[used],
        np.abs(confidence - accuracy)[used],
        bottom=gap_low,
        width=width,
        color="#dd4444",
        alpha=0.35,
        edgecolor="#aa0000",
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1.0, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy" if conf.ndim == 1 else "fraction positive")
    kind = "top-label" if conf.ndim == 1 else "mean over labels"
    top.set_title(f"{title} (ECE {ece:.4f}, {kind})")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(centres, count, width=width, color="#888888", edgecolor="black")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    bottom.grid(alpha=0.3)
    return save_png(fig, out_png)


def _series(history: list[dict[str, float]]) -> dict[str, tuple[list[float], list[float]]]:
    """{key: (epochs, values)} over the rows that hold a finite number for the key."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for index, row in enumerate(history):
        epoch = row.get("epoch", index)
        for key, value in row.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(epoch)
                ys.append(float(value))
    return series


def _curves(
    probs: np.ndarray, targets: np.ndarray, kind: str, class_names: list[str]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, positive mask (N,), score (N,)) per curve to draw."""
    check_choice("classification kind", kind, KINDS)
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probs must have shape (N, {len(class_names)}), got {probs.shape}")
    if kind == "binary":
        return [(class_names[1], targets == 1, probs[:, 1])]
    positives = (
        targets.astype(bool) if kind == "multilabel" else targets[:, None] == np.arange(len(class_names))
    )
    return [(name, positives[:, c], probs[:, c]) for c, name in enumerate(class_names)]


def curve_style(index: int, count: int) -> dict[str, object]:
    """Line colour and style for curve ``index`` of ``count``: distinct for up to 60 curves."""
    if count <= 10:
        return {}
    return {"color": colormaps["tab20"](index % 20), "linestyle": ("-", "--", ":")[index // 20 % 3]}


def new_figure(figsize: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, Axes]:
    """A pyplot-free figure at the report DPI with one axes."""
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def finish_axes(
    ax: Axes, xlabel: str, ylabel: str, title: str, legend: bool = True, many: bool = False
) -> None:
    """Labels, title, grid and legend (outside the axes when ``many`` curves)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        if many:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncols=1 + len(ax.lines) // 30)
        else:
            ax.legend(fontsize=8)


def save_png(fig: Figure, out: str | Path) -> Path:
    """Render ``fig`` to PNG at ``out`` atomically (temporary file in the same folder, then rename)."""
    FigureCanvasAgg(fig)
    return atomic_write(out, lambda handle: fig.savefig(handle, format="png", dpi=DPI))
