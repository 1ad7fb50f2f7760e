"""Mask post-processing (foveal.ops): morphology on binary/class masks and instance splitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import disk

from foveal.errors import ConfigError
from foveal.ops import (
    closing,
    connected_instances,
    count_instances,
    dilate,
    erode,
    fill_holes,
    instances_per_class,
    opening,
    postprocess_mask,
    remove_small_components,
    watershed_instances,
)


def square(size: int = 40, side: int = 11, top: int = 14) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, top : top + side] = True
    return mask


def discs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.any([(yy - y) ** 2 + (xx - x) ** 2 <= radius**2 for y, x in centres], axis=0)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_erode_square_shrinks_by_radius_on_each_side(radius: int) -> None:
    out = erode(square(side=11, top=14), radius)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, square(side=11 - 2 * radius, top=14 + radius))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_dilate_square_gives_rounded_square(radius: int) -> None:
    side = 11
    out = dilate(square(side=side), radius)
    corner = sum(1 for i in range(1, radius + 1) for j in range(1, radius + 1) if i * i + j * j <= radius**2)
    assert out.sum() == side * side + 4 * side * radius + 4 * corner
    np.testing.assert_array_equal(out, ndimage.binary_dilation(square(side=side), structure=disk(radius)))


def test_objects_touching_the_border_are_not_eroded_from_it() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[:, :10] = True
    out = erode(mask, 2)
    np.testing.assert_array_equal(out[:, :8], True)
    assert not out[:, 8:].any()


def test_radius_zero_is_identity_and_negative_radius_is_an_error() -> None:
    mask = square()
    np.testing.assert_array_equal(opening(mask, 0), mask)
    with pytest.raises(ConfigError, match="radius=-1"):
        erode(mask, -1)


def test_opening_removes_speck_but_keeps_blob() -> None:
    mask = square(size=40, side=12, top=5)
    mask[32, 32] = True
    out = opening(mask, 1)
    expected = square(size=40, side=12, top=5)
    expected[[5, 5, 16, 16], [5, 16, 5, 16]] = False  # disk(1) is a cross: opening clips the 4 corners
    np.testing.assert_array_equal(out, expected)


def test_closing_fills_one_pixel_gap() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:15, 3:14] = True
    mask[5:15, 15:27] = True  # column 14 is a 1-px gap
    out = closing(mask, 1)
    expected = mask.copy()
    expected[6:14, 14] = True  # the gap's end pixels stay open: disk(1) is a cross
    np.testing.assert_array_equal(out, expected)


def test_fill_holes_fills_ring_but_not_notch_open_to_border() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[3:14, 3:14] = True
    mask[6:11, 6:11] = False  # enclosed 5x5 hole
    mask[18:30, 3:14] = True
    mask[22:30, 7:10] = False  # notch reaching the bottom border
    out = fill_holes(mask)
    assert out[6:11, 6:11].all()
    assert not out[22:30, 7:10].any()
    assert out.sum() == mask.sum() + 25


def test_remove_small_components_keeps_50px_drops_5px() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[2:7, 2:12] = True  # 50 px
    mask[20, 20:25] = True  # 5 px
    out = remove_small_components(mask, min_size=10)
    np.testing.assert_array_equal(out, mask & (np.arange(30) < 15)[:, None])
    assert remove_small_components(mask, min_size=50).sum() == 50  # exactly min_size is kept
    assert remove_small_components(mask, min_size=51).sum() == 0
    # diagonal neighbours join with connectivity 2 but not 1
    diag = np.zeros((10, 10), dtype=bool)
    diag[np.arange(6), np.arange(6)] = True
    assert remove_small_components(diag, 6, connectivity=2).sum() == 6
    assert remove_small_components(diag, 6, connectivity=1).sum() == 0


def test_class_map_keeps_class_values_and_background_param() -> None:
    class_map = np.zeros((40, 40), dtype=np.int64)
    class_map[2:12, 2:7] = 1  # 50 px, class 1
    class_map[30:32, 30:32] = 1  # 4 px, class 1
    class_map[20:30, 5:10] = 2  # 50 px, class 2
    class_map[35, 35] = 2  # 1 px, class 2
    out = remove_small_components(class_map, min_size=10)
    assert out.dtype == np.int64
    expected = class_map.copy()
    expected[30:32, 30:32] = 0
    expected[35, 35] = 0
    np.testing.assert_array_equal(out, expected)
    filled = remove_small_components(class_map + 1, min_size=10, background=1)
    np.testing.assert_array_equal(filled, expected + 1)


def test_class_map_growth_never_overwrites_other_classes() -> None:
    class_map = np.zeros((20, 20), dtype=np.uint8)
    class_map[5:15, 2:9] = 1
    class_map[5:15, 10:17] = 3
    out = dilate(class_map, 1)
    np.testing.assert_array_equal(out[class_map > 0], class_map[class_map > 0])
    assert set(np.unique(out)) == {0, 1, 3}
    assert (out[5:15, 9] == 1).all()  # shared gap column: lower class wins
    np.testing.assert_array_equal(out == 3, (class_map == 3) | (dilate(class_map == 3, 1) & (out != 1)))
    ring = np.zeros((20, 20), dtype=np.int32)
    ring[2:12, 2:12] = 2
    ring[5:9, 5:9] = 0
    ring[6, 6] = 1  # another class inside the hole survives fill_holes
    filled = fill_holes(ring)
    assert filled[6, 6] == 1 and (filled[5:9, 5:9] != 0).all() and (filled[5:9, 5:9] == 2).sum() == 15


def test_postprocess_mask_applies_steps_in_order() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[3:17, 3:17] = True
    mask[8:11, 8:11] = False  # hole: survives closing(1) but fill removes it
    mask[30, 30] = True  # speck: opening removes it
    mask[25:29, 25:29] = True  # 16 px blob: 12 px survive opening(1), min_size removes them
    np.testing.assert_array_equal(postprocess_mask(mask), mask)
    out = postprocess_mask(mask, open_radius=1, fill=True, min_size=20)
    expected = np.zeros_like(mask)
    expected[3:17, 3:17] = True
    expected[[3, 3, 16, 16], [3, 16, 3, 16]] = False  # corners clipped by the cross-shaped disk(1)
    np.testing.assert_array_equal(out, expected)
    only_open = postprocess_mask(mask, open_radius=1)
    assert not only_open[30, 30] and only_open[25:29, 25:29].sum() == 12 and not only_open[8:11, 8:11].any()
    np.testing.assert_array_equal(postprocess_mask(mask, close_radius=2), closing(mask, 2))


def test_torch_input_returns_numpy() -> None:
    mask = torch.from_numpy(square())
    out = erode(mask, 1)
    assert isinstance(out, np.ndarray) and out.dtype == bool
    np.testing.assert_array_equal(out, erode(square(), 1))
    class_map = torch.zeros(20, 20, dtype=torch.long)
    class_map[2:8, 2:8] = 2
    assert count_instances(class_map, num_classes=3) == {1: 0, 2: 1}
    assert connected_instances(torch.from_numpy(square())).max() == 1


def test_bad_shapes_and_dtypes_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\(1, 20, 20\)"):
        erode(np.zeros((1, 20, 20), dtype=bool))
    with pytest.raises(ConfigError, match=r"\(2, 5, 5\)"):
        watershed_instances(np.zeros((2, 5, 5), dtype=bool))
    with pytest.raises(ConfigError, match="float32"):
        dilate(np.zeros((5, 5), dtype=np.float32))
    with pytest.raises(ConfigError, match="instances_per_class"):
        watershed_instances(np.zeros((5, 5), dtype=np.int64))
    with pytest.raises(ConfigError, match="connectivity=3"):
        connected_instances(np.zeros((5, 5), dtype=bool), connectivity=3)


def test_overlapping_discs_split_by_watershed_only() -> None:
    mask = discs((40, 50), [(20, 18), (20, 32)], radius=10)
    assert connected_instances(mask).max() == 1
    labels = watershed_instances(mask)
    assert labels.dtype == np.int32
    assert labels.max() == 2
    np.testing.assert_array_equal(labels > 0, mask)
    assert labels[20, 18] != labels[20, 32]
    assert {labels[20, 10], labels[20, 40]} == {labels[20, 18], labels[20, 32]}


def test_watershed_does_not_cut_bars_or_necks() -> None:
    mask = np.zeros((40, 80), dtype=bool)
    mask[2:4, 2:70] = True  # 2-px bar: one flat ridge
    mask[10:20, 5:45] = True  # rectangle: one flat ridge
    assert watershed_instances(mask).max() == 2
    dumbbell = np.zeros((40, 80), dtype=bool)
    dumbbell[5:25, 5:25] = True
    dumbbell[5:25, 45:65] = True
    dumbbell[13:17, 25:45] = True  # long thin neck: not an object of its own
    labels = watershed_instances(dumbbell)
    assert labels.max() == 2 and labels[15, 10] != labels[15, 55]


def test_separate_blobs_and_empty_mask() -> None:
    mask = discs((60, 60), [(10, 10), (30, 45), (50, 12)], radius=6)
    mask[0, 59] = True  # a 1-px object in a corner still gets a marker
    for labels in (connected_instances(mask), watershed_instances(mask)):
        assert labels.max() == 4
        np.testing.assert_array_equal(np.unique(labels), np.arange(5))
    empty = np.zeros((16, 16), dtype=bool)
    assert watershed_instances(empty).max() == 0
    assert connected_instances(empty).max() == 0
    assert watershed_instances(empty).dtype == np.int32


def test_instances_per_class_on_two_class_map() -> None:
    class_map = np.zeros((60, 80), dtype=np.int64)
    class_map[discs((60, 80), [(20, 18), (20, 32)], radius=10)] = 1  # two touching discs
    class_map[discs((60, 80), [(48, 10), (48, 40), (48, 70)], radius=5)] = 2  # three blobs
    class_map[0:3, 75:80] = 255  # ignored pixels are no instance
    per_class = instances_per_class(class_map, num_classes=3)
    assert sorted(per_class) == [1, 2]
    np.testing.assert_array_equal(per_class[1] > 0, class_map == 1)
    assert count_instances(class_map, num_classes=3) == {1: 2, 2: 3}
    assert count_instances(class_map, num_classes=3, method="connected") == {1: 1, 2: 3}
    assert count_instances(class_map, num_classes=4) == {1: 2, 2: 3, 3: 0}


def test_instances_per_class_errors() -> None:
    class_map = np.zeros((10, 10), dtype=np.int64)
    with pytest.raises(ConfigError, match="did you mean: watershed"):
        instances_per_class(class_map, num_classes=2, method="watershead")
    class_map[0, 0] = 7
    with pytest.raises(ConfigError, match=r"\[7\].*num_classes=3"):
        count_instances(class_map, num_classes=3)
