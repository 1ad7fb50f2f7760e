"""Focal loss (softmax and sigmoid) and the classification-loss factory.

Every loss here takes ``(logits, targets)``: logits (N, C); targets (N,) class indices, or (N, C)
floats (soft probabilities from MixUp/CutMix for single-label, 0/1 for multilabel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.errors import ConfigError, check_choice

LOSS_NAMES = ("ce", "bce", "focal")
REDUCTIONS = ("mean", "sum", "none")


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    multilabel: bool = False,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss (Lin et al. 2017) of ``logits`` (N, C).

    Single-label (softmax): targets (N,) long or (N, C) soft probabilities; the loss of a sample is
    ``-sum_c t_c * alpha_c * (1 - p_c)**gamma * log p_c`` with the targets smoothed as in
    ``F.cross_entropy`` (``t * (1 - s) + s / C``); gamma=0 and alpha=None give ``F.cross_entropy``.
    ``reduction="none"`` gives (N,); "mean" averages over samples (not weight-normalised).

    Multilabel (sigmoid): targets (N, C) 0/1 floats, smoothed to ``t * (1 - s) + s / 2``; equals
    ``torchvision.ops.sigmoid_focal_loss``. ``reduction="none"`` gives (N, C); "mean" averages all.

    ``alpha``: None for no weighting; a float scales every term (single-label) or weighs positives by
    alpha and negatives by 1 - alpha (multilabel, as torchvision); a (C,) tensor weighs class c's term.
    """
    check_choice("loss reduction", reduction, REDUCTIONS)
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    per_term = _sigmoid_focal if multilabel else _softmax_focal
    loss = per_term(logits, targets, gamma, alpha, label_smoothing)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _softmax_focal(
    logits: Tensor, targets: Tensor, gamma: float, alpha: float | Tensor | None, label_smoothing: float
) -> Tensor:
    n_classes = logits.shape[1]
    if targets.ndim == 1:
        targets = F.one_hot(targets.long(), n_classes)
    elif targets.shape != logits.shape:
        raise ValueError(f"targets must be (N,) or {tuple(logits.shape)}, got {tuple(targets.shape)}")
    targets = targets.to(logits.dtype) * (1.0 - label_smoothing) + label_smoothing / n_classes
    log_p = F.log_softmax(logits, dim=1)
    terms = -targets * (1.0 - log_p.exp()).pow(gamma) * log_p
    if alpha is not None:
        terms = terms * torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
    return terms.sum(dim=1)


def _sigmoid_focal(
    logits: Tensor, targets: Tensor, gamma: float, alpha: float | Tensor | None, label_smoothing: float
) -> Tensor:
    from torchvision.ops import sigmoid_focal_loss

    if targets.shape != logits.shape:
        raise ValueError(
            f"multilabel targets must have shape {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    targets = targets.to(logits.dtype) * (1.0 - label_smoothing) + label_smoothing / 2
    if alpha is None or isinstance(alpha, Tensor):
        loss = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=gamma, reduction="none")
        return loss if alpha is None else loss * alpha.to(device=logits.device, dtype=logits.dtype)
    return sigmoid_focal_loss(logits, targets, alpha=float(alpha), gamma=gamma, reduction="none")


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; a tensor ``alpha`` is a buffer, so it follows ``.to()``."""

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Tensor | None = None,
        multilabel: bool = False,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        check_choice("loss reduction", reduction, REDUCTIONS)
        self.gamma = gamma
        self.multilabel = multilabel
        self.label_smoothing = label_smoothing
        self.reduction = reduction
        self.scalar_alpha = None if isinstance(alpha, Tensor) else alpha
        self.register_buffer("alpha", alpha.detach().float().clone() if isinstance(alpha, Tensor) else None)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        alpha = self.alpha if self.alpha is not None else self.scalar_alpha
        return focal_loss(
            logits, targets, self.gamma, alpha, self.multilabel, self.label_smoothing, self.reduction
        )


class BCEWithLogits(nn.Module):
    """Mean binary cross-entropy on logits (N, C); targets (N, C) 0/1 or (N,) class indices (one-hot).

    ``weight`` (C,) scales each label's loss; targets are smoothed to ``t * (1 - s) + s / 2``.
    """

    def __init__(self, weight: Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight.detach().float().clone() if weight is not None else None)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 1:
            targets = F.one_hot(targets.long(), logits.shape[1])
        targets = targets.to(logits.dtype) * (1.0 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, targets, weight=self.weight)


def build_classification_loss(
    name: str,
    *,
    multilabel: bool,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
) -> Callable[[Tensor, Tensor], Tensor]:
    """Build a picklable ``loss(logits (N, C), targets) -> scalar`` module.

    ``name``: "ce" (``nn.CrossEntropyLoss``; takes (N,) indices or (N, C) soft targets; single-label
    only), "bce" (:class:`BCEWithLogits`), "focal" (:class:`FocalLoss`, ``class_weights`` as alpha) or
    "auto" ("bce" for multilabel, "ce" otherwise). ``class_weights`` (C,) weighs each class/label.
    """
    name = check_choice("classification loss", name, ("auto", *LOSS_NAMES))
    if name == "auto":
        name = "bce" if multilabel else "ce"
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if name == "ce":
        if multilabel:
            raise ConfigError("loss 'ce' cannot train multilabel targets; use loss 'bce' or 'focal'")
        return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
    if name == "bce":
        return BCEWithLogits(weight=class_weights, label_smoothing=label_smoothing)
    return FocalLoss(gamma=gamma, alpha=class_weights, multilabel=multilabel, label_smoothing=label_smoothing)
