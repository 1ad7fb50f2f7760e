"""Segmentation plots (per-class IoU bars, image | target | prediction grids) and mask colouring.

Figures use ``matplotlib.figure.Figure`` with the Agg canvas (never pyplot) and are written
atomically, as in :mod:`foveal.report.plots`. :func:`class_colours`, :func:`colourise` and
:func:`overlay` are public: prediction writes colour masks with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from foveal.report.plots import DPI, save_png

Colour = tuple[int, int, int]
IGNORED_COLOUR: Colour = (255, 255, 255)


def class_colours(n: int) -> list[Colour]:
    """``n`` distinct RGB colours: the PASCAL VOC palette, class 0 (background) black.

    Colour c spreads the bits of c over the high bits of R, G and B, so colours are distinct for every
    class below 2**24 and never white (white marks ignored pixels), and masks coloured with it read
    like VOC's own palette PNGs.
    """
    colours = []
    for index in range(n):
        red = green = blue = 0
        bits = index
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= (bits >> 1 & 1) << shift
            blue |= (bits >> 2 & 1) << shift
            bits >>= 3
        colours.append((red, green, blue))
    return colours


def colourise(mask: np.ndarray, colours: list[Colour], ignore_index: int = 255) -> np.ndarray:
    """Colour a (H, W) integer class map: (H, W, 3) uint8, class c -> ``colours[c]``, ignored -> white."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    labelled = mask != ignore_index
    if labelled.any() and (mask[labelled].min() < 0 or mask[labelled].max() >= len(colours)):
        raise ValueError(
            f"mask values must lie in 0..{len(colours) - 1} (one colour each) or be {ignore_index}, "
            f"got {mask[labelled].min()}..{mask[labelled].max()}"
        )
    palette = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    out[...] = IGNORED_COLOUR
    out[labelled] = palette[mask[labelled]]
    return out


def overlay(
    image: np.ndarray, mask: np.ndarray, colours: list[Colour], alpha: float = 0.5, ignore_index: int = 255
) -> np.ndarray:
    """Blend the class colours of ``mask`` (H, W) over ``image`` (H, W, 3) uint8: (H, W, 3) uint8.

    Background (class 0) pixels keep the image unchanged (their colour has alpha 0), so the objects
    stand out; every other class, and ignored pixels (white), are mixed in with weight ``alpha``.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image size {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    coloured = colourise(mask, colours, ignore_index).astype(np.float32)
    weight = np.where(mask == 0, 0.0, alpha).astype(np.float32)[..., None]
    blended = image.astype(np.float32) * (1.0 - weight) + coloured * weight
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def plot_per_class_iou(metrics: dict[str, Any], out: str | Path) -> Path:
    """Horizontal bars of each class's IoU from :func:`foveal.metrics.segmentation.segmentation_metrics`.

    Classes with IoU None (absent from targets and predictions) are labelled "n/a"; a dashed line
    marks the mIoU.
    """
    per_class = metrics["per_class"]
    names = list(per_class)
    values = [per_class[name]["iou"] for name in names]
    fig = Figure(figsize=(7.0, max(3.0, 0.3 * len(names) + 1.5)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    ax.barh(positions, [0.0 if v is None else v for v in values], color="tab:blue")
    fontsize = 8 if len(names) <= 40 else 6
    for position, value in zip(positions, values, strict=True):
        text = "n/a" if value is None else f"{value:.3f}"
        ax.text(0.01 if value is None else value + 0.01, position, text, va="center", fontsize=fontsize)
    miou = metrics.get("miou")
    if miou is not None:
        ax.axvline(miou, color="tab:red", linestyle="--", linewidth=1, label=f"mIoU = {miou:.3f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_yticks(positions, names, fontsize=fontsize)
    ax.invert_yaxis()  # first class at the top
    ax.set_xlim(0.0, 1.1)
    ax.set_xlabel("IoU")
    ax.set_title("Per-class IoU")
    ax.grid(axis="x", alpha=0.3)
    return save_png(fig, out)


def plot_segmentation_grid(
    images: list[np.ndarray],
    targets: list[np.ndarray],
    predictions: list[np.ndarray],
    class_names: list[str],
    out: str | Path,
    colours: list[Colour] | None = None,
    ignore_index: int = 255,
) -> Path:
    """One row per sample: image | target overlay | prediction overlay, and a legend of class colours.

    ``images``: (H, W, 3) uint8; ``targets`` and ``predictions``: (H, W) class maps of the same size.
    ``colours`` defaults to :func:`class_colours`; the legend lists the classes shown in the masks
    except the untinted background (and "ignored" when a target has ignored pixels).
    """
    if not images or not len(images) == len(targets) == len(predictions):
        raise ValueError(
            f"need the same non-zero number of images, targets and predictions, "
            f"got {len(images)}, {len(targets)}, {len(predictions)}"
        )
    colours = class_colours(len(class_names)) if colours is None else colours
    if len(colours) < len(class_names):
        raise ValueError(f"need a colour for each of the {len(class_names)} classes, got {len(colours)}")
    rows = len(images)
    cell = max(1.2, min(2.8, 30.0 / rows))
    fig = Figure(figsize=(3 * cell + 1.8, rows * cell + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    shown: set[int] = set()
    for row, (image, target, prediction) in enumerate(zip(images, targets, predictions, strict=True)):
        target, prediction = np.asarray(target), np.asarray(prediction)
        panels = (
            image,
            overlay(image, target, colours, ignore_index=ignore_index),
            overlay(image, prediction, colours, ignore_index=ignore_index),
        )
        for ax, panel, title in zip(axes[row], panels, ("image", "target", "prediction"), strict=True):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
        shown.update(np.unique(target).tolist())
        shown.update(np.unique(prediction).tolist())
    handles = [
        Patch(facecolor=np.asarray(colours[c]) / 255.0, edgecolor="black", label=class_names[c])
        for c in sorted(shown)
        if c not in (0, ignore_index)  # background is not tinted by the overlay
    ]
    if ignore_index in shown:
        handles.append(Patch(facecolor="white", edgecolor="black", label="ignored"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, ncols=1 + len(handles) // 30)
    return save_png(fig, out)
