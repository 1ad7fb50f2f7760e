"""Detection pictures: boxes / masks / skeletons drawn on images, prediction grids, per-class PR curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from foveal.report.plots import DPI, curve_style, finish_axes, new_figure, save_png
from foveal.report.seg_plots import class_colours


def draw_detections(
    image: np.ndarray,
    detections: Any,
    skeleton: Sequence[Sequence[int]] | None = None,
    scores: bool = True,
) -> Image.Image:
    """Draw ``detections`` (``foveal.tasks.detection.Detections``: boxes xyxy pixels, labels, scores,
    optional masks (N, H, W) and keypoints (N, K, 3)) on ``image`` (H, W, 3) uint8.

    Each class has its colour (class c + 1 of the VOC palette); masks are blended at 40%, keypoints
    with visibility > 0 drawn as dots joined by ``skeleton`` (0-based index pairs), boxes captioned
    "name score" (just the name when ``scores`` is False)."""
    colours = class_colours(len(detections.class_names) + 1)[1:]
    canvas = np.asarray(image, dtype=np.float32).copy()
    if detections.masks is not None:
        for mask, label in zip(detections.masks, detections.labels, strict=True):
            on = np.asarray(mask, dtype=bool)
            canvas[on] = 0.6 * canvas[on] + 0.4 * np.asarray(colours[int(label)], dtype=np.float32)
    out = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 160))
    for i, (box, label) in enumerate(zip(detections.boxes, detections.labels, strict=True)):
        colour = colours[int(label)]
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=width)
        caption = detections.class_names[int(label)]
        if scores:
            caption += f" {float(detections.scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), caption)
        lift = bottom - top + 2
        draw.rectangle([x0, y0 - lift, x0 + right - left + 2, y0], fill=colour)
        draw.text((x0 + 1, y0 - lift), caption, fill=(255, 255, 255) if sum(colour) < 400 else (0, 0, 0))
        if detections.keypoints is not None:
            points = np.asarray(detections.keypoints[i])
            for a, b in skeleton or ():
                if points[a, 2] > 0 and points[b, 2] > 0:
                    draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=colour, width=width)
            for x, y, v in points:
                if v > 0:
                    r = width + 1
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255), outline=colour)
    return out


def plot_detection_grid(
    images: list[np.ndarray],
    truths: list[Any],
    predictions: list[Any],
    out: str | Path,
    skeleton: Sequence[Sequence[int]] | None = None,
) -> Path:
    """One row per image: ground truth | prediction (``Detections`` in image pixels) drawn on it."""
    if not images or not len(images) == len(truths) == len(predictions):
        raise ValueError(
            f"need the same non-zero number of images, truths and predictions, "
            f"got {len(images)}, {len(truths)}, {len(predictions)}"
        )
    rows = len(images)
    cell = max(1.5, min(3.0, 30.0 / rows))
    fig = Figure(figsize=(2 * cell, rows * cell + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    for row, (image, truth, prediction) in enumerate(zip(images, truths, predictions, strict=True)):
        panels = (
            draw_detections(image, truth, skeleton, False),
            draw_detections(image, prediction, skeleton),
        )
        for ax, panel, title in zip(axes[row], panels, ("ground truth", "prediction"), strict=True):
            ax.imshow(np.asarray(panel), interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    return save_png(fig, out)


def plot_pr_curves(curves: dict[str, dict[str, Any]], out: str | Path) -> Path:
    """Per-class precision-recall curves at IoU 0.5 with AP50 in the legend.

    ``curves``: {class name: {"recall": (R,), "precision": (R,), "ap50": float | None}}; a class
    without ground truth (ap50 None) is listed as n/a."""
    fig, ax = new_figure(figsize=(9.0, 5.4) if len(curves) > 10 else (6.4, 4.8))
    for index, (name, curve) in enumerate(curves.items()):
        if curve.get("ap50") is None:
            ax.plot([], [], " ", label=f"{name}: AP50 n/a (no ground truth)")
            continue
        label = f"{name}: AP50={curve['ap50']:.3f}"
        ax.plot(curve["recall"], curve["precision"], label=label, **curve_style(index, len(curves)))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "recall", "precision", "Precision-recall (IoU 0.5)", many=len(curves) > 10)
    return save_png(fig, out)
