"""Error-analysis grids (PNG): top losses, detection errors, worst segmentations, on one image grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

GRID_COLUMNS = 4
WRONG, RIGHT = "#cc0000", "#006600"


def _names(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "+".join(value) or "(none)"


def top_losses_grid(rows: Sequence[dict[str, Any]], out_png: str | Path, title: str = "Top losses") -> Path:
    """Plot :func:`top_losses` rows as a grid of images titled "target → prediction (p)", red when wrong."""
    from foveal.data.imageio import load_rgb

    images = [np.asarray(load_rgb(row["path"])) for row in rows]
    titles = [
        f"{_names(row['target'])} → {_names(row['prediction'])} ({row['confidence']:.2f})"
        f"\nloss {row['loss']:.2f}"
        for row in rows
    ]
    colours = [RIGHT if row["correct"] else WRONG for row in rows]
    return image_grid(images, titles, colours, out_png, title)


def detection_errors_grid(rows: Sequence[dict[str, Any]], out_png: str | Path, title: str) -> Path:
    """Crops around the boxes of :func:`detection_errors` rows (a margin of half the box, at least 8
    pixels), the box drawn in red, titled "kind: label score"."""
    from PIL import ImageDraw

    from foveal.data.imageio import load_rgb

    images, titles = [], []
    for row in rows:
        image = load_rgb(row["path"])
        x0, y0, x1, y1 = row["box"]
        draw = ImageDraw.Draw(image)
        draw.rectangle(
            [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)],
            outline=(255, 0, 0),
            width=max(1, round(min(image.size) / 100)),
        )
        mx, my = max(8.0, (x1 - x0) / 2), max(8.0, (y1 - y0) / 2)
        crop = (
            max(0, int(x0 - mx)),
            max(0, int(y0 - my)),
            min(image.width, math.ceil(x1 + mx)),
            min(image.height, math.ceil(y1 + my)),
        )
        images.append(np.asarray(image.crop(crop) if crop[2] > crop[0] and crop[3] > crop[1] else image))
        other = row.get("true_label", row.get("predicted_label"))
        detail = f" ({'true' if 'true_label' in row else 'pred'} {other})" if other is not None else ""
        score = f" {row['score']:.2f}" if "score" in row else ""
        titles.append(f"{row['kind']}: {row['label']}{score}{detail}")
    return image_grid(images, titles, [WRONG] * len(rows), out_png, title)


def worst_segmentations_grid(
    rows: Sequence[dict[str, Any]], colours: Sequence[tuple[int, int, int]], out_png: str | Path
) -> Path:
    """Image | target | prediction side by side for each of the ``worst_segmentations`` rows, classes
    drawn in ``colours``."""
    from foveal.data.imageio import load_rgb
    from foveal.report.seg_plots import colourise

    images = []
    for row in rows:
        target, predicted = row["maps"]
        image = np.asarray(load_rgb(row["path"]).resize(target.shape[::-1]))
        images.append(np.concatenate([image, colourise(target, colours), colourise(predicted, colours)], 1))
    titles = [f"{Path(r['path']).name}: mIoU {r['miou']:.2f}" for r in rows]
    return image_grid(
        images, titles, [WRONG] * len(rows), out_png, "Worst images (image | target | prediction)"
    )


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    colours: Sequence[str],
    out_png: str | Path,
    title: str,
) -> Path:
    """Images (H, W, 3) uint8 in a grid of up to 4 columns, each with its title in its colour."""
    from matplotlib.figure import Figure

    from foveal.report.plots import DPI, save_png

    count = max(1, len(images))
    cols = min(GRID_COLUMNS, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(2.6 * cols, 2.7 * rows + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, text, colour in zip(axes, images, titles, colours, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(text, fontsize=7, color=colour)
    if not images:
        axes[0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title)
    return save_png(fig, out_png)
