"""Error analysis: the validation images a model gets most wrong, and the classes it confuses.

- Classification: :func:`top_losses` (images by their cross-entropy) and :func:`top_losses_grid`.
- Any confusion matrix: :func:`confused_pairs` (the largest off-diagonal cells).
- Detection: :func:`detection_errors` (false positives and false negatives, each with its kind) and
  :func:`detection_errors_grid` (crops with the offending box drawn).
- :func:`write_errors` writes them for a task from what evaluation already computed (training's
  final evaluation and ``foveal val --errors``): ``errors.json`` and the plots, no extra inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.data.sample import Sample
from foveal.ops.boxes import box_iou_numpy

GRID_COLUMNS = 4
WRONG, RIGHT = "#cc0000", "#006600"


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


def _names(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "+".join(value) or "(none)"


def top_losses_grid(rows: Sequence[dict[str, Any]], out_png: str | Path, title: str = "Top losses") -> Path:
    """Plot :func:`top_losses` rows as a grid of images titled "target → prediction (p)", red when wrong."""
    from foveal.data.imageio import load_rgb

    images = [np.asarray(load_rgb(row["path"])) for row in rows]
    titles = [
        f"{_names(row['target'])} → {_names(row['prediction'])} ({row['confidence']:.2f})"
        f"\nloss {row['loss']:.2f}"
        for row in rows
    ]
    colours = [RIGHT if row["correct"] else WRONG for row in rows]
    return image_grid(images, titles, colours, out_png, title)


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


def detection_errors_grid(rows: Sequence[dict[str, Any]], out_png: str | Path, title: str) -> Path:
    """Crops around the boxes of :func:`detection_errors` rows (a margin of half the box, at least 8
    pixels), the box drawn in red, titled "kind: label score"."""
    from PIL import ImageDraw

    from foveal.data.imageio import load_rgb

    images, titles = [], []
    for row in rows:
        image = load_rgb(row["path"])
        x0, y0, x1, y1 = row["box"]
        draw = ImageDraw.Draw(image)
        draw.rectangle(
            [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)],
            outline=(255, 0, 0),
            width=max(1, round(min(image.size) / 100)),
        )
        mx, my = max(8.0, (x1 - x0) / 2), max(8.0, (y1 - y0) / 2)
        crop = (
            max(0, int(x0 - mx)),
            max(0, int(y0 - my)),
            min(image.width, math.ceil(x1 + mx)),
            min(image.height, math.ceil(y1 + my)),
        )
        images.append(np.asarray(image.crop(crop) if crop[2] > crop[0] and crop[3] > crop[1] else image))
        other = row.get("true_label", row.get("predicted_label"))
        detail = f" ({'true' if 'true_label' in row else 'pred'} {other})" if other is not None else ""
        score = f" {row['score']:.2f}" if "score" in row else ""
        titles.append(f"{row['kind']}: {row['label']}{score}{detail}")
    return image_grid(images, titles, [WRONG] * len(rows), out_png, title)


# -- shared plot --------------------------------------------------------------------------------
def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    colours: Sequence[str],
    out_png: str | Path,
    title: str,
) -> Path:
    """Images (H, W, 3) uint8 in a grid of up to 4 columns, each with its title in its colour."""
    from matplotlib.figure import Figure

    from foveal.report.plots import DPI, save_png

    count = max(1, len(images))
    cols = min(GRID_COLUMNS, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(2.6 * cols, 2.7 * rows + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, text, colour in zip(axes, images, titles, colours, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(text, fontsize=7, color=colour)
    if not images:
        axes[0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title)
    return save_png(fig, out_png)


# -- per task -----------------------------------------------------------------------------------
def write_errors(
    task: Any,
    kept: dict[str, Tensor],
    metrics: dict[str, Any],
    samples: Sequence[Sample],
    predictions: Sequence[Any],
    out_dir: str | Path,
    plots_dir: str | Path | None = None,
    n: int = 16,
) -> dict[str, Any]:
    """Error analysis of one evaluated split from its ``kept`` step outputs, ``metrics`` and
    ``predictions`` (as ``run_model`` and ``compute_metrics`` return them): writes
    ``out_dir/errors.json`` and the plots into ``plots_dir`` (default ``out_dir``).

    classify: ``top_losses`` and ``confused_pairs`` (single-label), ``plots_dir/top_losses.png`` and
    the reliability diagram ``plots_dir/reliability.png``;
    detect (instance, pose): false positive / negative counts by kind, the first rows of each,
    ``confused_pairs`` (with 'background'), ``false_positives.png`` and ``false_negatives.png``;
    segment: ``confused_pairs`` of pixels and the ``worst_images`` by per-image mIoU with
    ``worst_images.png`` (image | target | prediction). Returns
    {"json": path, "plots": [paths]} (other tasks: nothing written, no "json").
    """
    from foveal.atomic import atomic_write_text
    from foveal.serialize import dumps

    out_dir = Path(out_dir)
    plots_dir = Path(plots_dir) if plots_dir is not None else out_dir
    plots: list[str] = []
    name = getattr(task, "name", "")
    if name == "classify":
        rows = top_losses(samples, kept["probs"], kept["targets"], task.class_names, n, _thresholds(task))
        report: dict[str, Any] = {"task": name, "top_losses": rows, "confused_pairs": []}
        if not task.multilabel:
            report["confused_pairs"] = _pairs(metrics["confusion_matrix"], task.class_names)
        plots.append(str(top_losses_grid(rows, plots_dir / "top_losses.png")))
        from foveal.report.plots import reliability_diagram

        plots.append(str(reliability_diagram(kept["probs"], kept["targets"], plots_dir / "reliability.png")))
    elif name in ("detect", "instance", "pose"):
        # boxes to image pixels; masks are not needed here, and resizing them would cost time
        found = [task.finalize(replace(p, masks=None), s) for p, s in zip(predictions, samples, strict=True)]
        false_pos, false_neg = detection_errors(samples, found, class_names=task.class_names)
        report = {
            "task": name,
            "iou": 0.5,
            "score": 0.3,
            "false_positives": len(false_pos),
            "false_negatives": len(false_neg),
            "false_positives_by_kind": _count(false_pos),
            "false_negatives_by_kind": _count(false_neg),
            "confused_pairs": _pairs(metrics["confusion_matrix"], [*task.class_names, "background"]),
            "top_false_positives": false_pos[:50],
            "top_false_negatives": false_neg[:50],
        }
        plots.append(
            str(detection_errors_grid(false_pos[:n], plots_dir / "false_positives.png", "False positives"))
        )
        plots.append(
            str(detection_errors_grid(false_neg[:n], plots_dir / "false_negatives.png", "False negatives"))
        )
    elif name == "segment" and "confusion_matrix" in metrics:
        worst = worst_segmentations(task, samples, predictions, n)
        report = {
            "task": name,
            "confused_pairs": _pairs(metrics["confusion_matrix"], task.class_names),
            "worst_images": [{k: v for k, v in row.items() if k != "maps"} for row in worst],
        }
        if worst:
            plots.append(str(worst_segmentations_grid(task, worst, plots_dir / "worst_images.png")))
    else:
        return {"plots": plots}
    path = atomic_write_text(out_dir / "errors.json", dumps(report, indent=1))
    return {"json": str(path), "plots": plots}


# -- segmentation -------------------------------------------------------------------------------
def worst_segmentations(
    task: Any, samples: Sequence[Sample], predictions: Sequence[Any], n: int = 16
) -> list[dict[str, Any]]:
    """The ``n`` images of lowest per-image mIoU (classes in the target or the prediction, ignored
    pixels left out), worst first: {path, miou, pixel_accuracy, maps: (target, predicted) (H, W)}."""
    from foveal.data.seg_loading import decode_target
    from foveal.metrics.segmentation import mean_iou

    spec, ignore = task._spec(), task.ignore_index
    rows = []
    for sample, prediction in zip(samples, predictions, strict=True):
        predicted = task.finalize(prediction, sample).mask
        target = decode_target(sample, spec, predicted.shape[::-1])
        valid = target != ignore
        accuracy = float((target[valid] == predicted[valid]).mean()) if valid.any() else 1.0
        rows.append({"path": sample.path, "miou": mean_iou(target, predicted, ignore),
                     "pixel_accuracy": accuracy, "maps": (target, predicted)})  # fmt: skip
    return sorted(rows, key=lambda r: (r["miou"], r["path"]))[: max(0, n)]


def worst_segmentations_grid(task: Any, rows: Sequence[dict[str, Any]], out_png: str | Path) -> Path:
    """Image | target | prediction side by side for each of the ``worst_segmentations`` rows."""
    from foveal.data.imageio import load_rgb
    from foveal.report.seg_plots import class_colours, colourise

    colours = class_colours(len(task.class_names))
    images = []
    for row in rows:
        target, predicted = row["maps"]
        image = np.asarray(load_rgb(row["path"]).resize(target.shape[::-1]))
        images.append(np.concatenate([image, colourise(target, colours), colourise(predicted, colours)], 1))
    titles = [f"{Path(r['path']).name}: mIoU {r['miou']:.2f}" for r in rows]
    return image_grid(
        images, titles, [WRONG] * len(rows), out_png, "Worst images (image | target | prediction)"
    )


def _thresholds(task: Any) -> float | list[float]:
    if not task.multilabel:
        return 0.5
    return task.meta.get("thresholds") or 0.5


def _pairs(matrix: Any, class_names: Sequence[str]) -> list[dict[str, Any]]:
    matrix = np.asarray(matrix.cpu() if torch.is_tensor(matrix) else matrix)
    return [{"true": t, "predicted": p, "count": c} for t, p, c in confused_pairs(matrix, class_names)]


def _count(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    return counts
