"""Box operations: IoU, format conversion, clipping, NMS, soft-NMS and weighted boxes fusion.

The one box IoU of foveal: :func:`box_iou` for tensors (torchvision's), :func:`box_iou_numpy` for numpy
arrays (the same formula, for per-box loops and numpy callers). Boxes are (N, 4) ``xyxy`` absolute
pixels unless stated. GIoU and hard NMS are torchvision's (imported on first use); soft-NMS (Bodla et
al. 2017) and weighted boxes fusion (Solovyev et al. 2019) run sequential loops on CPU numpy (float64)
and return tensors on the input's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.errors import ConfigError, check_choice

SOFT_NMS_METHODS = ("gaussian", "linear")
WBF_CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    import torchvision.ops as tvops

    _check_boxes(a, "a")
    _check_boxes(b, "b")
    return tvops.box_iou(a, b)


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) xyxy boxes as numpy float64 -> (N, M): :func:`box_iou`'s formula, but 0
    where the union is empty (torchvision gives NaN)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    wh = np.clip(
        np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None
    )
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) of (N, 4) and (M, 4) xyxy boxes -> (N, M), in [-1, 1]."""
    import torchvision.ops as tvops

    _check_boxes(a, "a")
    _check_boxes(b, "b")
    return tvops.generalized_box_iou(a, b)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(N, 4) ``x, y, w, h`` (top-left corner and size, COCO) -> (N, 4) xyxy."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """(N, 4) xyxy -> (N, 4) ``x, y, w, h`` (top-left corner and size, COCO)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def clip_boxes(boxes: Tensor, height: int | float, width: int | float) -> Tensor:
    """Clip (N, 4) xyxy boxes to the image ``[0, width] x [0, height]`` (returns a new tensor)."""
    _check_boxes(boxes)
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Hard NMS: indices (int64) of the kept (N, 4) xyxy boxes, by decreasing score (torchvision)."""
    import torchvision.ops as tvops

    _check_boxes(boxes)
    return tvops.nms(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware hard NMS (a box suppresses only boxes of its label); kept indices by decreasing score."""
    import torchvision.ops as tvops

    _check_boxes(boxes)
    return tvops.batched_nms(boxes, scores, labels, iou_threshold)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017) of (N, 4) xyxy ``boxes`` with (N,) ``scores``.

    Repeatedly selects the box with the highest current score and decays the scores of the boxes
    not yet selected by their IoU with it: ``linear`` multiplies by ``1 - iou`` where
    ``iou > iou_threshold`` (others unchanged), ``gaussian`` by ``exp(-iou**2 / sigma)`` (every box;
    ``iou_threshold`` unused). Boxes whose score is below ``score_threshold`` (initially or after a
    decay) are dropped. With (N,) ``labels``, only boxes of the same label decay each other.
    Returns ``(keep, new_scores)``: (K,) int64 indices in selection order, i.e. by decreasing new
    score (ties: lower index first), and their (K,) decayed scores.
    """
    check_choice("soft-NMS method", method, SOFT_NMS_METHODS)
    _check_boxes(boxes)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    if method == "gaussian" and not sigma > 0:
        raise ConfigError(f"soft-NMS sigma={sigma!r} is invalid; pass a number > 0")
    box_np = boxes.detach().cpu().double().numpy()
    work = scores.detach().cpu().double().numpy().copy()
    label_np = None if labels is None else labels.detach().cpu().numpy()
    active = work >= score_threshold
    work[~active] = -np.inf
    keep: list[int] = []
    kept: list[float] = []
    while True:
        i = int(np.argmax(work)) if work.size else 0
        if not work.size or not active[i]:
            break
        keep.append(i)
        kept.append(float(work[i]))
        active[i] = False
        work[i] = -np.inf
        idx = np.flatnonzero(active)
        if label_np is not None:
            idx = idx[label_np[idx] == label_np[i]]
        if idx.size == 0:
            continue
        iou = box_iou_numpy(box_np[i][None], box_np[idx])[0]
        if method == "linear":
            decay = np.where(iou > iou_threshold, 1.0 - iou, 1.0)
        else:
            decay = np.exp(-(iou * iou) / sigma)
        new = work[idx] * decay
        dead = new < score_threshold
        new[dead] = -np.inf
        work[idx] = new
        active[idx[dead]] = False
    keep_t = torch.as_tensor(keep, dtype=torch.int64, device=boxes.device)
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    return keep_t, torch.as_tensor(kept, dtype=dtype, device=boxes.device)


def _as_numpy(value: Any, dtype: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _wbf_prefilter(
    boxes_list: Sequence[Any],
    scores_list: Sequence[Any],
    labels_list: Sequence[Any],
    weights: np.ndarray,
    skip_box_threshold: float,
    image_size: tuple[int | float, int | float] | None,
) -> dict[int, np.ndarray]:
    """Rows ``[score * weight, weight, model, x1, y1, x2, y2]`` per label, by decreasing weighted score."""
    rows: dict[int, list[np.ndarray]] = {}
    for model, (boxes, scores, labels) in enumerate(zip(boxes_list, scores_list, labels_list, strict=True)):
        b = _as_numpy(boxes, np.float64).reshape(-1, 4)
        s = _as_numpy(scores, np.float64).reshape(-1)
        lab = _as_numpy(labels, np.float64).reshape(-1).astype(np.int64)
        if not len(b) == len(s) == len(lab):
            raise ValueError(
                f"model {model}: boxes, scores and labels differ in length ({len(b)}, {len(s)}, {len(lab)})"
            )
        b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], axis=1)
        b = np.clip(b, 0, None)
        if image_size is not None:
            height, width = image_size
            b = np.minimum(b, [width, height, width, height])
        ok = (s >= skip_box_threshold) & ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) != 0)
        for label in np.unique(lab[ok]):
            sel = ok & (lab == label)
            n = int(sel.sum())
            part = np.column_stack(
                [s[sel] * weights[model], np.full(n, weights[model]), np.full(n, model), b[sel]]
            )
            rows.setdefault(int(label), []).append(part)
    out = {}
    for label, parts in rows.items():
        arr = np.concatenate(parts)
        out[label] = arr[np.argsort(-arr[:, 0], kind="stable")]
    return out


def _wbf_one_label(
    rows: np.ndarray, weights: np.ndarray, iou_threshold: float, conf_type: str, allows_overflow: bool
) -> np.ndarray:
    """Cluster the rows of one label and return fused ``[score, x1, y1, x2, y2]`` rows."""
    fused = np.empty((0, 4))
    sum_s: list[float] = []  # sum of weighted scores
    sum_sb: list[np.ndarray] = []  # sum of weighted score * box
    max_s: list[float] = []
    sum_w: list[float] = []
    count: list[int] = []
    models: list[set[int]] = []
    for s, w, model, *box in rows:
        box = np.asarray(box)
        k = -1
        if len(fused):
            iou = box_iou_numpy(box[None], fused)[0]
            k = int(np.argmax(iou))
            if iou[k] <= iou_threshold:
                k = -1
        if k == -1:
            fused = np.vstack([fused, box])
            sum_s.append(s)
            sum_sb.append(s * box)
            max_s.append(s)
            sum_w.append(w)
            count.append(1)
            models.append({int(model)})
        else:
            sum_s[k] += s
            sum_sb[k] = sum_sb[k] + s * box
            max_s[k] = max(max_s[k], s)
            sum_w[k] += w
            count[k] += 1
            models[k].add(int(model))
            fused[k] = sum_sb[k] / sum_s[k]
    out = np.empty((len(fused), 5))
    out[:, 1:] = fused
    total_w = weights.sum()
    for k in range(len(fused)):
        if conf_type == "max":
            score = max_s[k] / weights.max()
        elif conf_type == "box_and_model_avg":
            score = sum_s[k] / sum_w[k] * weights[sorted(models[k])].sum() / total_w
        elif conf_type == "absent_model_aware_avg":
            absent = np.ones(len(weights), dtype=bool)
            absent[sorted(models[k])] = False
            score = sum_s[k] / (sum_w[k] + weights[absent].sum())
        elif allows_overflow:
            score = sum_s[k] / total_w
        else:
            score = sum_s[k] / count[k] * min(len(weights), count[k]) / total_w
        out[k, 0] = score
    return out


def weighted_boxes_fusion(
    boxes_list: Sequence[Any],
    scores_list: Sequence[Any],
    labels_list: Sequence[Any],
    weights: Sequence[float] | None = None,
    iou_threshold: float = 0.55,
    skip_box_threshold: float = 0.0,
    conf_type: str = "avg",
    image_size: tuple[int | float, int | float] | None = None,
    allows_overflow: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted boxes fusion (Solovyev et al. 2019) of several models' predictions on one image.

    ``boxes_list[m]``: (N_m, 4) xyxy absolute pixels of model m (tensor or array), with (N_m,)
    ``scores_list[m]`` and (N_m,) integer ``labels_list[m]``; ``weights``: one per model (default 1).
    Follows the ``ensemble_boxes`` package on pixel boxes instead of [0, 1] ones (IoU and weighted
    averages do not depend on the scale): corners are reordered, boxes are clipped at 0 (and to
    ``image_size`` (H, W) when given), zero-area boxes and scores below ``skip_box_threshold`` are
    skipped. Per label, boxes in decreasing ``score * weight`` join the fused box they overlap most
    when that IoU exceeds ``iou_threshold`` (else start a cluster); a fused box is the
    ``score * weight``-weighted mean of its members. Cluster scores by ``conf_type``: ``avg``
    (sum of weighted scores / max(n_models, n_boxes); / n_models' weight sum with
    ``allows_overflow``), ``max``, ``box_and_model_avg``, ``absent_model_aware_avg``.
    Returns ``(boxes (M, 4) float32, scores (M,) float32, labels (M,) int64)`` by decreasing score,
    on the device of ``boxes_list[0]`` when it is a tensor, else on CPU.
    """
    check_choice("WBF conf_type", conf_type, WBF_CONF_TYPES)
    n_models = len(boxes_list)
    if not n_models == len(scores_list) == len(labels_list):
        raise ValueError(
            f"boxes_list, scores_list and labels_list differ in length "
            f"({n_models}, {len(scores_list)}, {len(labels_list)}); pass one entry per model"
        )
    w = np.ones(n_models) if weights is None else _as_numpy(weights, np.float64).reshape(-1)
    if len(w) != n_models:
        raise ConfigError(f"WBF got {len(w)} weights for {n_models} models; pass one weight per model")
    device = boxes_list[0].device if n_models and isinstance(boxes_list[0], Tensor) else torch.device("cpu")
    per_label = _wbf_prefilter(boxes_list, scores_list, labels_list, w, skip_box_threshold, image_size)
    fused = [
        (label, _wbf_one_label(rows, w, iou_threshold, conf_type, allows_overflow))
        for label, rows in per_label.items()
    ]
    if not fused:
        return (
            torch.zeros((0, 4), device=device),
            torch.zeros((0,), device=device),
            torch.zeros((0,), dtype=torch.int64, device=device),
        )
    rows = np.concatenate([f for _, f in fused])
    labels = np.concatenate([np.full(len(f), label, dtype=np.int64) for label, f in fused])
    order = np.argsort(-rows[:, 0], kind="stable")
    return (
        torch.as_tensor(rows[order, 1:], dtype=torch.float32, device=device),
        torch.as_tensor(rows[order, 0], dtype=torch.float32, device=device),
        torch.as_tensor(labels[order], dtype=torch.int64, device=device),
    )
