"""Label quality of one segmentation mask from per-pixel out-of-fold probabilities.

An image's quality is the softmin-weighted mean of its pixels' self-confidence (the probability of
their given class; as cleanlab's segmentation score, temperature 0.1): the least confident pixels weigh
most, so a small badly labelled region lowers the score where a plain mean would hide it. Its worst
regions are the 8-connected components of pixels whose given class has probability < ``low``, with
their bbox (xyxy, pixels of the probability map), area, given class and the class the model prefers.
Arrays: ``probs`` (H, W, K), ``given`` (H, W) int with ``ignore`` for unlabelled pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Region:
    """One low-confidence region: ``bbox`` xyxy, ``area`` pixels, ``given`` and ``suggested`` (the
    majority given and most likely classes of its pixels, indices), ``confidence`` (mean self-confidence)."""

    bbox: list[int]
    area: int
    given: int
    suggested: int
    confidence: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def self_confidence(probs: np.ndarray, given: np.ndarray, ignore: int = 255) -> np.ndarray:
    """(H, W) probability of each pixel's given class (NaN where ``ignore``)."""
    valid = given != ignore
    index = np.where(valid, given, 0).astype(np.int64)
    conf = np.take_along_axis(probs, index[..., None], axis=-1)[..., 0].astype(np.float64)
    return np.where(valid, conf, np.nan)


def softmin_quality(confidence: np.ndarray, temperature: float = 0.1) -> float:
    """Softmin-weighted mean of the (H, W) self-confidence (NaN left out); 1.0 without labelled pixels."""
    values = confidence[np.isfinite(confidence)]
    if not values.size:
        return 1.0
    weights = np.exp(-(values - values.min()) / temperature)
    return float((weights * values).sum() / weights.sum())


def low_regions(
    probs: np.ndarray, given: np.ndarray, ignore: int = 255, low: float = 0.5, min_area: int = 4
) -> list[Region]:
    """Connected regions of pixels whose given class has probability < ``low`` (at least ``min_area``
    pixels), largest first."""
    confidence = self_confidence(probs, given, ignore)
    components, count = ndimage.label(np.nan_to_num(confidence, nan=1.0) < low, structure=np.ones((3, 3)))
    regions = []
    for i, found in enumerate(ndimage.find_objects(components), start=1):
        if found is None:
            continue
        inside = components[found] == i
        area = int(inside.sum())
        if area < min_area:
            continue
        ys, xs = found
        classes = given[found][inside]
        preferred = probs[found][inside].argmax(axis=-1)
        regions.append(
            Region(
                [xs.start, ys.start, xs.stop, ys.stop],
                area,
                int(np.bincount(classes).argmax()),
                int(np.bincount(preferred).argmax()),
                float(confidence[found][inside].mean()),
            )
        )
    return sorted(regions, key=lambda r: -r.area)
