"""Semantic-segmentation metrics from a pixel confusion matrix, as plain JSON-ready dicts.

Accumulate :func:`confusion_matrix` over batches (it is additive), then call
:func:`segmentation_metrics` once. Conventions:

- Rows of the confusion matrix are target classes, columns predicted classes; pixels whose target
  is ``ignore_index`` are skipped.
- Per class c: ``IoU = TP / (TP + FP + FN)``, ``Dice = 2 TP / (2 TP + FP + FN)``,
  ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``. A value whose denominator is 0 is
  None: a class absent from both the targets and the predictions has IoU and Dice None, and is left
  out of ``miou`` and ``dice`` (the means run over the present classes only, so a dataset that never
  shows a class is not scored 0 or 1 for it).
- Numbers are Python floats rounded to 7 decimals; never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.errors import DataError


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """(C, C) int64 pixel counts, rows = target class, columns = predicted class, on ``pred``'s device.

    ``pred`` and ``target``: int64 class maps of the same shape, e.g. (N, H, W); target pixels equal to
    ``ignore_index`` are skipped. Raises DataError for a target value outside 0..C-1 (and not ignored)
    and ValueError for such a prediction.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    valid = target != ignore_index
    target = target[valid].long()
    pred = pred[valid].long()
    if target.numel():
        low, high = (int(v) for v in torch.aminmax(target))
        if low < 0 or high >= num_classes:
            raise DataError(
                f"mask values must be class indices 0..{num_classes - 1} or {ignore_index} (ignored), "
                f"got values {low}..{high}; check the masks or the class list"
            )
        low, high = (int(v) for v in torch.aminmax(pred))
        if low < 0 or high >= num_classes:
            raise ValueError(f"predictions must lie in 0..{num_classes - 1}, got values {low}..{high}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_metrics(cm: Tensor | np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Score a (C, C) confusion matrix (rows = target, columns = prediction).

    Keys: ``miou`` and ``dice`` (means of the per-class IoU and Dice over the present classes),
    ``pixel_accuracy`` (correct / labelled pixels), ``per_class`` {name: {iou, dice, precision, recall,
    support (target pixels), predicted (predicted pixels)}}, ``confusion_matrix`` (list of lists of
    ints) and ``present_classes`` (classes in the targets or the predictions). Undefined values are
    None (see the module docstring); with no labelled pixel every score is None.
    """
    counts = np.asarray(cm.detach().cpu() if isinstance(cm, Tensor) else cm).astype(np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix must be ({n}, {n}) for {n} class names, got {counts.shape}")
    tp = np.diag(counts)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    iou = _ratios(tp, tp + fp + fn)
    dice = _ratios(2 * tp, 2 * tp + fp + fn)
    precision = _ratios(tp, predicted)
    recall = _ratios(tp, support)
    total = int(counts.sum())
    return {
        "miou": mean_over_present(iou),
        "dice": mean_over_present(dice),
        "pixel_accuracy": _num(tp.sum() / total) if total else None,
        "per_class": {
            name: {
                "iou": iou[c],
                "dice": dice[c],
                "precision": precision[c],
                "recall": recall[c],
                "support": int(support[c]),
                "predicted": int(predicted[c]),
            }
            for c, name in enumerate(class_names)
        },
        "confusion_matrix": counts.tolist(),
        "present_classes": int(((tp + fp + fn) > 0).sum()),
    }


def mean_over_present(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None (rounded to 7 decimals), or None when all are None."""
    defined = [float(v) for v in values if v is not None]
    return _num(sum(defined) / len(defined)) if defined else None


def _ratios(numerator: np.ndarray, denominator: np.ndarray) -> list[float | None]:
    return [
        _num(a / b) if b > 0 else None for a, b in zip(numerator.tolist(), denominator.tolist(), strict=True)
    ]


def _num(value: float) -> float:
    return round(float(value), 7)


def mean_iou(target: np.ndarray, predicted: np.ndarray, ignore_index: int = 255) -> float:
    """Per-image mIoU of (H, W) class maps: mean IoU over classes in either map, ignored pixels left out."""
    valid = target != ignore_index
    t, p = target[valid], predicted[valid]
    classes = np.union1d(np.unique(t), np.unique(p))
    if not len(classes):
        return 1.0
    return float(
        np.mean(
            [np.count_nonzero((t == c) & (p == c)) / np.count_nonzero((t == c) | (p == c)) for c in classes]
        )
    )
