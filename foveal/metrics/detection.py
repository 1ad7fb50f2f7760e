"""COCO evaluation (boxes, masks, keypoints) as plain dicts, identical to pycocotools' COCOeval.

The evaluation runs through :func:`run_coco_eval`, whose backend is ``faster-coco-eval``'s
``COCOeval_faster`` (a C++ port whose summary numbers and precision arrays equal pycocotools' within
1e-6 in tests/test_metrics_detection.py, in practice to ~1e-16; 2.5-6.5x faster, see benchmarks/README.md)
when it is installed, else pycocotools' ``COCOeval``. :data:`BACKEND` names the one in use.

Summary keys, in COCOeval.stats order:

- ``bbox`` / ``segm``: map (AP@[.5:.95]), map50, map75, map_small, map_medium, map_large, mar_1,
  mar_10, mar_100 (AR at 1/10/100 detections per image), mar_small, mar_medium, mar_large.
- ``keypoints`` (OKS, at most 20 detections per image): map, map50, map75, map_medium, map_large,
  mar_20 (AR@[.5:.95]), mar50, mar75, mar_medium, mar_large.

Numbers are pycocotools' own; where it gives -1 (no ground truth in that class or area range, so the
value is undefined) the dict holds None. With ground truth and no detections the numbers are 0.
``per_class`` maps each class name to its AP@[.5:.95] (area all, the last maxDets), averaged over the
valid (> -1) precision entries exactly as COCOeval.summarize does; None for a class without ground
truth. Keypoint sigmas default to COCO's person sigmas when there are 17 keypoints, else 0.05 each
(between COCO's face and body values); pass ``kpt_sigmas`` for other skeletons.
"""

from __future__ import annotations

import contextlib
import gc
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.errors import ConfigError, DataError, check_choice

IOU_TYPES = ("bbox", "segm", "keypoints")
DET_KEYS = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip
KPT_KEYS = (
    "map", "map50", "map75", "map_medium", "map_large", "mar_20", "mar50", "mar75", "mar_medium", "mar_large",
)  # fmt: skip
COCO_PERSON_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
DEFAULT_KPT_SIGMA = 0.05


def _backend() -> str:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return "pycocotools"
    return "faster_coco_eval"


BACKEND = _backend()


@dataclass
class CocoEvaluation:
    """The accumulated COCO evaluation: summary stats and COCOeval.eval's arrays.

    ``precision``: (T, R, K, A, M) over IoU thresholds, recall thresholds, ``cat_ids``, area ranges
    and max detections (-1 where undefined); ``recall``: (T, K, A, M).
    """

    iou_type: str
    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    cat_ids: list[int]
    area_labels: list[str]
    max_dets: list[int]
    names: dict[int, str]  # every ground-truth category id -> class name, in id order


def _kpt_count(gt: dict, results: list[dict]) -> int | None:
    for cat in gt["categories"]:
        if cat.get("keypoints"):
            return len(cat["keypoints"])
    for ann in (*gt["annotations"], *results):
        if ann.get("keypoints"):
            return len(ann["keypoints"]) // 3
    return None


def _sigmas(gt: dict, results: list[dict], kpt_sigmas: Sequence[float] | None) -> np.ndarray:
    k = _kpt_count(gt, results)
    if kpt_sigmas is not None:
        if k is not None and len(kpt_sigmas) != k:
            raise ConfigError(
                f"kpt_sigmas has {len(kpt_sigmas)} values for {k} keypoints; pass one per keypoint"
            )
        return np.asarray(kpt_sigmas, dtype=np.float64)
    if k is None or k == len(COCO_PERSON_SIGMAS):
        return np.asarray(COCO_PERSON_SIGMAS)
    return np.full(k, DEFAULT_KPT_SIGMA)


def _check_inputs(gt: dict, results: list[dict], iou_type: str) -> None:
    missing = [key for key in ("images", "annotations", "categories") if key not in gt]
    if missing:
        raise DataError(
            f"COCO ground truth lacks {missing}; pass a dict with images, annotations, categories"
        )
    image_ids = {img["id"] for img in gt["images"]}
    field = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
    for r in results:
        if r["image_id"] not in image_ids:
            raise DataError(
                f"result image_id {r['image_id']!r} is not in the ground truth images; fix the ids"
            )
        if field not in r:
            raise DataError(f"a '{iou_type}' result lacks '{field}': {sorted(r)}; add it to every result")


@contextlib.contextmanager
def _gc_paused() -> Any:
    """Pause the cyclic garbage collector: the COCO tools allocate many small dicts, which triggers
    full collections (20-30% of the run time on 50k results) yet creates no reference cycles to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_backend(gt: dict, results: list[dict], iou_type: str, sigmas: np.ndarray, backend: str) -> Any:
    """Run evaluate + accumulate + summarize on copies (COCO tools mutate their inputs); return COCOeval."""
    with _gc_paused():
        return _run_backend_unpaused(gt, results, iou_type, sigmas, backend)


def _run_backend_unpaused(
    gt: dict, results: list[dict], iou_type: str, sigmas: np.ndarray, backend: str
) -> Any:
    gt = {**gt, "images": list(gt["images"]), "annotations": [dict(a) for a in gt["annotations"]]}
    results = [dict(r) for r in results]
    if backend == "faster_coco_eval":
        import faster_coco_eval as fce

        coco_gt = fce.COCO(gt)
        coco_dt = coco_gt.loadRes(results)
        ev = fce.COCOeval_faster(
            coco_gt, coco_dt, iou_type, print_function=lambda *a, **k: None, kpt_oks_sigmas=list(sigmas)
        )
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def run_coco_eval(
    gt: dict,
    results: list[dict],
    iou_type: str = "bbox",
    class_names: Sequence[str] | None = None,
    kpt_sigmas: Sequence[float] | None = None,
    backend: str | None = None,
) -> CocoEvaluation:
    """Evaluate COCO ``results`` against the COCO ground-truth dict ``gt`` (see :func:`coco_evaluate`)."""
    check_choice("COCO iou_type", iou_type, IOU_TYPES)
    backend = check_choice("COCO backend", backend or BACKEND, ("faster_coco_eval", "pycocotools"))
    _check_inputs(gt, results, iou_type)
    cat_ids = sorted(cat["id"] for cat in gt["categories"])
    if class_names is None:
        by_id = {cat["id"]: str(cat.get("name", cat["id"])) for cat in gt["categories"]}
        names = {cid: by_id[cid] for cid in cat_ids}
    elif len(class_names) != len(cat_ids):
        raise ConfigError(
            f"{len(class_names)} class_names for {len(cat_ids)} ground-truth categories; "
            "pass one name per category, in increasing category id order"
        )
    else:
        names = dict(zip(cat_ids, class_names, strict=True))
    ev = _run_backend(gt, results, iou_type, _sigmas(gt, results, kpt_sigmas), backend)
    p = ev.params
    return CocoEvaluation(
        iou_type=iou_type,
        stats=np.asarray(ev.stats, dtype=np.float64)[
            : len(KPT_KEYS if iou_type == "keypoints" else DET_KEYS)
        ],
        precision=np.asarray(ev.eval["precision"]),
        recall=np.asarray(ev.eval["recall"]),
        iou_thresholds=np.asarray(p.iouThrs),
        recall_thresholds=np.asarray(p.recThrs),
        cat_ids=[int(c) for c in p.catIds],
        area_labels=list(p.areaRngLbl),
        max_dets=[int(m) for m in p.maxDets],
        names=names,
    )


def _value(x: float) -> float | None:
    return None if x == -1 else float(x)


def summarize_coco(evaluation: CocoEvaluation) -> dict[str, Any]:
    """The summary dict of :func:`coco_evaluate` from an accumulated evaluation."""
    keys = KPT_KEYS if evaluation.iou_type == "keypoints" else DET_KEYS
    out: dict[str, Any] = {key: _value(v) for key, v in zip(keys, evaluation.stats, strict=True)}
    area = evaluation.area_labels.index("all")
    per_class: dict[str, float | None] = {}
    for cid, name in evaluation.names.items():
        if cid not in evaluation.cat_ids:  # faster-coco-eval drops keypoint classes without ground truth
            per_class[name] = None
            continue
        s = evaluation.precision[:, :, evaluation.cat_ids.index(cid), area, -1]
        per_class[name] = float(np.mean(s[s > -1])) if (s > -1).any() else None
    out["per_class"] = per_class
    return out


def coco_evaluate(
    gt: dict,
    results: list[dict],
    iou_type: str = "bbox",
    class_names: Sequence[str] | None = None,
    kpt_sigmas: Sequence[float] | None = None,
) -> dict[str, Any]:
    """COCO mAP/mAR of ``results`` against ``gt``, as pycocotools' COCOeval computes them.

    ``gt``: COCO ground-truth dict (images with height/width, annotations, categories; keypoint
    categories carry ``keypoints`` names). ``results``: COCO results (image_id, category_id, score and
    bbox xywh / segmentation RLE / keypoints [x, y, v] * K); pycocotools' loadRes rules apply (a result
    with a ``bbox`` gets the box area, even in ``segm`` evaluation). ``class_names``: one per category
    in increasing id order (default: the categories' names). ``kpt_sigmas``: one per keypoint.
    Returns the summary keys of this module's docstring (None where pycocotools gives -1) and
    ``per_class`` {name: AP@[.5:.95] or None}.
    """
    return summarize_coco(run_coco_eval(gt, results, iou_type, class_names, kpt_sigmas))


def curves_from_evaluation(
    evaluation: CocoEvaluation, iou_threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """Per class, COCO's 101-point recall grid and interpolated precision at ``iou_threshold``.

    Area range all, the last maxDets (100 for bbox/segm, 20 for keypoints). Returns {name: {"recall":
    [101 floats], "precision": [101 floats], "ap": AP at the threshold (the mean precision)}}, with
    "ap50" (= "ap") too at IoU 0.5; precision and ap are None for a class without ground truth.
    """
    t = np.flatnonzero(np.isclose(evaluation.iou_thresholds, iou_threshold))
    if not t.size:
        raise ConfigError(
            f"iou_threshold={iou_threshold} is not a COCO threshold; pick one of "
            f"{[round(float(x), 2) for x in evaluation.iou_thresholds]}"
        )
    area = evaluation.area_labels.index("all")
    recall = [float(r) for r in evaluation.recall_thresholds]
    out: dict[str, dict[str, Any]] = {}
    for cid, name in evaluation.names.items():
        precision, ap = None, None
        if cid in evaluation.cat_ids:
            p = evaluation.precision[t[0], :, evaluation.cat_ids.index(cid), area, -1]
            if (p > -1).any():
                precision, ap = [float(v) for v in p], float(np.mean(p[p > -1]))
        out[name] = {"recall": recall, "precision": precision, "ap": ap}
        if np.isclose(iou_threshold, 0.5):
            out[name]["ap50"] = ap
    return out


def precision_recall_curves(
    preds: Sequence[dict],
    targets: Sequence[dict],
    class_names: Sequence[str],
    iou_type: str = "bbox",
    kpt_sigmas: Sequence[float] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, dict[str, Any]]:
    """PR curves of per-image tensors (as :func:`detection_metrics` takes them): see
    :func:`curves_from_evaluation`. ``detection_metrics(..., curves=True)`` gives them from its own
    evaluation without a second run."""
    gt, results = detection_to_coco(preds, targets, class_names, iou_type)
    evaluation = run_coco_eval(gt, results, iou_type, class_names, kpt_sigmas)
    return curves_from_evaluation(evaluation, iou_threshold)


def _np(x: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _masks(masks: Any, n: int, what: str) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W) bool/uint8/float masks -> (H, W, N) Fortran uint8 (float: > 0.5)."""
    m = _np(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != n:
        raise DataError(f"{what} masks have shape {m.shape}; pass (N, H, W) with N = {n} boxes")
    m = m > 0.5 if np.issubdtype(m.dtype, np.floating) else m != 0
    return np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))


def _rles(masks: np.ndarray) -> list[dict]:
    from pycocotools import mask as mask_utils

    rles = mask_utils.encode(masks) if masks.shape[2] else []
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def _image_size(target: dict, pred: dict, index: int, iou_type: str) -> tuple[int, int]:
    if target.get("image_size") is not None:
        h, w = (int(v) for v in _np(target["image_size"]).reshape(-1)[:2])
        return h, w
    for source in (target, pred):
        if source.get("masks") is not None:
            shape = _np(source["masks"]).shape
            return int(shape[-2]), int(shape[-1])
    if iou_type == "segm":
        raise DataError(f"target {index} has neither image_size nor masks; add image_size (H, W)")
    # bbox / keypoints evaluation never reads the image size: the box extent stands in
    boxes = [_np(s["boxes"], np.float64).reshape(-1, 4) for s in (target, pred) if s.get("boxes") is not None]
    corner = np.concatenate([np.ones((1, 4)), *boxes]).max(axis=0)
    return int(np.ceil(corner[3])), int(np.ceil(corner[2]))


def detection_to_coco(
    preds: Sequence[dict], targets: Sequence[dict], class_names: Sequence[str], iou_type: str = "bbox"
) -> tuple[dict, list[dict]]:
    """Per-image tensors -> (COCO ground-truth dict, COCO results list) for :func:`coco_evaluate`.

    Image ids are 1..n in list order, category ids ``label + 1``, boxes go xyxy -> xywh. Ground-truth
    area is the mask area for ``segm`` and the box area otherwise (keypoints too, as pycocotools
    expects); ``num_keypoints`` counts the keypoints with visibility > 0. ``segm`` results carry only
    the mask (so their area is the mask area, like the ground truth); ``keypoints`` results carry the
    box when there is one (area = box area, like the ground truth).
    """
    check_choice("COCO iou_type", iou_type, IOU_TYPES)
    if len(preds) != len(targets):
        raise DataError(f"{len(preds)} predictions for {len(targets)} targets; pass one of each per image")
    n_classes = len(class_names)
    images: list[dict] = []
    anns: list[dict] = []
    results: list[dict] = []
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        image_id = i + 1
        h, w = _image_size(target, pred, i, iou_type)
        images.append({"id": image_id, "height": h, "width": w})
        for what, src in (("target", target), ("prediction", pred)):
            labels = _np(src["labels"], np.int64).reshape(-1)
            if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
                raise DataError(
                    f"{what} {i} has labels {labels.min()}..{labels.max()} outside 0..{n_classes - 1} "
                    f"for {n_classes} class_names; fix the labels or class_names"
                )
        anns.extend(_gt_annotations(target, image_id, len(anns), iou_type))
        results.extend(_results(pred, image_id, iou_type))
    categories = [{"id": c + 1, "name": str(name)} for c, name in enumerate(class_names)]
    if iou_type == "keypoints":
        k = _kpt_count({"categories": [], "annotations": anns}, results) or 0
        for cat in categories:
            cat["keypoints"] = [str(j) for j in range(k)]
    return {"images": images, "annotations": anns, "categories": categories}, results


def _gt_annotations(target: dict, image_id: int, first_id: int, iou_type: str) -> list[dict]:
    boxes = _np(target["boxes"], np.float64).reshape(-1, 4)
    n = len(boxes)
    labels = _np(target["labels"], np.int64).reshape(-1)
    crowd = _np(target["iscrowd"], np.int64).reshape(-1) if target.get("iscrowd") is not None else np.zeros(n)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    areas = xywh[:, 2] * xywh[:, 3]
    out = [
        {"id": first_id + j + 1, "image_id": image_id, "category_id": int(labels[j]) + 1,
         "bbox": xywh[j].tolist(), "area": float(areas[j]), "iscrowd": int(crowd[j])}
        for j in range(n)
    ]  # fmt: skip
    if iou_type == "segm" and n:
        if target.get("masks") is None:
            raise DataError(f"target of image {image_id} has no masks; segm evaluation needs (N, H, W) masks")
        masks = _masks(target["masks"], n, "target")
        for ann, rle, area in zip(out, _rles(masks), masks.sum(axis=(0, 1)), strict=True):
            ann["segmentation"] = rle
            ann["area"] = float(area)
    elif iou_type == "keypoints" and n:
        if target.get("keypoints") is None:
            raise DataError(f"target of image {image_id} has no keypoints; pass (N, K, 3) [x, y, visibility]")
        kpts = _np(target["keypoints"], np.float64).reshape(n, -1, 3)
        for ann, kp in zip(out, kpts, strict=True):
            ann["keypoints"] = kp.reshape(-1).tolist()
            ann["num_keypoints"] = int((kp[:, 2] > 0).sum())
    return out


def _results(pred: dict, image_id: int, iou_type: str) -> list[dict]:
    scores = _np(pred["scores"], np.float64).reshape(-1)
    labels = _np(pred["labels"], np.int64).reshape(-1)
    out = [
        {"image_id": image_id, "category_id": int(c) + 1, "score": float(s)}
        for c, s in zip(labels, scores, strict=True)
    ]
    if not out:
        return out
    if iou_type == "segm":
        if pred.get("masks") is None:
            raise DataError(f"prediction for image {image_id} has no masks; segm evaluation needs masks")
        for r, rle in zip(out, _rles(_masks(pred["masks"], len(out), "prediction")), strict=True):
            r["segmentation"] = rle
        return out
    boxes = _np(pred["boxes"], np.float64).reshape(-1, 4) if pred.get("boxes") is not None else None
    if boxes is not None and len(boxes) == len(out):
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).tolist()
        for r, box in zip(out, xywh, strict=True):
            r["bbox"] = box
    elif iou_type == "bbox":
        raise DataError(f"prediction for image {image_id} needs boxes (N, 4) for its {len(out)} scores")
    if iou_type == "keypoints":
        if pred.get("keypoints") is None:
            raise DataError(f"prediction for image {image_id} has no keypoints; pass (N, K, 3)")
        for r, kp in zip(out, _np(pred["keypoints"], np.float64).reshape(len(out), -1), strict=True):
            r["keypoints"] = kp.tolist()
    return out


def detection_metrics(
    preds: Sequence[dict],
    targets: Sequence[dict],
    class_names: Sequence[str],
    iou_type: str = "bbox",
    kpt_sigmas: Sequence[float] | None = None,
    curves: bool = False,
) -> dict[str, Any]:
    """COCO metrics of per-image prediction/target tensors (keys unprefixed; the caller adds segm_/kpt_).

    Per image, ``preds``: boxes (N, 4) xyxy, scores (N,), labels (N,) 0-based, optional masks
    (N, H, W) bool/uint8 or float probabilities (> 0.5) and keypoints (N, K, 3); ``targets``: boxes,
    labels, optional iscrowd (N,), masks, keypoints (N, K, 3) [x, y, visibility] and image_size (H, W)
    (else taken from the masks). Same keys as :func:`coco_evaluate`; ``curves`` adds ``pr_curves``
    (:func:`curves_from_evaluation` at IoU 0.5) from the same evaluation.
    """
    gt, results = detection_to_coco(preds, targets, class_names, iou_type)
    evaluation = run_coco_eval(gt, results, iou_type, class_names, kpt_sigmas)
    out = summarize_coco(evaluation)
    if curves:
        out["pr_curves"] = curves_from_evaluation(evaluation)
    return out


def _solid_targets(target: dict) -> tuple[np.ndarray, np.ndarray]:
    """A target's non-crowd boxes (M, 4) xyxy float64 and labels (M,) int64."""
    boxes = _np(target["boxes"], np.float64).reshape(-1, 4)
    labels = _np(target["labels"], np.int64).reshape(-1)
    if target.get("iscrowd") is not None:
        solid = _np(target["iscrowd"]).reshape(-1) == 0
        boxes, labels = boxes[solid], labels[solid]
    return boxes, labels


def detection_confusion_matrix(
    preds: Sequence[dict],
    targets: Sequence[dict],
    num_classes: int,
    iou_threshold: float = 0.5,
    conf_threshold: float = 0.25,
) -> np.ndarray:
    """(C + 1, C + 1) int64 counts: rows = true class, columns = predicted class, last index = background.

    Per image, predictions with score > ``conf_threshold`` are matched one-to-one to non-crowd ground
    truth boxes (crowd ones are left out) by box IoU, class-agnostically and greedily in decreasing IoU
    over the pairs with IoU > ``iou_threshold`` (like Ultralytics' ConfusionMatrix, which deduplicates
    per prediction then per box instead). A matched pair counts at (true, predicted) class, an
    unmatched box at (true, background), an unmatched prediction at (background, predicted); unlike
    Ultralytics, unmatched predictions count also in images without any match.
    """
    from foveal.ops.boxes import box_iou

    cm = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    bg = num_classes
    for pred, target in zip(preds, targets, strict=True):
        keep = _np(pred["scores"], np.float64).reshape(-1) > conf_threshold
        p_boxes = torch.as_tensor(_np(pred["boxes"], np.float64).reshape(-1, 4)[keep])
        p_labels = _np(pred["labels"], np.int64).reshape(-1)[keep]
        t_boxes, t_labels = _solid_targets(target)
        iou = box_iou(torch.as_tensor(t_boxes), p_boxes).numpy()
        gi, pi = np.nonzero(iou > iou_threshold)
        order = np.argsort(-iou[gi, pi], kind="stable")
        used_g: set[int] = set()
        used_p: set[int] = set()
        for g, p in zip(gi[order].tolist(), pi[order].tolist(), strict=True):
            if g not in used_g and p not in used_p:
                used_g.add(g)
                used_p.add(p)
                cm[t_labels[g], p_labels[p]] += 1
        for g in set(range(len(t_labels))) - used_g:
            cm[t_labels[g], bg] += 1
        for p in set(range(len(p_labels))) - used_p:
            cm[bg, p_labels[p]] += 1
    return cm


def score_outcomes(
    preds: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5, conf_threshold: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Detection calibration pairs: (scores (N,), true positive 0/1 (N,)) of every prediction with score
    >= ``conf_threshold``. Per image and class, predictions in decreasing score take the unmatched
    non-crowd box of their class with the highest IoU >= ``iou_threshold`` (COCO-style greedy
    matching); a prediction matching only a crowd box, or none, is a false positive."""
    from foveal.ops.boxes import box_iou

    scores, hits = [], []
    for pred, target in zip(preds, targets, strict=True):
        p_scores = _np(pred["scores"], np.float64).reshape(-1)
        keep = np.flatnonzero(p_scores >= conf_threshold)
        keep = keep[np.argsort(-p_scores[keep], kind="stable")]
        p_boxes = _np(pred["boxes"], np.float64).reshape(-1, 4)[keep]
        p_labels = _np(pred["labels"], np.int64).reshape(-1)[keep]
        t_boxes, t_labels = _solid_targets(target)
        iou = box_iou(torch.as_tensor(p_boxes), torch.as_tensor(t_boxes)).numpy()
        used = np.zeros(len(t_labels), dtype=bool)
        for i in range(len(keep)):
            candidates = (t_labels == p_labels[i]) & ~used & (iou[i] >= iou_threshold)
            hit = bool(candidates.any())
            if hit:
                used[np.flatnonzero(candidates)[np.argmax(iou[i][candidates])]] = True
            scores.append(p_scores[keep[i]])
            hits.append(float(hit))
    return np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=np.float64)
