"""What the object tasks share below the Task: one image's ``Detections``, target encoding helpers and
the COCO results form of predictions. Boxes are xyxy absolute pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from foveal.data.sample import Sample
from foveal.errors import DataError

Target = dict[str, Tensor]


@dataclass
class Detections:
    """One image's detections: ``boxes`` (N, 4) float xyxy pixels, ``scores`` (N,), ``labels`` (N,)
    class indices into ``class_names``; ``masks`` (N, H, W) bool and ``keypoints`` (N, K, 3) when the
    task predicts them. Coordinates are in the image's pixels after :meth:`ObjectTask.finalize`."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "boxes": [[round(float(v), 2) for v in box] for box in self.boxes],
            "scores": [round(float(s), 4) for s in self.scores],
            "labels": [self.class_names[int(c)] for c in self.labels],
            "count": len(self.boxes),
        }
        if self.masks is not None:
            row["masks"] = self.masks
        if self.keypoints is not None:
            row["keypoints"] = [[[round(float(v), 2) for v in kp] for kp in obj] for obj in self.keypoints]
        return row

    def summary(self) -> str:
        if not len(self.labels):
            return "(nothing detected)"
        counts: dict[str, int] = {}
        for c in self.labels:
            counts[self.class_names[int(c)]] = counts.get(self.class_names[int(c)], 0) + 1
        return ", ".join(f"{n} {name}" for name, n in counts.items())


def resize_detections(prediction: Detections, imgsz: int, size: tuple[int, int]) -> Detections:
    """``prediction`` made at ``imgsz`` x ``imgsz`` scaled to an image of ``size`` (width, height):
    boxes and keypoints scaled, masks resized (nearest)."""
    width, height = size
    sx, sy = width / imgsz, height / imgsz
    if math.isclose(sx, 1.0) and math.isclose(sy, 1.0):
        return prediction
    boxes = prediction.boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
    keypoints = None
    if prediction.keypoints is not None:
        keypoints = prediction.keypoints * np.array([sx, sy, 1.0], dtype=np.float32)
    masks = None
    if prediction.masks is not None:
        masks = (
            np.stack(
                [
                    np.asarray(Image.fromarray(m).resize((width, height), Image.NEAREST))
                    for m in prediction.masks
                ]
            )
            if len(prediction.masks)
            else np.zeros((0, height, width), dtype=bool)
        )
    return Detections(boxes, prediction.scores, prediction.labels, prediction.class_names, masks, keypoints)


def coco_results(row: dict[str, Any], image_id: int, category_ids: dict[str, Any]) -> list[dict[str, Any]]:
    """A prediction row (``Detections.to_dict`` + ``path``) as COCO results entries: bbox xywh,
    ``category_id`` from ``category_ids`` (class name -> id), masks as RLE, and the image's
    ``file_name`` (foveal's ``val --predictions`` matches on it)."""
    from pycocotools import mask as mask_utils

    entries = []
    for i, (box, score, label) in enumerate(zip(row["boxes"], row["scores"], row["labels"], strict=True)):
        x0, y0, x1, y1 = box
        entry: dict[str, Any] = {
            "image_id": image_id,
            "file_name": Path(row["path"]).name,
            "category_id": category_ids[label],
            "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)],
            "score": score,
        }
        if row.get("masks") is not None:
            rle = mask_utils.encode(np.asfortranarray(row["masks"][i].astype(np.uint8)))
            entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        if row.get("keypoints") is not None:
            entry["keypoints"] = [v for point in row["keypoints"][i] for v in point]
        entries.append(entry)
    return entries


def object_masks(objects: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """(N, H, W) uint8 masks of the objects' COCO polygons / RLE (box-filled when one has none)."""
    from foveal.data.formats.coco import object_mask

    masks = np.zeros((len(objects), height, width), dtype=np.uint8)
    for i, obj in enumerate(objects):
        mask = object_mask(obj, height, width)
        if mask is None:
            x, y, w, h = obj["bbox"]
            masks[i, int(y) : int(math.ceil(y + h)), int(x) : int(math.ceil(x + w))] = 1
        else:
            masks[i] = mask
    return masks


def split_kept(kept: dict[str, Tensor], prefix: str, counts: list[int]) -> list[dict[str, Tensor]]:
    parts = {
        key[len(prefix) + 1 :]: torch.split(value, counts)
        for key, value in kept.items()
        if key.startswith(prefix + "_") and key != f"{prefix}_count"
    }
    return [{key: chunks[i] for key, chunks in parts.items()} for i in range(len(counts))]


def label_objects(
    samples: list[Sample], categories: list[dict[str, Any]], classes: list[str], source: Any
) -> None:
    """Give every object a ``label`` (index into ``classes``) from its ``category_id``, by category name."""
    index = {name: i for i, name in enumerate(classes)}
    by_id: dict[Any, int] = {}
    for category in categories:
        if category["name"] not in index:
            raise DataError(
                f"{source}: category '{category['name']}' is not one of the model's classes {classes}; "
                "evaluate on data with the same classes"
            )
        by_id[category["id"]] = index[category["name"]]
    for sample in samples:
        for obj in sample.objects or []:
            if obj.get("category_id") not in by_id:
                raise DataError(
                    f"{source}: annotation {obj.get('id')!r} of {sample.path} has category_id "
                    f"{obj.get('category_id')!r}, not one of {sorted(by_id)}; fix the annotation"
                )
            obj["label"] = by_id[obj["category_id"]]


def require_objects(samples: list[Sample], key: str, source: Any, what: str) -> None:
    if not any(obj.get(key) for s in samples for obj in s.objects or []):
        raise DataError(f"{source}: no {what} found in the training annotations; this task needs them")


def as_float(value: Tensor, key: str) -> Tensor:
    """A float copy of a detection output; instance masks as (N, 1, H, W) (empty ones may come as 3-D)."""
    value = value.float()
    return value[:, None] if key == "masks" and value.ndim == 3 else value
