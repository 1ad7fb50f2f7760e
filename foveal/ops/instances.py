"""Instances from semantic masks: connected components or a distance-transform watershed.

Instance label maps are (H, W) int32 with 0 = background and 1..N = instances (N = ``labels.max()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from foveal.errors import ConfigError, check_choice
from foveal.ops.morphology import connectivity_structure, to_mask_array

INSTANCE_METHODS = ("connected", "watershed")


def _binary(mask: Any) -> np.ndarray:
    array = to_mask_array(mask)
    if array.dtype != bool:
        raise ConfigError(
            f"mask has dtype {array.dtype}; pass a bool (H, W) mask (use instances_per_class for class maps)"
        )
    return array


def connected_instances(mask: Any, connectivity: int = 2) -> np.ndarray:
    """Label the connected components of ``mask`` (H, W) bool as instances 1..N (int32, 0 = background).

    ``connectivity`` 1 joins 4-neighbours, 2 joins 8-neighbours.
    """
    from scipy import ndimage

    labels, _ = ndimage.label(_binary(mask), structure=connectivity_structure(connectivity))
    return labels.astype(np.int32)


def watershed_instances(
    mask: Any, min_distance: int = 3, footprint: int | None = None, connectivity: int = 2
) -> np.ndarray:
    """Split touching objects of ``mask`` (H, W) bool into instances 1..N (int32, 0 = background).

    Markers are the peaks of the Euclidean distance transform, at least ``min_distance`` pixels apart
    (searched in a ``footprint`` x ``footprint`` window; default ``2 * min_distance + 1``) and found per
    connected component, so every component gets at least one (its deepest point). Only peaks on a
    regional maximum count (so a long thin neck between two blobs is no object of its own), and peaks
    on one flat ridge (the plateau along the middle of a bar or rectangle) share a marker, so
    straight-sided objects are not cut up. The watershed of ``-distance`` restricted to the mask then
    grows the markers into instances.
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.morphology import local_maxima
    from skimage.segmentation import watershed

    binary = _binary(mask)
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)) or min_distance < 1:
        raise ConfigError(f"min_distance={min_distance!r} is invalid; pass an integer >= 1")
    if footprint is not None and (not isinstance(footprint, (int, np.integer)) or footprint < 1):
        raise ConfigError(f"footprint={footprint!r} is invalid; pass an integer >= 1 or None")
    structure = connectivity_structure(connectivity)
    components, n_components = ndimage.label(binary, structure=structure)
    if n_components == 0:
        return components.astype(np.int32)
    distance = ndimage.distance_transform_edt(binary)
    peaks = peak_local_max(
        distance,
        min_distance=int(min_distance),
        threshold_abs=0.0,
        footprint=None if footprint is None else np.ones((footprint, footprint), dtype=bool),
        labels=components,
        exclude_border=False,
    )
    plateaus, _ = ndimage.label(binary & local_maxima(distance, connectivity=connectivity), structure)
    plateau_ids = plateaus[tuple(peaks.T)]
    peaks = peaks[plateau_ids > 0]
    _, marker_ids = np.unique(plateau_ids[plateau_ids > 0], return_inverse=True)
    markers = np.zeros(binary.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = marker_ids.reshape(-1) + 1
    return watershed(-distance, markers, mask=binary, connectivity=connectivity).astype(np.int32)


def instances_per_class(
    class_map: Any,
    num_classes: int,
    method: str = "watershed",
    background: int = 0,
    ignore_index: int = 255,
    min_distance: int = 3,
    connectivity: int = 2,
) -> dict[int, np.ndarray]:
    """Instance label maps (H, W) int32 for every foreground class of ``class_map`` (H, W) int.

    Returns ``{class: labels}`` for each class in ``0..num_classes-1`` except ``background`` (absent
    classes get an all-zero map). ``ignore_index`` pixels belong to no instance. ``method`` is
    "connected" (connected components) or "watershed" (``watershed_instances`` with ``min_distance``).
    """
    check_choice("instance method", method, INSTANCE_METHODS)
    array = to_mask_array(class_map, name="class_map")
    if array.dtype == bool:
        array = array.astype(np.int64)
    values = np.unique(array)
    bad = [int(v) for v in values if v != ignore_index and not 0 <= v < num_classes]
    if bad:
        raise ConfigError(
            f"class_map has values {bad} outside 0..{num_classes - 1} (num_classes={num_classes}) "
            f"and not ignore_index={ignore_index}; pass the right num_classes"
        )
    result = {}
    for cls in range(num_classes):
        if cls == background:
            continue
        binary = array == cls
        if method == "connected":
            result[cls] = connected_instances(binary, connectivity)
        else:
            result[cls] = watershed_instances(binary, min_distance=min_distance, connectivity=connectivity)
    return result


def count_instances(
    class_map: Any,
    num_classes: int,
    method: str = "watershed",
    background: int = 0,
    ignore_index: int = 255,
    min_distance: int = 3,
    connectivity: int = 2,
) -> dict[int, int]:
    """Number of instances per foreground class of ``class_map`` (H, W) int: ``{class: count}``.

    Same arguments and classes as ``instances_per_class``.
    """
    maps = instances_per_class(
        class_map, num_classes, method, background, ignore_index, min_distance, connectivity
    )
    return {cls: int(labels.max()) for cls, labels in maps.items()}
