"""Classification metrics as plain JSON-ready dicts, computed with torchmetrics' functional API.

Conventions (each number equals scikit-learn's with ``zero_division=0``, to the 7 decimals kept):

- Predictions: ``multiclass`` takes the argmax of ``probs``; ``binary`` predicts class 1 where
  ``probs[:, 1] >= threshold``; ``multilabel`` predicts label c where ``probs[:, c] >= threshold[c]``.
- Macro precision / recall / F1 average the per-class values over the classes that occur in the
  targets or in the predictions (scikit-learn's default label set); multilabel averages over every
  label, as scikit-learn does.
- ``accuracy`` is the fraction of samples predicted exactly right; for multilabel that is the subset
  (exact-match) accuracy, and ``hamming_accuracy`` is the fraction of correct (sample, label) pairs.
- AUROC and average precision are one-vs-rest per class. A class's AUROC is undefined (None) when the
  targets hold only positives or only negatives for it, and its AP when they hold no positive. The
  macro averages run over the classes where the value is defined (None when there is none); where
  scikit-learn raises or warns for such a class, this returns the average over the others.

torchmetrics is imported inside the functions: it is slow to import, and the plots only need
:func:`confusion_matrix_normalised`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.errors import ConfigError, check_choice

KINDS = ("multiclass", "binary", "multilabel")


def classification_metrics(
    probs: Tensor,
    targets: Tensor,
    kind: str,
    class_names: list[str],
    threshold: float | Sequence[float] = 0.5,
) -> dict[str, Any]:
    """Score ``probs`` against ``targets`` and return a JSON-serialisable dict.

    ``probs``: (N, C) softmax probabilities (multiclass, binary with C == 2 and class 1 positive) or
    sigmoid probabilities (multilabel). ``targets``: (N,) class indices, or (N, C) 0/1 for multilabel.
    ``threshold``: binary and multilabel only; multilabel also takes one threshold per label.
    Keys: n, accuracy, precision_macro, recall_macro, f1_macro, auroc, average_precision,
    per_class {name: {precision, recall, f1, support, ap, auroc}}, confusion_matrix (rows = true,
    columns = predicted; multilabel: one [[tn, fp], [fn, tp]] per label), and for multilabel also
    hamming_accuracy and f1_samples.
    """
    check_choice("classification kind", kind, KINDS)
    probs = probs.detach().float().cpu()
    targets = targets.detach().long().cpu()
    _check_shapes(probs, targets, kind, class_names)
    if kind == "multilabel":
        return _multilabel(probs, targets, class_names, threshold)
    return _single_label(probs, targets, kind, class_names, threshold)


def confusion_matrix_normalised(cm: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Row-normalise a confusion matrix (rows = true class); rows without samples stay zero.

    Works on (C, C) and on stacked per-label (C, 2, 2) matrices (normalises the last axis).
    """
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=-1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def _check_shapes(probs: Tensor, targets: Tensor, kind: str, class_names: list[str]) -> None:
    n_classes = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(
            f"probs must have shape (N, {n_classes}) for {n_classes} classes, got {tuple(probs.shape)}"
        )
    if kind == "binary" and n_classes != 2:
        raise ValueError(f"binary metrics need exactly 2 classes, got {n_classes}: {class_names}")
    expected = tuple(probs.shape) if kind == "multilabel" else (probs.shape[0],)
    if tuple(targets.shape) != expected:
        raise ValueError(f"targets must have shape {expected} for {kind} metrics, got {tuple(targets.shape)}")
    if probs.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero samples")
    high = 1 if kind == "multilabel" else n_classes - 1
    if targets.min() < 0 or targets.max() > high:
        raise ValueError(
            f"{kind} targets must lie in [0, {high}], "
            f"got values {targets.min().item()}..{targets.max().item()}"
        )


def _single_label(
    probs: Tensor, targets: Tensor, kind: str, names: list[str], threshold: float | Sequence[float]
) -> dict[str, Any]:
    from torchmetrics.functional import classification as tmf

    n_classes = len(names)
    if kind == "binary":
        if not isinstance(threshold, int | float):
            raise ConfigError(f"binary metrics take one threshold, got {threshold!r}")
        preds = (probs[:, 1] >= threshold).long()
    else:
        preds = probs.argmax(dim=1)
    support = torch.bincount(targets, minlength=n_classes)
    stats = {
        name: fn(preds, targets, num_classes=n_classes, average="none").tolist()
        for name, fn in (
            ("precision", tmf.multiclass_precision),
            ("recall", tmf.multiclass_recall),
            ("f1", tmf.multiclass_f1_score),
        )
    }
    in_macro = ((support + torch.bincount(preds, minlength=n_classes)) > 0).tolist()
    auroc, ap = _ranking_scores(probs, torch.nn.functional.one_hot(targets, n_classes))
    return {
        "n": int(targets.numel()),
        "accuracy": _num(tmf.multiclass_accuracy(preds, targets, num_classes=n_classes, average="micro")),
        **{
            f"{name}_macro": _mean([v for v, keep in zip(values, in_macro, strict=True) if keep])
            for name, values in stats.items()
        },
        "auroc": auroc[1] if kind == "binary" else _mean(auroc),
        "average_precision": ap[1] if kind == "binary" else _mean(ap),
        "per_class": _per_class(names, stats, support, auroc, ap),
        "confusion_matrix": tmf.multiclass_confusion_matrix(preds, targets, num_classes=n_classes).tolist(),
    }


def _multilabel(
    probs: Tensor, targets: Tensor, names: list[str], threshold: float | Sequence[float]
) -> dict[str, Any]:
    from torchmetrics.functional import classification as tmf

    n_labels = len(names)
    thresholds = torch.as_tensor(threshold, dtype=torch.float32)
    if thresholds.ndim > 1 or (thresholds.ndim == 1 and thresholds.numel() != n_labels):
        raise ConfigError(
            f"multilabel threshold must be one number or {n_labels} numbers (one per label), "
            f"got {threshold!r}"
        )
    preds = (probs >= thresholds).long()
    stats = {
        name: fn(preds, targets, num_labels=n_labels, average="none").tolist()
        for name, fn in (
            ("precision", tmf.multilabel_precision),
            ("recall", tmf.multilabel_recall),
            ("f1", tmf.multilabel_f1_score),
        )
    }
    auroc, ap = _ranking_scores(probs, targets)
    return {
        "n": int(targets.shape[0]),
        "accuracy": _num(tmf.multilabel_exact_match(preds, targets, num_labels=n_labels)),
        "hamming_accuracy": _num(
            tmf.multilabel_accuracy(preds, targets, num_labels=n_labels, average="micro")
        ),
        **{f"{name}_macro": _mean(values) for name, values in stats.items()},
        "f1_samples": _num(tmf.binary_f1_score(preds, targets, multidim_average="samplewise").mean()),
        "auroc": _mean(auroc),
        "average_precision": _mean(ap),
        "per_class": _per_class(names, stats, targets.sum(dim=0), auroc, ap),
        "confusion_matrix": tmf.multilabel_confusion_matrix(preds, targets, num_labels=n_labels).tolist(),
    }


def _ranking_scores(scores: Tensor, onehot: Tensor) -> tuple[list[float | None], list[float | None]]:
    """Per-column one-vs-rest AUROC and AP of ``scores`` (N, C) against 0/1 ``onehot`` (N, C)."""
    positives = onehot.sum(dim=0)
    negatives = onehot.shape[0] - positives
    auroc = _on_columns("auroc", scores, onehot, (positives > 0) & (negatives > 0))
    ap = _on_columns("average_precision", scores, onehot, positives > 0)
    return auroc, ap


def _on_columns(metric: str, scores: Tensor, onehot: Tensor, defined: Tensor) -> list[float | None]:
    """torchmetrics' ``metric`` on the ``defined`` columns only; None for the others."""
    from torchmetrics.functional import classification as tmf

    values: list[float | None] = [None] * scores.shape[1]
    columns = defined.nonzero().flatten().tolist()
    if not columns:
        return values
    if len(columns) == 1:  # torchmetrics' multilabel metrics need two labels or more
        computed = getattr(tmf, f"binary_{metric}")(scores[:, columns[0]], onehot[:, columns[0]]).reshape(1)
    else:
        fn = getattr(tmf, f"multilabel_{metric}")
        computed = fn(scores[:, columns], onehot[:, columns], num_labels=len(columns), average="none")
    for column, value in zip(columns, computed.tolist(), strict=True):
        values[column] = _num(value)
    return values


def _per_class(
    names: list[str],
    stats: dict[str, list[float]],
    support: Tensor,
    auroc: list[float | None],
    ap: list[float | None],
) -> dict[str, dict[str, float | int | None]]:
    return {
        name: {
            "precision": _num(stats["precision"][i]),
            "recall": _num(stats["recall"][i]),
            "f1": _num(stats["f1"][i]),
            "support": int(support[i]),
            "ap": ap[i],
            "auroc": auroc[i],
        }
        for i, name in enumerate(names)
    }


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values, or None when there is none."""
    defined = [float(v) for v in values if v is not None]
    return _num(sum(defined) / len(defined)) if defined else None


def _num(value: float | Tensor) -> float:
    """A Python float rounded to 7 decimals: torchmetrics computes in float32, so the digits past
    the 7th are noise (0.23000000417 -> 0.23)."""
    return round(float(value), 7)
