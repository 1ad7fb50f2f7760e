"""Post-processing of segmentation masks: morphology clean-up and instance splitting.

Numpy (H, W) masks in and out (torch tensors accepted); scipy/scikit-image load on first use.
"""

from foveal.ops.instances import (
    INSTANCE_METHODS,
    connected_instances,
    count_instances,
    instances_per_class,
    watershed_instances,
)
from foveal.ops.morphology import (
    closing,
    dilate,
    erode,
    fill_holes,
    opening,
    postprocess_mask,
    remove_small_components,
    to_mask_array,
)

__all__ = [
    "INSTANCE_METHODS",
    "closing",
    "connected_instances",
    "count_instances",
    "dilate",
    "erode",
    "fill_holes",
    "instances_per_class",
    "opening",
    "postprocess_mask",
    "remove_small_components",
    "to_mask_array",
    "watershed_instances",
]
