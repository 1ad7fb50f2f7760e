"""Segmentation losses: soft Dice, soft Jaccard, and a weighted sum of terms built from a spec string.

Every loss takes ``(logits, targets)``: logits (B, C, H, W); targets (B, H, W) int64 class indices.
Multiclass models have C = number of classes (softmax); binary models have C = 1 (sigmoid of the
foreground, class 1; class 0 is background). Pixels whose target is ``ignore_index`` are skipped by
every term: their logits change neither the loss nor its gradient. Half-precision logits (mixed
precision) are scored in float32.

Soft Dice and Jaccard sum over the batch and the pixels per class (not per image), then average
the per-class losses. A class absent from both the target and the prediction has zero numerator
and denominator; the ``eps`` added to both makes its loss 0 (not NaN), and ~0 while its predicted
mass is far below ``eps``. Binary Dice/Jaccard score the foreground channel alone (background
Dice would dominate the loss on images that are mostly background).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.errors import ConfigError, DataError, check_choice
from foveal.losses.focal import focal_loss

TERMS = ("ce", "dice", "jaccard", "focal")


def soft_dice_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    binary: bool,
    ignore_index: int = 255,
    eps: float = 1e-6,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Soft Dice loss: per class ``1 - (2 * sum(p * t) + eps) / (sum(p**2) + sum(t**2) + eps)``.

    ``p``: softmax probabilities (binary: sigmoid foreground probability); ``t``: one-hot targets;
    sums run over the batch and the non-ignored pixels. Returns the mean over classes, weighted by
    ``class_weights`` (C,) when given (binary scores the foreground only, so weights do not matter).
    """
    inter, p_sq, t_sq = _soft_sums(logits, targets, binary, ignore_index)
    per_class = 1.0 - (2.0 * inter + eps) / (p_sq + t_sq + eps)
    return _class_mean(per_class, class_weights, binary)


def soft_jaccard_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    binary: bool,
    ignore_index: int = 255,
    eps: float = 1e-6,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Soft Jaccard (IoU) loss: per class ``1 - (sum(p*t) + eps) / (sum(p**2) + sum(t**2) - sum(p*t) + eps)``.

    Same conventions as :func:`soft_dice_loss`.
    """
    inter, p_sq, t_sq = _soft_sums(logits, targets, binary, ignore_index)
    per_class = 1.0 - (inter + eps) / (p_sq + t_sq - inter + eps)
    return _class_mean(per_class, class_weights, binary)


class SegmentationLoss(nn.Module):
    """Weighted sum of segmentation loss terms; build it with :func:`build_segmentation_loss`.

    ``forward(logits (B, C, H, W), targets (B, H, W))`` returns ``{"loss": sum of weight * term,
    <term>: unweighted term value, ...}``, every value a scalar tensor.

    Terms: "ce" (multiclass: ``F.cross_entropy`` with ``class_weights`` and ``ignore_index``; binary:
    BCE with logits on the one channel, a pixel weighed by its target class's weight, weight-normalised
    mean as ``F.cross_entropy``), "focal" (:func:`foveal.losses.focal.focal_loss` over the non-ignored
    pixels; softmax with ``class_weights`` as alpha, or sigmoid with each pixel weighed by its target
    class's weight; plain mean), "dice" (:func:`soft_dice_loss`), "jaccard" (:func:`soft_jaccard_loss`).
    ``class_weights`` has one entry per class (2 for binary: background, foreground). When every pixel
    is ignored each term is 0 (still attached to the graph).
    """

    def __init__(
        self,
        terms: list[tuple[str, float]],
        *,
        binary: bool,
        num_classes: int,
        ignore_index: int = 255,
        class_weights: Tensor | None = None,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if binary and num_classes != 2:
            raise ConfigError(
                f"a binary segmentation loss needs num_classes 2 (background, foreground), got {num_classes}"
            )
        if not binary and num_classes < 2:
            raise ConfigError(f"a multiclass segmentation loss needs num_classes >= 2, got {num_classes}")
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32).detach().clone()
            if class_weights.shape != (num_classes,):
                raise ConfigError(
                    f"class_weights must have {num_classes} entries (one per class), "
                    f"got shape {tuple(class_weights.shape)}"
                )
        self.terms = list(terms)
        self.binary = binary
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.focal_gamma = focal_gamma
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        channels = 1 if self.binary else self.num_classes
        if logits.ndim != 4 or logits.shape[1] != channels:
            raise ValueError(f"logits must have shape (B, {channels}, H, W), got {tuple(logits.shape)}")
        _check_targets(logits, targets, self.binary, self.ignore_index)
        logits = _full_precision(logits)
        out: dict[str, Tensor] = {}
        total = logits.new_zeros(())
        for name, weight in self.terms:
            value = self._term(name, logits, targets)
            out[name] = value
            total = total + weight * value
        out["loss"] = total
        return out

    def _term(self, name: str, logits: Tensor, targets: Tensor) -> Tensor:
        kwargs = {"binary": self.binary, "ignore_index": self.ignore_index}
        if name == "dice":
            return soft_dice_loss(logits, targets, class_weights=self.class_weights, **kwargs)
        if name == "jaccard":
            return soft_jaccard_loss(logits, targets, class_weights=self.class_weights, **kwargs)
        valid = targets != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        weights = None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)
        if name == "ce" and not self.binary:
            return F.cross_entropy(logits, targets, weight=weights, ignore_index=self.ignore_index)
        # Flatten to the non-ignored pixels: (N, C) logits and (N,) targets.
        flat_logits = logits.permute(0, 2, 3, 1)[valid]
        flat_targets = targets[valid]
        if not self.binary:
            return focal_loss(flat_logits, flat_targets, gamma=self.focal_gamma, alpha=weights)
        fg = flat_targets.to(logits.dtype).unsqueeze(1)
        if name == "ce":
            losses = F.binary_cross_entropy_with_logits(flat_logits, fg, reduction="none").squeeze(1)
        else:
            losses = focal_loss(flat_logits, fg, gamma=self.focal_gamma, multilabel=True, reduction="none")
            losses = losses.squeeze(1)
        if weights is None:
            return losses.mean()
        pixel_weights = weights[flat_targets]
        if name == "ce":
            return (losses * pixel_weights).sum() / pixel_weights.sum().clamp_min(
                torch.finfo(logits.dtype).tiny
            )
        return (losses * pixel_weights).mean()


def build_segmentation_loss(
    spec: str = "ce",
    *,
    binary: bool,
    num_classes: int,
    ignore_index: int = 255,
    class_weights: Tensor | None = None,
    focal_gamma: float = 2.0,
) -> SegmentationLoss:
    """Build a picklable :class:`SegmentationLoss` from ``spec``, a "+"-separated weighted sum.

    Examples: "ce", "dice", "ce+dice", "0.5*ce+dice", "focal+jaccard". Terms: ce, dice, jaccard, focal;
    a weight is a positive number before ``*``. ``num_classes`` counts the classes (2 for binary).
    """
    return SegmentationLoss(
        parse_loss_spec(spec),
        binary=binary,
        num_classes=num_classes,
        ignore_index=ignore_index,
        class_weights=class_weights,
        focal_gamma=focal_gamma,
    )


def parse_loss_spec(spec: str) -> list[tuple[str, float]]:
    """Parse "0.5*ce+dice" into [("ce", 0.5), ("dice", 1.0)]; ConfigError on bad syntax or names."""
    terms: list[tuple[str, float]] = []
    for part in spec.split("+"):
        part = part.strip().lower()
        if not part:
            raise ConfigError(
                f"empty term in segmentation loss '{spec}'; write e.g. 'ce+dice' or '0.5*ce+dice'"
            )
        weight_text, star, name = part.rpartition("*")
        name = name.strip()
        weight = 1.0
        if star:
            try:
                weight = float(weight_text)
            except ValueError:
                weight = math.nan
            if not math.isfinite(weight) or weight <= 0:
                raise ConfigError(
                    f"bad weight '{weight_text.strip()}' in segmentation loss term '{part}' of '{spec}'; "
                    "write WEIGHT*TERM with a positive number, e.g. '0.5*dice'"
                )
        check_choice("segmentation loss term", name, TERMS)
        if name in (seen for seen, _w in terms):
            raise ConfigError(f"segmentation loss term '{name}' appears twice in '{spec}'; give it once")
        terms.append((name, weight))
    return terms


def _check_targets(logits: Tensor, targets: Tensor, binary: bool, ignore_index: int) -> None:
    """Shapes must agree and non-ignored targets must be class indices (DataError otherwise)."""
    expected = (logits.shape[0], *logits.shape[2:])
    if targets.ndim != 3 or tuple(targets.shape) != expected:
        raise ValueError(f"targets must have shape {expected} (B, H, W), got {tuple(targets.shape)}")
    n_classes = 2 if binary else logits.shape[1]
    labelled = targets[targets != ignore_index]
    if labelled.numel() == 0:
        return
    low, high = (int(v) for v in torch.aminmax(labelled))
    if low < 0 or high >= n_classes:
        raise DataError(
            f"mask values must be class indices 0..{n_classes - 1} or {ignore_index} (ignored), "
            f"got values {low}..{high}; check the masks or the class list"
        )


def _soft_sums(logits: Tensor, targets: Tensor, binary: bool, ignore_index: int) -> tuple[Tensor, ...]:
    """Per-class (K,) sums of p*t, p**2 and t**2 over the batch and the non-ignored pixels."""
    if logits.ndim != 4:
        raise ValueError(f"logits must have shape (B, C, H, W), got {tuple(logits.shape)}")
    if binary != (logits.shape[1] == 1):
        raise ValueError(
            f"binary segmentation needs logits with 1 channel and multiclass 2 or more, "
            f"got {logits.shape[1]} channels with binary={binary}"
        )
    _check_targets(logits, targets, binary, ignore_index)
    logits = _full_precision(logits)
    valid = (targets != ignore_index).unsqueeze(1).to(logits.dtype)
    safe = targets.masked_fill(targets == ignore_index, 0)
    if binary:
        probs = torch.sigmoid(logits)
        onehot = (safe == 1).unsqueeze(1).to(logits.dtype)
    else:
        probs = logits.softmax(dim=1)
        onehot = torch.zeros_like(probs).scatter_(1, safe.unsqueeze(1), 1.0)
    probs = probs * valid
    onehot = onehot * valid
    dims = (0, 2, 3)
    return (probs * onehot).sum(dims), probs.pow(2).sum(dims), onehot.sum(dims)  # onehot**2 == onehot


def _full_precision(logits: Tensor) -> Tensor:
    """float16/bfloat16 logits (mixed precision) as float32: sums over millions of pixels need it."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _class_mean(per_class: Tensor, class_weights: Tensor | None, binary: bool) -> Tensor:
    if class_weights is None or binary:
        return per_class.mean()
    weights = torch.as_tensor(class_weights, dtype=per_class.dtype, device=per_class.device)
    if weights.shape != per_class.shape:
        raise ConfigError(
            f"class_weights must have {per_class.numel()} entries, got shape {tuple(weights.shape)}"
        )
    return (per_class * weights).sum() / weights.sum()
