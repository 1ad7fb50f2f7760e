"""Evaluate a COCO results file (from foveal or any other tool) against a dataset's ground truth.

``foveal val --task T --data PATH --predictions RESULTS.json`` gives the same metrics and keys as
evaluating a model of task T: one set per COCO IoU type the task declares (``Task.coco_iou_types``):
box metrics, ``segm_*`` for masks (instance), ``kpt_*`` for keypoints (pose).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foveal.data.sample import Sample
from foveal.errors import ConfigError, DataError

# the metric-name prefix of each COCO IoU type
METRIC_PREFIX = {"bbox": "", "segm": "segm_", "keypoints": "kpt_"}


def ground_truth(
    samples: list[Sample], categories: list[dict[str, Any]], sizes: dict[str, tuple[int, int]]
) -> dict:
    """A COCO ground-truth dict for ``samples``: image ids 1..N in order, ``file_name`` the base name."""
    images, annotations = [], []
    for image_id, sample in enumerate(samples, start=1):
        height, width = sizes[sample.path]
        images.append({"id": image_id, "file_name": Path(sample.path).name, "height": height, "width": width})
        for obj in sample.objects or []:
            ann = {k: v for k, v in obj.items() if k not in ("label", "image_id")}
            ann.setdefault("area", float(obj["bbox"][2] * obj["bbox"][3]))
            ann.update(id=len(annotations) + 1, image_id=image_id, iscrowd=int(obj.get("iscrowd", 0)))
            annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": categories}


def _read_results(path: Path) -> list[dict[str, Any]]:
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path}: predictions file not found; check the path") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); pass a COCO results file") from err
    if not isinstance(results, list):
        raise DataError(
            f"{path}: a COCO results file is a JSON list of detections, got {type(results).__name__}"
        )
    for i, entry in enumerate(results):
        missing = [k for k in ("category_id", "score") if not isinstance(entry, dict) or k not in entry]
        if missing or ("image_id" not in entry and "file_name" not in entry):
            raise DataError(
                f"{path}: entry {i} lacks {', '.join(missing) or 'image_id/file_name'}; each detection needs "
                "image_id (or file_name), category_id, score and bbox/segmentation/keypoints"
            )
    return results


def _original_ids(data: Path) -> dict[Any, str]:
    """COCO image id -> file base name from the dataset's annotation files (empty for other formats)."""
    from foveal.data.formats.coco import find_coco

    names: dict[Any, str] = {}
    for annotation, _ in find_coco(data).values():
        for entry in json.loads(annotation.read_text()).get("images", []):
            names[entry["id"]] = Path(entry["file_name"]).name
    return names


def evaluate_results(
    data: str | Path,
    predictions: str | Path,
    task: str | None = None,
    split: str = "val",
    fmt: str = "auto",
    kpt_sigmas: list[float] | None = None,
) -> dict[str, Any]:
    """COCO metrics of the results file ``predictions`` on ``split`` of ``data``.

    ``task`` (default detect) says which COCO IoU types are evaluated (``Task.coco_iou_types``).
    Detections are matched to images by ``file_name`` when they carry one (foveal writes it), else by
    ``image_id`` as numbered in the dataset's COCO annotation file. Category ids are the dataset's.
    """
    from foveal.data.det_loading import load_detection
    from foveal.metrics.detection import coco_evaluate
    from foveal.tasks import get_task

    task_cls = get_task(task or "detect")
    if not task_cls.coco_iou_types:
        raise ConfigError(f"--predictions is not supported for --task {task_cls.name}")
    data = Path(data)
    loaded = load_detection(data, fmt)
    present = [name for name, part in loaded.splits.items() if part]
    if split not in present:
        if present == ["all"]:
            split = "all"
        else:
            raise DataError(
                f"{data}: no '{split}' split (present: {', '.join(present)}); choose --split from those"
            )
    samples = loaded.splits[split]
    gt = ground_truth(samples, loaded.categories, loaded.sizes)
    by_name = {image["file_name"]: image["id"] for image in gt["images"]}
    original = _original_ids(data) if loaded.source == "coco" else {}
    results, unmatched = [], 0
    for entry in _read_results(Path(predictions)):
        name = entry.get("file_name") or original.get(entry.get("image_id"))
        if name not in by_name:
            unmatched += 1
            continue
        results.append({**entry, "image_id": by_name[name]})
    if unmatched and not results:
        raise DataError(
            f"{predictions}: none of its {unmatched} detections matches an image of the '{split}' split of "
            f"{data}; check --data/--split, or give detections a file_name"
        )
    class_names = [c["name"] for c in loaded.categories]
    metrics: dict[str, Any] = {"n": len(samples), "detections": len(results), "unmatched": unmatched}
    for iou_type in task_cls.coco_iou_types:
        sigmas = kpt_sigmas if iou_type == "keypoints" else None
        found = coco_evaluate(gt, results, iou_type, class_names, kpt_sigmas=sigmas)
        metrics.update({f"{METRIC_PREFIX[iou_type]}{k}": v for k, v in found.items()})
    return {**metrics, "split": split, "predictions": str(predictions)}
