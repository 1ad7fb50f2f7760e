"""COCO evaluation speed: pycocotools' COCOeval vs foveal's coco_evaluate on the same random data.

    .venv/bin/python benchmarks/coco_eval.py [--images 5000] [--predictions 50000] [--iou-type bbox]

Both start from the same in-memory ground-truth dict and results list and run loading (COCO index,
loadRes), evaluate, accumulate and summarize; the script prints both times, their ratio and the
largest absolute difference between the summary stats.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np

from foveal.metrics.detection import BACKEND, DET_KEYS, KPT_KEYS, coco_evaluate

N_CATS = 10
K = 4
SIGMAS = [0.05, 0.08, 0.1, 0.06]


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


def _mask(h: int, w: int, box: np.ndarray) -> np.ndarray:
    x, y, bw, bh = box
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx + 0.5 - x - bw / 2) / (bw / 2)) ** 2 + ((yy + 0.5 - y - bh / 2) / (bh / 2)) ** 2 <= 1


def make_data(n_images: int, n_predictions: int, iou_type: str, seed: int) -> tuple[dict, list[dict]]:
    """Random images (GT of all sizes, 10% crowd) and predictions: jittered GT copies plus false positives."""
    rng = np.random.default_rng(seed)
    size = 64 if iou_type == "segm" else 640
    images = [{"id": i + 1, "height": size, "width": size} for i in range(n_images)]
    n_gt = rng.poisson(n_predictions / n_images * 0.7, n_images)
    anns: list[dict] = []
    for i, n in enumerate(n_gt):
        side = size * rng.choice([0.03, 0.1, 0.3, 0.6], (n, 1)) * rng.uniform(0.5, 1.0, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (size - side)
        for box, cat, crowd in zip(
            np.hstack([xy, side]), rng.integers(1, N_CATS + 1, n), rng.random(n) < 0.1
        ):
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cat), "bbox": box.tolist(),
                   "area": float(box[2] * box[3]), "iscrowd": int(crowd)}  # fmt: skip
            if iou_type == "segm":
                m = _mask(size, size, box)
                ann["segmentation"], ann["area"] = _rle(m), float(m.sum())
            if iou_type == "keypoints":
                kp = np.column_stack([box[:2] + rng.uniform(0, 1, (K, 2)) * box[2:], rng.integers(0, 3, K)])
                ann["keypoints"], ann["num_keypoints"] = kp.reshape(-1).tolist(), int((kp[:, 2] > 0).sum())
            anns.append(ann)
    results: list[dict] = []
    source = rng.integers(0, len(anns), n_predictions)
    false_pos = rng.random(n_predictions) < 0.3
    for j in range(n_predictions):
        ann = anns[source[j]]
        box = np.asarray(ann["bbox"])
        box = box + rng.normal(0, 0.1, 4) * box[[2, 3, 2, 3]]
        if false_pos[j]:
            box[:2] = rng.uniform(0, size * 0.8, 2)
        box[2:] = np.maximum(box[2:], 1)
        r = {
            "image_id": ann["image_id"],
            "category_id": int(ann["category_id"]),
            "score": float(rng.random()),
        }
        if iou_type == "bbox":
            r["bbox"] = box.tolist()
        elif iou_type == "segm":
            r["segmentation"] = _rle(_mask(size, size, box))
        else:
            kp = np.asarray(ann["keypoints"]).reshape(K, 3)
            kp = np.column_stack([kp[:, :2] + rng.normal(0, 3, (K, 2)), rng.random(K)])
            r["keypoints"] = kp.reshape(-1).tolist()
        results.append(r)
    cats = [
        {"id": c, "name": f"class{c}", "keypoints": [str(k) for k in range(K)]} for c in range(1, N_CATS + 1)
    ]
    return {"images": images, "annotations": anns, "categories": cats}, results


def run_pycocotools(gt: dict, results: list[dict], iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if iou_type == "keypoints":
            ev.params.kpt_oks_sigmas = np.asarray(SIGMAS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--predictions", type=int, default=50000)
    parser.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt, results = make_data(args.images, args.predictions, args.iou_type, args.seed)
    print(
        f"data: {len(gt['images'])} images, {len(gt['annotations'])} GT, {len(results)} predictions, "
        f"{args.iou_type} ({time.perf_counter() - t0:.1f} s to generate)"
    )
    gt_copy, results_copy = copy.deepcopy(gt), copy.deepcopy(results)  # pycocotools mutates its inputs

    t0 = time.perf_counter()
    ref = run_pycocotools(gt_copy, results_copy, args.iou_type)
    t_ref = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = coco_evaluate(
        gt, results, args.iou_type, kpt_sigmas=SIGMAS if args.iou_type == "keypoints" else None
    )
    t_ours = time.perf_counter() - t0

    keys = KPT_KEYS if args.iou_type == "keypoints" else DET_KEYS
    values = np.array([-1.0 if ours[k] is None else ours[k] for k in keys])
    print(f"pycocotools COCOeval : {t_ref:8.2f} s")
    print(f"foveal coco_evaluate : {t_ours:8.2f} s  (backend {BACKEND})")
    print(f"speed-up             : {t_ref / t_ours:8.2f}x")
    print(f"max |stats diff|     : {np.abs(values - ref).max():.3g}")
    print("stats: " + ", ".join(f"{k}={v:.4f}" for k, v in zip(keys, values, strict=True)))


if __name__ == "__main__":
    main()
