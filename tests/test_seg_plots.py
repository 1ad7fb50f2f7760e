"""Segmentation plots write readable PNGs; mask colouring is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.metrics.segmentation import segmentation_metrics
from foveal.report.seg_plots import (
    class_colours,
    colourise,
    overlay,
    plot_per_class_iou,
    plot_segmentation_grid,
)

NAMES = ["background", "cat", "dog", "bird"]


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= 200 and max(image.size) <= 6000
        assert len(set(np.asarray(image.convert("L")).ravel().tolist())) > 10  # something was drawn
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def _sample(seed: int, size: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    target = np.zeros((size, size), dtype=np.int64)
    target[4:12, 4:12] = 1
    target[14:20, 10:22] = 2
    target[3, :] = 255
    prediction = np.roll(target.clip(max=2), 2, axis=1)
    return image, target, prediction


def test_class_colours_are_distinct_with_black_background() -> None:
    colours = class_colours(300)
    assert colours[0] == (0, 0, 0)
    assert colours[1:4] == [(128, 0, 0), (0, 128, 0), (128, 128, 0)]  # the PASCAL VOC palette
    assert len(set(colours)) == 300
    assert (255, 255, 255) not in colours  # white marks ignored pixels
    assert all(0 <= v <= 255 for colour in colours for v in colour)


def test_colourise_maps_each_class_to_its_colour() -> None:
    colours = [(0, 0, 0), (10, 20, 30), (200, 100, 50)]
    mask = np.array([[0, 1, 2], [2, 255, 1]])
    out = colourise(mask, colours)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    for (row, col), value in np.ndenumerate(mask):
        expected = (255, 255, 255) if value == 255 else colours[value]
        assert tuple(out[row, col]) == expected
    with pytest.raises(ValueError, match="0..2"):
        colourise(np.array([[3]]), colours)


def test_overlay_keeps_background_and_blends_the_rest() -> None:
    image, target, _ = _sample(0)
    colours = class_colours(3)
    out = overlay(image, target, colours, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    background = target == 0
    np.testing.assert_array_equal(out[background], image[background])
    cat = target == 1
    expected = np.rint(image[cat] * 0.5 + np.asarray(colours[1]) * 0.5)
    np.testing.assert_allclose(out[cat], expected, atol=1)
    ignored = target == 255
    np.testing.assert_allclose(out[ignored], np.rint(image[ignored] * 0.5 + 127.5), atol=1)
    opaque = overlay(image, target, colours, alpha=1.0)
    np.testing.assert_array_equal(opaque[cat], colourise(target, colours)[cat])


def test_plot_segmentation_grid(tmp_path: Path) -> None:
    samples = [_sample(seed) for seed in range(3)]
    images, targets, predictions = (list(column) for column in zip(*samples, strict=True))
    out = plot_segmentation_grid(images, targets, predictions, NAMES, tmp_path / "plots" / "samples.png")
    _assert_png(out)
    with pytest.raises(ValueError, match="same non-zero number"):
        plot_segmentation_grid(images, targets[:2], predictions, NAMES, tmp_path / "bad.png")


def test_plot_per_class_iou_with_absent_class(tmp_path: Path) -> None:
    cm = np.array([[50, 3, 2, 0], [4, 20, 1, 0], [2, 0, 9, 0], [0, 0, 0, 0]])
    metrics = segmentation_metrics(cm, NAMES)
    assert metrics["per_class"]["bird"]["iou"] is None
    _assert_png(plot_per_class_iou(metrics, tmp_path / "iou.png"))
    many = segmentation_metrics(np.diag(np.arange(1, 61)), [f"class_{i}" for i in range(60)])
    _assert_png(plot_per_class_iou(many, tmp_path / "iou_many.png"))
