"""Morphological clean-up of segmentation masks (numpy in, numpy out; torch tensors are accepted).

A mask is either a binary mask (H, W) bool or an integer class map (H, W) whose value ``background``
(default 0) is the background and every other value is a class (an ``ignore_index`` such as 255 is
treated like any other class). Binary masks come back as bool; class maps keep their dtype and values:

- shrinking operations (``erode``, ``opening``, ``remove_small_components``) run per class and the
  pixels a class loses become ``background``;
- growing operations (``dilate``, ``closing``, ``fill_holes``) run per class and only claim
  ``background`` pixels, never another class's pixels; where two classes claim the same background
  pixel the lower class value wins.

The image border is not an object boundary: erosion treats pixels outside the image as foreground
and dilation as background, so objects touching the border are not eaten from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from foveal.errors import ConfigError

BinaryOp = Callable[[np.ndarray], np.ndarray]


def to_mask_array(mask: Any, name: str = "mask") -> np.ndarray:
    """Return ``mask`` (numpy array or torch Tensor, (H, W) bool or integer) as a 2-D numpy array."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ConfigError(f"{name} has shape {tuple(array.shape)}; expected a 2-D (H, W) mask")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(
            f"{name} has dtype {array.dtype}; pass a bool mask or an integer class map "
            "(threshold probabilities or take the argmax of logits first)"
        )
    return array


def _check_nonnegative(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name}={value!r} is invalid; pass an integer >= 0")
    return int(value)


def connectivity_structure(connectivity: int) -> np.ndarray:
    from scipy import ndimage

    if connectivity not in (1, 2):
        raise ConfigError(
            f"connectivity={connectivity!r} is invalid; use 1 (4-neighbours) or 2 (8-neighbours)"
        )
    return ndimage.generate_binary_structure(2, connectivity)


def _disk(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(_check_nonnegative("radius", radius)).astype(bool)


def _apply(mask: Any, op: BinaryOp, grows: bool, background: int) -> np.ndarray:
    """Run the binary ``op`` on a bool mask, or per class on a class map (see the module docstring)."""
    array = to_mask_array(mask)
    if array.dtype == bool:
        return op(array).astype(bool)
    is_background = array == background
    out = array.copy() if grows else np.full_like(array, background)
    for value in np.unique(array[~is_background]):
        region = op(array == value)
        if grows:
            region &= is_background & (out == background)
        out[region] = value
    return out


def _erode(binary: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(binary, structure=footprint, border_value=1)


def _dilate(binary: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(binary, structure=footprint, border_value=0)


def erode(mask: Any, radius: int = 1, background: int = 0) -> np.ndarray:
    """Erode ``mask`` (H, W) with a disk of ``radius`` pixels (a square of side a becomes a - 2r)."""
    footprint = _disk(radius)
    return _apply(mask, lambda b: _erode(b, footprint), grows=False, background=background)


def dilate(mask: Any, radius: int = 1, background: int = 0) -> np.ndarray:
    """Dilate ``mask`` (H, W) with a disk of ``radius`` pixels (corners come out rounded)."""
    footprint = _disk(radius)
    return _apply(mask, lambda b: _dilate(b, footprint), grows=True, background=background)


def opening(mask: Any, radius: int = 1, background: int = 0) -> np.ndarray:
    """Erode then dilate ``mask`` (H, W): removes specks and spurs thinner than the disk."""
    footprint = _disk(radius)
    return _apply(
        mask, lambda b: _dilate(_erode(b, footprint), footprint), grows=False, background=background
    )


def closing(mask: Any, radius: int = 1, background: int = 0) -> np.ndarray:
    """Dilate then erode ``mask`` (H, W): bridges gaps and fills notches narrower than the disk."""
    footprint = _disk(radius)
    return _apply(mask, lambda b: _erode(_dilate(b, footprint), footprint), grows=True, background=background)


def fill_holes(mask: Any, background: int = 0) -> np.ndarray:
    """Fill background holes enclosed by an object of ``mask`` (H, W); regions open to the border stay."""
    from scipy import ndimage

    return _apply(mask, ndimage.binary_fill_holes, grows=True, background=background)


def remove_small_components(
    mask: Any, min_size: int, connectivity: int = 2, background: int = 0
) -> np.ndarray:
    """Drop connected components of ``mask`` (H, W) with fewer than ``min_size`` pixels.

    ``connectivity`` 1 joins 4-neighbours, 2 joins 8-neighbours. In class maps each class's components
    are measured separately and removed pixels become ``background``.
    """
    from scipy import ndimage

    min_size = _check_nonnegative("min_size", min_size)
    structure = connectivity_structure(connectivity)

    def keep_large(binary: np.ndarray) -> np.ndarray:
        labels, _ = ndimage.label(binary, structure=structure)
        keep = np.bincount(labels.ravel()) >= min_size
        keep[0] = False
        return keep[labels]

    return _apply(mask, keep_large, grows=False, background=background)


def postprocess_mask(
    mask: Any,
    *,
    open_radius: int = 0,
    close_radius: int = 0,
    fill: bool = False,
    min_size: int = 0,
    background: int = 0,
) -> np.ndarray:
    """Clean a predicted mask (H, W) bool or class map; a step is skipped when its option is 0/False.

    Order: ``opening(open_radius)`` (drop specks) -> ``closing(close_radius)`` (bridge small gaps) ->
    ``fill_holes`` (if ``fill``) -> ``remove_small_components(min_size)`` (8-connectivity).
    With the defaults a numpy copy of the mask comes back unchanged.
    """
    out = to_mask_array(mask).copy()
    if _check_nonnegative("open_radius", open_radius):
        out = opening(out, open_radius, background=background)
    if _check_nonnegative("close_radius", close_radius):
        out = closing(out, close_radius, background=background)
    if fill:
        out = fill_holes(out, background=background)
    if _check_nonnegative("min_size", min_size):
        out = remove_small_components(out, min_size, background=background)
    return out
