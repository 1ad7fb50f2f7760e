"""Test-time augmentation and ensembles, one mechanism: several (model, view) passes merged per batch.

A *view* is a geometric transform of the input batch (flips, a rescale). ``MergedModel`` runs every
member model on every view, maps each output back to the original geometry (``Task.unview``) and merges
them (``Task.merge``): probabilities averaged for classification and segmentation, weighted boxes
fusion for detection. It is an ``nn.Module`` whose outputs have the member's own form, so evaluation,
metrics and prediction use it unchanged.

TTA spec (``--tta``): comma-separated views from ``hflip``, ``vflip``, ``scale`` (0.75x and 1.25x);
the identity is always included. ``--tta`` alone means ``hflip``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.errors import ConfigError

TTA_VIEWS = ("hflip", "vflip", "scale")
SCALES = (0.75, 1.25)
MERGE_METHODS = ("mean", "weighted", "vote")


@dataclass(frozen=True)
class View:
    """Flip horizontally / vertically, then resize by ``scale`` (sides rounded to multiples of 8)."""

    hflip: bool = False
    vflip: bool = False
    scale: float = 1.0

    @property
    def name(self) -> str:
        parts = [p for p, on in (("hflip", self.hflip), ("vflip", self.vflip)) if on]
        if self.scale != 1.0:
            parts.append(f"scale{self.scale:g}")
        return "+".join(parts) or "identity"

    @property
    def identity(self) -> bool:
        return not self.hflip and not self.vflip and self.scale == 1.0

    def apply(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> the viewed batch."""
        if self.hflip:
            images = images.flip(-1)
        if self.vflip:
            images = images.flip(-2)
        if self.scale != 1.0:
            h, w = images.shape[-2:]
            size = (max(8, round(h * self.scale / 8) * 8), max(8, round(w * self.scale / 8) * 8))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images

    def invert_map(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, C, h, w) maps of the viewed batch -> (B, C, H, W) in the original geometry."""
        if tuple(maps.shape[-2:]) != tuple(size):
            maps = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)
        if self.vflip:
            maps = maps.flip(-2)
        if self.hflip:
            maps = maps.flip(-1)
        return maps

    def invert_boxes(self, boxes: Tensor, viewed: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """(N, 4) xyxy pixels of the viewed (h, w) image -> xyxy pixels of the original (H, W)."""
        boxes = boxes.float().clone()
        boxes[:, 0::2] *= size[1] / viewed[1]
        boxes[:, 1::2] *= size[0] / viewed[0]
        if self.hflip:
            boxes[:, [0, 2]] = size[1] - boxes[:, [2, 0]]
        if self.vflip:
            boxes[:, [1, 3]] = size[0] - boxes[:, [3, 1]]
        return boxes


def parse_tta(spec: str | bool | None) -> list[View]:
    """Views for a ``--tta`` spec (identity first); [] for None/False/'none'."""
    if spec in (None, False, "", "none"):
        return []
    names = ["hflip"] if spec is True else [s.strip() for s in str(spec).split(",") if s.strip()]
    unknown = [n for n in names if n not in TTA_VIEWS]
    if unknown:
        raise ConfigError(f"--tta {spec}: unknown view(s) {unknown}; choose from {', '.join(TTA_VIEWS)}")
    flips = [View()]
    if "hflip" in names:
        flips.append(View(hflip=True))
    if "vflip" in names:
        flips += [View(hflip=f.hflip, vflip=True) for f in list(flips)]
    views = list(flips)
    if "scale" in names:
        views += [View(scale=s) for s in SCALES]
    return views


class MergedModel(nn.Module):
    """Members x views, merged by ``task.merge``; ``weights``: one per member (None: equal)."""

    def __init__(
        self,
        task: Any,
        models: Sequence[nn.Module],
        views: Sequence[View] = (),
        weights: Sequence[float] | None = None,
        method: str = "mean",
    ) -> None:
        super().__init__()
        if method not in MERGE_METHODS:
            raise ConfigError(f"merge method '{method}': choose from {', '.join(MERGE_METHODS)}")
        if weights is not None and len(weights) != len(models):
            raise ConfigError(f"{len(weights)} weights for {len(models)} models; pass one weight per model")
        if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
            raise ConfigError(f"ensemble weights {list(weights)} must be >= 0 with a positive sum")
        self.task, self.members = task, nn.ModuleList(models)
        self.views = list(views) or [View()]
        self.weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
        self.method = method

    @torch.no_grad()
    def forward(self, images: Tensor) -> Any:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        outputs, weights = [], []
        for model, weight in zip(self.members, self.weights, strict=True):
            for view in self.views:
                viewed = view.apply(images)
                out = self.task.forward(model, viewed)
                outputs.append(out if view.identity else self.task.unview(out, view, viewed.shape[-2:], size))
                weights.append(weight)
        return outputs[0] if len(outputs) == 1 else self.task.merge(outputs, weights, self.method)
