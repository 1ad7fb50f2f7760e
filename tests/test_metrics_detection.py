"""COCO evaluation against pycocotools' COCOeval run directly on the same random data."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from foveal.errors import ConfigError, DataError
from foveal.metrics.detection import (
    DET_KEYS,
    KPT_KEYS,
    coco_evaluate,
    curves_from_evaluation,
    detection_confusion_matrix,
    detection_metrics,
    precision_recall_curves,
    run_coco_eval,
)

CAT_IDS = (1, 3, 7, 9)  # category 9 never has ground truth
SIGMAS = [0.05, 0.08, 0.1, 0.06]
K = 4


def _blob(rng: np.random.Generator, h: int, w: int, box: list[float]) -> np.ndarray:
    """An ellipse plus a bar inside ``box`` (xywh), as an (h, w) uint8 mask."""
    x, y, bw, bh = box
    yy, xx = np.mgrid[0:h, 0:w]
    r = rng.uniform(0.6, 1.0)
    m = ((xx + 0.5 - x - bw / 2) / max(bw / 2, 0.5)) ** 2 + (
        (yy + 0.5 - y - bh / 2) / max(bh / 2, 0.5)
    ) ** 2 <= r
    m |= (xx >= x) & (xx < x + bw * rng.uniform(0.3, 1)) & (yy >= y) & (yy < y + bh / 2)
    return m.astype(np.uint8)


def _rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


def _uncompressed_rle(m: np.ndarray) -> dict:
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": list(m.shape), "counts": [0, *counts] if flat[0] else counts}


def _segmentation(rng: np.random.Generator, h: int, w: int, box: list[float], crowd: bool) -> tuple:
    """Crowd: uncompressed RLE; else a random polygon or a compressed RLE. Returns (segm, area)."""
    if crowd:
        m = _blob(rng, h, w, box)
        return _uncompressed_rle(m), float(m.sum())
    if rng.random() < 0.5:
        x, y, bw, bh = box
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radius = rng.uniform(0.5, 1.0, 7)
        poly = np.column_stack(
            [x + bw / 2 * (1 + radius * np.cos(angles)), y + bh / 2 * (1 + radius * np.sin(angles))]
        )
        rle = mask_utils.merge(mask_utils.frPyObjects([poly.reshape(-1).tolist()], h, w))
        return [poly.reshape(-1).tolist()], float(mask_utils.area(rle))
    m = _blob(rng, h, w, box)
    return _rle(m), float(m.sum())


def random_coco(seed: int, iou_type: str, n_images: int = 30) -> tuple[dict, list[dict]]:
    """Random GT (crowd, empty images, 3 categories with GT, all sizes) and noisy predictions."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for image_id in range(1, n_images + 1):
        if iou_type == "segm":
            h, w = (
                (128, 128) if rng.random() < 0.3 else (int(rng.integers(56, 72)), int(rng.integers(56, 72)))
            )
        else:
            h, w = int(rng.integers(100, 300)), int(rng.integers(100, 300))
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.png"})
        gts = []
        for _ in range(0 if rng.random() < 0.15 else int(rng.integers(1, 7))):
            scale = rng.choice([0.1, 0.3, 0.7, 0.95])
            bw, bh = (max(2.0, rng.uniform(0.5, 1.0) * scale * side) for side in (w, h))
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            crowd = bool(rng.random() < 0.1)
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": int(rng.choice(CAT_IDS[:-1])),
                   "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": int(crowd)}  # fmt: skip
            if iou_type == "segm":
                ann["segmentation"], ann["area"] = _segmentation(rng, h, w, ann["bbox"], crowd)
            if iou_type == "keypoints":
                kp = []
                for _ in range(K):
                    v = int(rng.choice([0, 1, 2], p=[0.2, 0.3, 0.5]))
                    kp += [rng.uniform(x, x + bw), rng.uniform(y, y + bh), v] if v else [0.0, 0.0, 0]
                ann["keypoints"], ann["num_keypoints"] = kp, sum(v > 0 for v in kp[2::3])
            anns.append(ann)
            gts.append(ann)
        if rng.random() < 0.15:
            continue  # an image without predictions
        candidates = []
        for g in gts:
            if rng.random() < 0.8:
                x, y, bw, bh = g["bbox"]
                j = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
                box = [max(0, x + j[0]), max(0, y + j[1]), max(1, bw + j[2]), max(1, bh + j[3])]
                cat = g["category_id"] if rng.random() < 0.85 else int(rng.choice(CAT_IDS))
                candidates.append((g, box, cat))
        for _ in range(int(rng.integers(0, 4))):
            bw, bh = rng.uniform(3, w / 2), rng.uniform(3, h / 2)
            box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
            candidates.append((None, box, int(rng.choice(CAT_IDS))))
        for g, box, cat in candidates:
            r = {"image_id": image_id, "category_id": cat, "score": float(rng.uniform(0.01, 1))}
            if iou_type == "bbox":
                r["bbox"] = [float(v) for v in box]
            elif iou_type == "segm":
                r["segmentation"] = _rle(_blob(rng, h, w, box))
            else:
                kp = []
                for j in range(K):
                    if g is not None and g["keypoints"][3 * j + 2]:
                        gx, gy = g["keypoints"][3 * j : 3 * j + 2]
                        kp += [gx + rng.normal(0, 3), gy + rng.normal(0, 3), float(rng.uniform())]
                    else:
                        kp += [
                            rng.uniform(box[0], box[0] + box[2]),
                            rng.uniform(box[1], box[1] + box[3]),
                            0.1,
                        ]
                r["keypoints"] = kp
            results.append(r)
    cats = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in CAT_IDS]
    if iou_type == "keypoints":
        for cat in cats:
            cat["keypoints"] = [f"kp{j}" for j in range(K)]
    return {"images": images, "annotations": anns, "categories": cats}, results


def pycoco_eval(gt: dict, results: list[dict], iou_type: str, tmp_path: Path, sigmas=None) -> COCOeval:
    path = tmp_path / f"gt_{iou_type}.json"
    path.write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(path))
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_matches(ours: dict, ev: COCOeval, iou_type: str) -> None:
    keys = KPT_KEYS if iou_type == "keypoints" else DET_KEYS
    assert len(ev.stats) == len(keys)
    for key, ref in zip(keys, ev.stats, strict=True):
        if ref == -1:
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(ref, abs=1e-6), key
    cat_ids = list(ev.params.catIds)
    for cid, name in zip(CAT_IDS, ours["per_class"], strict=True):
        s = ev.eval["precision"][:, :, cat_ids.index(cid), 0, -1]
        ref = np.mean(s[s > -1]) if (s > -1).any() else None
        assert ours["per_class"][name] == (None if ref is None else pytest.approx(ref, abs=1e-6)), name


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_evaluate_equals_pycocotools(iou_type: str, seed: int, tmp_path: Path) -> None:
    gt, results = random_coco(seed, iou_type)
    gt_before = copy.deepcopy(gt)
    sigmas = SIGMAS if iou_type == "keypoints" else None
    ours = coco_evaluate(gt, results, iou_type, kpt_sigmas=sigmas)
    assert gt == gt_before  # inputs are not mutated
    ev = pycoco_eval(gt, results, iou_type, tmp_path, sigmas)
    assert_matches(ours, ev, iou_type)
    assert 0 < ours["map"] < 1 and ours["per_class"]["class9"] is None
    if iou_type == "bbox":  # the data spans every area range
        assert all(ours[k] is not None and ours[k] > 0 for k in ("map_small", "map_medium", "map_large"))


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_pycocotools_backend_equals_pycocotools(iou_type: str, tmp_path: Path) -> None:
    gt, results = random_coco(5, iou_type, n_images=12)
    sigmas = SIGMAS if iou_type == "keypoints" else None
    evaluation = run_coco_eval(gt, results, iou_type, kpt_sigmas=sigmas, backend="pycocotools")
    ev = pycoco_eval(gt, results, iou_type, tmp_path, sigmas)
    np.testing.assert_allclose(evaluation.stats, ev.stats, atol=1e-12)
    np.testing.assert_allclose(evaluation.precision, ev.eval["precision"], atol=1e-12)


def test_keypoint_sigmas_default_and_check(tmp_path: Path) -> None:
    gt, results = random_coco(3, "keypoints", n_images=12)
    ours = coco_evaluate(gt, results, "keypoints")  # K = 4: 0.05 each
    assert_matches(ours, pycoco_eval(gt, results, "keypoints", tmp_path, [0.05] * K), "keypoints")
    with pytest.raises(ConfigError, match="4 keypoints"):
        coco_evaluate(gt, results, "keypoints", kpt_sigmas=[0.1] * 17)


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_empty_results_and_empty_gt(backend: str, tmp_path: Path) -> None:
    gt, _ = random_coco(4, "bbox", n_images=10)
    ours = run_coco_eval(gt, [], "bbox", backend=backend)
    ev = pycoco_eval(gt, [], "bbox", tmp_path)
    np.testing.assert_allclose(ours.stats, ev.stats)
    summary = coco_evaluate(gt, [], "bbox")
    assert summary["map"] == 0.0 and summary["mar_100"] == 0.0
    assert summary["per_class"] == {"class1": 0.0, "class3": 0.0, "class7": 0.0, "class9": None}
    no_gt = {**gt, "annotations": []}
    _, results = random_coco(4, "bbox", n_images=10)
    summary = run_coco_eval(no_gt, results, "bbox", backend=backend)
    assert (summary.stats == -1).all()
    assert all(v is None for k, v in coco_evaluate(no_gt, results).items() if k != "per_class")


def test_class_names_and_input_errors() -> None:
    gt, results = random_coco(0, "bbox", n_images=8)
    ours = coco_evaluate(gt, results, class_names=["a", "b", "c", "d"])
    assert list(ours["per_class"]) == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError, match="class_names"):
        coco_evaluate(gt, results, class_names=["a"])
    with pytest.raises(DataError, match="image_id"):
        coco_evaluate(gt, [{**results[0], "image_id": 999}])
    with pytest.raises(DataError, match="segmentation"):
        coco_evaluate(gt, results, "segm")
    with pytest.raises(ConfigError, match="segm"):
        coco_evaluate(gt, results, "segmentation")


def test_precision_recall_curves_equal_pycocotools(tmp_path: Path) -> None:
    gt, results = random_coco(1, "bbox")
    curves = curves_from_evaluation(run_coco_eval(gt, results, "bbox"))
    ev = pycoco_eval(gt, results, "bbox", tmp_path)
    for k, cid in enumerate(CAT_IDS):
        curve = curves[f"class{cid}"]
        assert curve["recall"] == pytest.approx(np.linspace(0, 1, 101).tolist())
        ref = ev.eval["precision"][0, :, k, 0, 2]  # IoU 0.5, area all, maxDets 100
        if cid == 9:
            assert curve["precision"] is None and curve["ap50"] is None
        else:
            np.testing.assert_allclose(curve["precision"], ref, atol=1e-12)
            assert curve["ap50"] == curve["ap"] == pytest.approx(ref.mean(), abs=1e-12)
    at_75 = curves_from_evaluation(run_coco_eval(gt, results), iou_threshold=0.75)["class1"]
    np.testing.assert_allclose(at_75["precision"], ev.eval["precision"][5, :, 0, 0, 2], atol=1e-12)
    assert "ap50" not in at_75
    with pytest.raises(ConfigError, match="0.55"):
        curves_from_evaluation(run_coco_eval(gt, results), iou_threshold=0.52)


def random_tensors(seed: int, iou_type: str, n_images: int = 8, n_classes: int = 3):
    """Per-image prediction/target tensors, and the COCO dicts written out by hand."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    images, anns, results = [], [], []
    for i in range(n_images):
        h, w = 64, 80
        n_gt, n_pred = (
            int(torch.randint(0, 5, (1,), generator=g)),
            int(torch.randint(0, 6, (1,), generator=g)),
        )
        t_boxes = _tensor_boxes(n_gt, h, w, g)
        p_boxes = torch.cat(
            [t_boxes + torch.randn(t_boxes.shape, generator=g) * 2, _tensor_boxes(n_pred, h, w, g)]
        )
        t_labels = torch.randint(0, n_classes, (n_gt,), generator=g)
        p_labels = torch.cat([t_labels, torch.randint(0, n_classes, (n_pred,), generator=g)])
        crowd = (torch.rand(n_gt, generator=g) < 0.15).long()
        scores = torch.rand(len(p_boxes), generator=g)
        target = {"boxes": t_boxes, "labels": t_labels, "iscrowd": crowd, "image_size": (h, w)}
        pred = {"boxes": p_boxes, "labels": p_labels, "scores": scores}
        t_masks = _box_masks(t_boxes, h, w)
        p_probs = _box_masks(p_boxes, h, w).float() * torch.rand(len(p_boxes), 1, 1, generator=g).add(0.3)
        t_kpts = torch.cat([t_boxes[:, None, :2] + 3 * torch.rand(n_gt, K, 2, generator=g),
                            torch.randint(0, 3, (n_gt, K, 1), generator=g).float()], dim=2)  # fmt: skip
        p_kpts = torch.cat([p_boxes[:, None, :2] + 3 * torch.rand(len(p_boxes), K, 2, generator=g),
                            torch.rand(len(p_boxes), K, 1, generator=g)], dim=2)  # fmt: skip
        if iou_type == "segm":
            target["masks"], pred["masks"] = t_masks, p_probs
        if iou_type == "keypoints":
            target["keypoints"], pred["keypoints"] = t_kpts, p_kpts
        preds.append(pred)
        targets.append(target)
        # the same data as COCO dicts
        images.append({"id": i + 1, "height": h, "width": w})
        for j in range(n_gt):
            x1, y1, x2, y2 = t_boxes[j].tolist()
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(t_labels[j]) + 1,
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                   "iscrowd": int(crowd[j])}  # fmt: skip
            if iou_type == "segm":
                ann["segmentation"] = _rle(t_masks[j].numpy().astype(np.uint8))
                ann["area"] = float(t_masks[j].sum())
            if iou_type == "keypoints":
                ann["keypoints"] = t_kpts[j].reshape(-1).tolist()
                ann["num_keypoints"] = int((t_kpts[j, :, 2] > 0).sum())
            anns.append(ann)
        for j in range(len(p_boxes)):
            x1, y1, x2, y2 = p_boxes[j].tolist()
            r = {"image_id": i + 1, "category_id": int(p_labels[j]) + 1, "score": float(scores[j])}
            if iou_type == "segm":
                r["segmentation"] = _rle((p_probs[j] > 0.5).numpy().astype(np.uint8))
            else:
                r["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            if iou_type == "keypoints":
                r["keypoints"] = p_kpts[j].reshape(-1).tolist()
            results.append(r)
    cats = [{"id": c + 1, "name": f"n{c}", "keypoints": [str(j) for j in range(K)]} for c in range(n_classes)]
    return preds, targets, {"images": images, "annotations": anns, "categories": cats}, results


def _tensor_boxes(n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 4
    return torch.cat([xy, xy + wh], dim=1)


def _box_masks(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    b = boxes[:, :, None, None]
    return (xx >= b[:, 0]) & (xx < b[:, 2]) & (yy >= b[:, 1]) & (yy < b[:, 3] - (b[:, 3] - b[:, 1]) / 3)


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_detection_metrics_equals_coco_evaluate(iou_type: str, tmp_path: Path) -> None:
    preds, targets, gt, results = random_tensors(7, iou_type)
    sigmas = SIGMAS if iou_type == "keypoints" else None
    ours = detection_metrics(preds, targets, ["n0", "n1", "n2"], iou_type, kpt_sigmas=sigmas, curves=True)
    curves = ours.pop("pr_curves")
    assert ours == coco_evaluate(gt, results, iou_type, kpt_sigmas=sigmas)
    assert ours["map"] > 0
    ev = pycoco_eval(gt, results, iou_type, tmp_path, sigmas)
    ref = ev.eval["precision"][0, :, 1, 0, -1]
    np.testing.assert_allclose(curves["n1"]["precision"], ref, atol=1e-12)
    alone = precision_recall_curves(preds, targets, ["n0", "n1", "n2"], iou_type, kpt_sigmas=sigmas)
    assert alone == curves


def test_detection_metrics_errors() -> None:
    preds, targets, _, _ = random_tensors(1, "bbox", n_images=2)
    with pytest.raises(DataError, match="labels"):
        detection_metrics(preds, targets, ["only"])
    with pytest.raises(DataError, match="masks"):
        detection_metrics(preds, targets, ["a", "b", "c"], "segm")


def test_confusion_matrix_hand_case() -> None:
    target = {
        "boxes": torch.tensor(
            [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [70, 70, 80, 80], [0, 0, 100, 100]],
            dtype=torch.float32,
        ),  # fmt: skip
        "labels": torch.tensor([0, 1, 2, 0, 1]),
        "iscrowd": torch.tensor([0, 0, 0, 0, 1]),  # the crowd box is left out
    }
    pred = {
        "boxes": torch.tensor(
            [
                [0, 0, 10, 9],
                [2, 0, 10, 10],
                [20, 20, 30, 30],
                [50, 50, 60, 60],
                [90, 90, 99, 99],
                [70, 70, 80, 80],
            ],
            dtype=torch.float32,
        ),  # fmt: skip
        "labels": torch.tensor([0, 0, 2, 1, 2, 1]),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.1]),  # the last one is below conf 0.25
    }
    # box 0 (class 0) takes pred 0 (IoU 0.9 beats pred 1's 0.8), so pred 1 is a duplicate (background
    # row); box 1 (class 1) -> pred 2 (class 2); box 2 (class 2) -> pred 3 (class 1); pred 4 matches
    # nothing; box 3 (class 0) has no prediction above conf.
    cm = detection_confusion_matrix([pred], [target], num_classes=3)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1
    expected[1, 2] = 1
    expected[2, 1] = 1
    expected[0, 3] = 1  # box 3 missed
    expected[3, 0] = 1  # duplicate pred 1
    expected[3, 2] = 1  # pred 4
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    # no ground truth: every prediction is a false positive; no prediction: every box is missed
    empty = {
        "boxes": torch.zeros((0, 4)),
        "labels": torch.zeros(0, dtype=torch.long),
        "scores": torch.zeros(0),
    }
    cm = detection_confusion_matrix([pred, empty], [empty, target], num_classes=3)
    assert cm[3].tolist() == [2, 1, 2, 0] and cm[:, 3].tolist() == [2, 1, 1, 0]


def test_detection_metrics_mask_layouts_and_empty_images() -> None:
    preds, targets, _, _ = random_tensors(3, "segm", n_images=4)
    base = detection_metrics(preds, targets, ["n0", "n1", "n2"], "segm")
    layered = [{**p, "masks": p["masks"][:, None]} for p in preds]  # (N, 1, H, W) as Mask R-CNN gives
    binary = [{**p, "masks": (p["masks"] > 0.5).to(torch.uint8)} for p in preds]
    assert detection_metrics(layered, targets, ["n0", "n1", "n2"], "segm") == base
    assert detection_metrics(binary, targets, ["n0", "n1", "n2"], "segm") == base
    empty = {
        "boxes": torch.zeros((0, 4)),
        "labels": torch.zeros(0, dtype=torch.long),
        "scores": torch.zeros(0),
    }
    for iou_type in ("bbox", "keypoints"):
        out = detection_metrics([empty], [empty], ["a"], iou_type)
        assert out["map"] is None and out["per_class"] == {"a": None}
