"""Sample: one image file and its labels, as every format reader returns them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sample:
    """One image and its targets.

    ``label`` is a class index (binary/multiclass classification) or a list of class
    indices (multilabel). Later tasks add boxes (xyxy, absolute pixels), masks and keypoints.
    """

    path: str
    label: int | list[int] | None = None
