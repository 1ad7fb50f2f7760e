"""Error analysis computations: the samples a model gets most wrong, and the classes it confuses.

- Classification: :func:`top_losses` (images by their cross-entropy).
- Any confusion matrix: :func:`confused_pairs` (the largest off-diagonal cells).
- Detection: :func:`detection_errors` (false positives and false negatives, each with its kind).
- Segmentation: :func:`worst_segmentations` (images by per-image mIoU).

Each task's ``Task.error_analysis`` uses these; ``foveal.report.error_grids`` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.data.sample import Sample
from foveal.ops.boxes import box_iou_numpy


def _path(sample: Sample | str) -> str:
    return sample if isinstance(sample, str) else sample.path


# -- classification -----------------------------------------------------------------------------
def per_sample_loss(probs: Tensor | np.ndarray, targets: Tensor | np.ndarray) -> np.ndarray:
    """(N,) cross-entropy of ``probs`` (N, C): -log p[target] for (N,) class indices, the mean binary
    cross-entropy over labels for (N, C) 0/1 targets (multilabel). Probabilities are clipped to 1e-12."""
    p = np.clip(np.asarray(torch.as_tensor(probs).double().cpu()), 1e-12, 1.0 - 1e-12)
    t = np.asarray(torch.as_tensor(targets).cpu())
    if t.shape == p.shape:
        t = t.astype(np.float64)
        return -(t * np.log(p) + (1.0 - t) * np.log1p(-p)).mean(axis=1)
    return -np.log(p[np.arange(len(p)), t.astype(np.int64)])


def top_losses(
    samples: Sequence[Sample | str],
    probs: Tensor | np.ndarray,
    targets: Tensor | np.ndarray,
    class_names: Sequence[str],
    n: int = 16,
    threshold: float | Sequence[float] = 0.5,
) -> list[dict[str, Any]]:
    """The ``n`` samples with the largest :func:`per_sample_loss`, largest first (ties: sample order).

    ``probs`` (N, C) probabilities; ``targets`` (N,) class indices or (N, C) 0/1 (multilabel, whose
    predictions are the labels with probability >= ``threshold``, one value or one per label).
    Rows: index, path, loss, target, prediction (class names; lists for multilabel), confidence (the
    predicted class's probability; multilabel: the probability of ``worst_label``, the label with the
    largest loss) and correct.
    """
    p = np.asarray(torch.as_tensor(probs).double().cpu())
    t = np.asarray(torch.as_tensor(targets).cpu())
    if len(samples) != len(p) or len(t) != len(p):
        raise ValueError(f"need one sample per row: {len(samples)} samples, {len(p)} probs, {len(t)} targets")
    losses = per_sample_loss(p, t)
    order = np.argsort(-losses, kind="stable")[: max(0, n)]
    names = list(class_names)
    multilabel = t.shape == p.shape
    rows = []
    for i in order.tolist():
        row: dict[str, Any] = {"index": i, "path": _path(samples[i]), "loss": round(float(losses[i]), 6)}
        if multilabel:
            predicted = p[i] >= np.asarray(threshold, dtype=np.float64)
            label_loss = -(
                t[i] * np.log(np.clip(p[i], 1e-12, 1)) + (1 - t[i]) * np.log(np.clip(1 - p[i], 1e-12, 1))
            )
            worst = int(np.argmax(label_loss))
            row.update(
                target=[names[c] for c in np.flatnonzero(t[i] > 0.5)],
                prediction=[names[c] for c in np.flatnonzero(predicted)],
                confidence=round(float(p[i, worst]), 6),
                worst_label=names[worst],
                correct=bool(np.array_equal(predicted, t[i] > 0.5)),
            )
        else:
            guess = int(np.argmax(p[i]))
            row.update(
                target=names[int(t[i])],
                prediction=names[guess],
                confidence=round(float(p[i, guess]), 6),
                correct=guess == int(t[i]),
            )
        rows.append(row)
    return rows


def confused_pairs(
    confusion_matrix: Sequence[Sequence[float]] | np.ndarray, class_names: Sequence[str], n: int = 10
) -> list[tuple[str, str, int]]:
    """The ``n`` largest non-zero off-diagonal cells of a (C, C) confusion matrix (rows = true,
    columns = predicted) as (true name, predicted name, count), largest first (ties: row, column)."""
    cm = np.asarray(confusion_matrix)
    if cm.ndim != 2 or cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix must be ({len(class_names)}, {len(class_names)}), got {cm.shape}")
    off = cm.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off.ravel(), kind="stable")
    pairs = []
    for index in flat[: max(0, n)].tolist():
        row, col = divmod(index, cm.shape[1])
        if off[row, col] <= 0:
            break
        pairs.append((class_names[row], class_names[col], int(cm[row, col])))
    return pairs


# -- detection ----------------------------------------------------------------------------------
def _greedy(iou: np.ndarray, allowed: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (gt, pred) pairs with IoU >= threshold where ``allowed``, greedily by IoU descending."""
    gi, pi = np.nonzero((iou >= threshold) & allowed)
    order = np.argsort(-iou[gi, pi], kind="stable")
    used_g: set[int] = set()
    used_p: set[int] = set()
    pairs = []
    for g, p in zip(gi[order].tolist(), pi[order].tolist(), strict=True):
        if g not in used_g and p not in used_p:
            used_g.add(g)
            used_p.add(p)
            pairs.append((g, p))
    return pairs


def _field(prediction: Any, key: str) -> np.ndarray:
    value = prediction[key] if isinstance(prediction, dict) else getattr(prediction, key)
    return np.asarray(torch.as_tensor(value).cpu() if torch.is_tensor(value) else value)


def detection_errors(
    samples: Sequence[Sample],
    predictions: Sequence[Any],
    iou: float = 0.5,
    score: float = 0.3,
    class_names: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(false positive rows, false negative rows) of ``predictions`` against the samples' objects.

    ``samples``: ground truth in ``objects`` (COCO ``bbox`` xywh pixels, ``label`` class index; crowd
    objects are neither missed nor matched). ``predictions``: per sample, ``Detections`` or a dict of
    ``boxes`` (M, 4) xyxy pixels of the sample's image, ``scores`` (M,), ``labels`` (M,); only scores
    >= ``score`` count. Per image, predictions match ground truth one-to-one, greedily by IoU
    (>= ``iou``): first within a class (true positives), then across classes ('wrong_class': one false
    positive and one false negative row). Other predictions are false positives of kind 'duplicate'
    (IoU >= ``iou`` with an already matched object), 'localization' (best IoU in [0.1, ``iou``)) or
    'background'; a prediction covering a crowd region (intersection >= ``iou`` of its area) is
    ignored. Other objects are false negatives of kind 'missed'. False positives come sorted by score
    (highest first), false negatives by area (largest first). Boxes in rows are xyxy pixels.
    """
    if len(samples) != len(predictions):
        raise ValueError(f"need one prediction per sample, got {len(predictions)} for {len(samples)} samples")
    names = list(class_names) if class_names is not None else None
    if names is None and predictions and hasattr(predictions[0], "class_names"):
        names = list(predictions[0].class_names)

    def name(label: int) -> str | int:
        return names[int(label)] if names is not None else int(label)

    false_pos: list[dict[str, Any]] = []
    false_neg: list[dict[str, Any]] = []
    for index, (sample, prediction) in enumerate(zip(samples, predictions, strict=True)):
        objects = sample.objects or []
        xywh = np.asarray([o["bbox"] for o in objects], dtype=np.float64).reshape(-1, 4)
        all_gt = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        crowd = np.asarray([bool(o.get("iscrowd", 0)) for o in objects], dtype=bool)
        gt_boxes = all_gt[~crowd]
        gt_labels = np.asarray([int(o["label"]) for o in objects], dtype=np.int64)[~crowd]
        keep = _field(prediction, "scores").reshape(-1) >= score
        p_boxes = _field(prediction, "boxes").reshape(-1, 4).astype(np.float64)[keep]
        p_scores = _field(prediction, "scores").reshape(-1).astype(np.float64)[keep]
        p_labels = _field(prediction, "labels").reshape(-1).astype(np.int64)[keep]
        if crowd.any() and len(p_boxes):
            covered = _ioa(p_boxes, all_gt[crowd]).max(axis=1) >= iou
            p_boxes, p_scores, p_labels = p_boxes[~covered], p_scores[~covered], p_labels[~covered]
        overlap = box_iou_numpy(gt_boxes, p_boxes)
        same = gt_labels[:, None] == p_labels[None, :]
        matched = _greedy(overlap, same, iou)
        free_g = np.ones(len(gt_boxes), dtype=bool)
        free_p = np.ones(len(p_boxes), dtype=bool)
        for g, p in matched:
            free_g[g] = free_p[p] = False
        swapped = _greedy(overlap, ~same & free_g[:, None] & free_p[None, :], iou)
        path = _path(sample)
        for g, p in swapped:
            free_g[g] = free_p[p] = False
            common = {
                "path": path,
                "index": index,
                "iou": round(float(overlap[g, p]), 4),
                "kind": "wrong_class",
            }
            false_pos.append(
                {
                    **common,
                    "box": _box(p_boxes[p]),
                    "label": name(p_labels[p]),
                    "score": _score(p_scores[p]),
                    "true_label": name(gt_labels[g]),
                }
            )
            false_neg.append(
                {
                    **common,
                    "box": _box(gt_boxes[g]),
                    "label": name(gt_labels[g]),
                    "predicted_label": name(p_labels[p]),
                    "score": _score(p_scores[p]),
                }
            )
        for p in np.flatnonzero(free_p).tolist():
            best = float(overlap[:, p].max()) if len(gt_boxes) else 0.0
            kind = "duplicate" if best >= iou else "localization" if best >= 0.1 else "background"
            false_pos.append(
                {
                    "path": path,
                    "index": index,
                    "iou": round(best, 4),
                    "kind": kind,
                    "box": _box(p_boxes[p]),
                    "label": name(p_labels[p]),
                    "score": _score(p_scores[p]),
                }
            )
        for g in np.flatnonzero(free_g).tolist():
            best = float(overlap[g].max()) if len(p_boxes) else 0.0
            false_neg.append(
                {
                    "path": path,
                    "index": index,
                    "iou": round(best, 4),
                    "kind": "missed",
                    "box": _box(gt_boxes[g]),
                    "label": name(gt_labels[g]),
                }
            )
    false_pos.sort(key=lambda row: -row["score"])
    false_neg.sort(key=lambda row: -(row["box"][2] - row["box"][0]) * (row["box"][3] - row["box"][1]))
    return false_pos, false_neg


def _ioa(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(A, R) intersection over the area of each box in ``boxes``."""
    lt = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def _box(box: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in box]


def _score(value: float) -> float:
    return round(float(value), 4)


# -- segmentation -------------------------------------------------------------------------------
def worst_segmentations(
    samples: Sequence[Sample], predicted_maps: Sequence[np.ndarray], spec: Any, n: int = 16
) -> list[dict[str, Any]]:
    """The ``n`` images of lowest per-image mIoU (classes in the target or the prediction, ignored
    pixels left out), worst first: {path, miou, pixel_accuracy, maps: (target, predicted) (H, W)}.
    ``predicted_maps``: each sample's (H, W) class map at its image's size; ``spec``: its ``MaskSpec``."""
    from foveal.data.seg_loading import decode_target
    from foveal.metrics.segmentation import mean_iou

    ignore = spec.ignore_index
    rows = []
    for sample, predicted in zip(samples, predicted_maps, strict=True):
        target = decode_target(sample, spec, predicted.shape[::-1])
        valid = target != ignore
        accuracy = float((target[valid] == predicted[valid]).mean()) if valid.any() else 1.0
        rows.append({"path": sample.path, "miou": mean_iou(target, predicted, ignore),
                     "pixel_accuracy": accuracy, "maps": (target, predicted)})  # fmt: skip
    return sorted(rows, key=lambda r: (r["miou"], r["path"]))[: max(0, n)]


# -- report rows --------------------------------------------------------------------------------
def pair_rows(matrix: Any, class_names: Sequence[str]) -> list[dict[str, Any]]:
    matrix = np.asarray(matrix.cpu() if torch.is_tensor(matrix) else matrix)
    return [{"true": t, "predicted": p, "count": c} for t, p, c in confused_pairs(matrix, class_names)]


def count_kinds(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    return counts
