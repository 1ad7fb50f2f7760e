"""Sample: one image file and its labels, as every format reader returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Sample:
    """One image and its targets.

    - ``label``: a class index (binary/multiclass classification) or a list of class indices
      (multilabel).
    - ``mask``: path of a semantic mask file (segmentation), decoded by the dataset's mask reader.
    - ``objects``: per-object annotations in COCO form (``category_id``, ``bbox`` xywh pixels,
      ``segmentation`` polygons or RLE, ``iscrowd``, ``keypoints``), for formats that carry them.
    - ``values``: regression targets, one float per target column, in the dataset's target order
      (``RegressionData.target_names``).
    """

    path: str
    label: int | list[int] | None = None
    mask: str | None = None
    objects: list[dict[str, Any]] | None = None
    values: list[float] | None = None
