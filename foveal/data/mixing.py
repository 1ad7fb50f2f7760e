"""Batch-level MixUp / CutMix for single-label and multilabel classification.

Each sample is mixed with its neighbour in the batch (``images.roll(1, 0)``, as torchvision does) by a
weight ``lam ~ Beta(alpha, alpha)``: MixUp blends whole images, CutMix pastes a box of area
``(1 - lam) * H * W`` and then sets ``lam`` from the box actually pasted (after clipping at the border).
Targets are mixed by the same ``lam``. Randomness comes from torch's global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from foveal.errors import ConfigError, DataError


class BatchMix:
    """Mix a batch with MixUp or CutMix (one of the enabled ones, chosen at random per batch).

    ``__call__(images (B, C, H, W) float, targets)`` -> ``(mixed images (B, C, H, W), soft targets (B, K))``.
    ``targets`` are class indices ``(B,)`` long (single-label; soft targets sum to 1) or multi-hot
    ``(B, K)`` float (multilabel, or already-soft single-label targets).
    """

    def __init__(
        self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, multilabel: bool = False
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0 or not (mixup_alpha or cutmix_alpha):
            raise ConfigError(
                f"BatchMix needs mixup or cutmix alpha > 0, got mixup={mixup_alpha}, cutmix={cutmix_alpha}"
            )
        self.num_classes = num_classes
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.multilabel = multilabel

    def __repr__(self) -> str:
        return (
            f"BatchMix(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, multilabel={self.multilabel})"
        )

    def _soft_targets(self, targets: Tensor, batch: int, dtype: torch.dtype) -> Tensor:
        if targets.ndim == 2 and targets.shape == (batch, self.num_classes):
            return targets.to(dtype)
        if self.multilabel or targets.ndim != 1 or targets.shape[0] != batch or targets.is_floating_point():
            expected = f"({batch}, {self.num_classes}) float"
            expected += "" if self.multilabel else f" or ({batch},) long"
            got = f"{tuple(targets.shape)} {targets.dtype}"
            raise ValueError(f"BatchMix targets must be {expected}, got {got}")
        bad = targets[(targets < 0) | (targets >= self.num_classes)]
        if bad.numel():
            raise DataError(f"class index {int(bad[0])} is outside 0..{self.num_classes - 1}")
        return torch.nn.functional.one_hot(targets, self.num_classes).to(dtype)

    def __call__(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        if images.ndim != 4 or not images.is_floating_point():
            got = f"{tuple(images.shape)} {images.dtype}"
            raise ValueError(f"BatchMix images must be float (B, C, H, W), got {got}")
        soft = self._soft_targets(targets, images.shape[0], images.dtype)
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or bool(torch.rand(()) < 0.5))
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample())
        other = images.roll(1, 0)
        if use_cutmix:
            mixed, lam = _paste_box(images, other, lam)
        else:
            mixed = lam * images + (1.0 - lam) * other
        return mixed, lam * soft + (1.0 - lam) * soft.roll(1, 0)


def _paste_box(images: Tensor, other: Tensor, lam: float) -> tuple[Tensor, float]:
    """Paste a random box of ``other`` of area ~(1 - lam)*H*W into ``images``; return the true lam."""
    height, width = images.shape[-2:]
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    half = 0.5 * math.sqrt(1.0 - lam)
    half_h, half_w = int(half * height), int(half * width)
    y1, y2 = max(cy - half_h, 0), min(cy + half_h, height)
    x1, x2 = max(cx - half_w, 0), min(cx + half_w, width)
    mixed = images.clone()
    mixed[..., y1:y2, x1:x2] = other[..., y1:y2, x1:x2]
    return mixed, 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
