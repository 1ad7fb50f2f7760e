"""Predictions for the gallery: read a predictions.json / COCO results.json, match it to dataset images,
and judge each image (``detection_mistake``, ``mean_iou``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from foveal.data.index import DatasetIndex, Entry
from foveal.data.kinds import kind_of_annotation
from foveal.errors import DataError
from foveal.metrics.segmentation import mean_iou  # noqa: F401  (re-exported for the gallery)
from foveal.ops.boxes import box_iou_numpy

MIN_SCORE = 0.3
"""Predicted boxes below this score are neither drawn nor judged."""
MIN_IOU = 0.5
"""A prediction matches a target box of its class at this IoU or more."""
MIN_MIOU = 0.5
"""A segmentation below this per-image mIoU is a mistake."""


def _key(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


@dataclass
class Predictions:
    """A predictions file matched to a dataset: ``rows`` maps an image's resolved path to its row
    (classify/segment) or to its list of COCO-style detections (detect: ``bbox`` xywh pixels). Detection
    images are judged when they have a row, or for COCO results when they are in ``judged_splits``
    (the splits with at least one matched detection)."""

    source: Path
    rows: dict[str, Any]
    judged_splits: set[str] | None = None
    unmatched: int = 0

    @staticmethod
    def key(entry: Entry) -> str:
        return _key(entry.path)

    def mask(self, row: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        """The row's predicted class map (``mask_png``) at the target's (H, W) ``shape``."""
        name = Path(str(row["mask_png"]))
        found = next(
            (
                p
                for p in (name, self.source.parent / name, self.source.parent / "masks" / name.name)
                if p.is_file()
            ),
            None,
        )
        if found is None:
            raise DataError(f"{self.source}: mask_png '{name}' not found; keep the masks/ folder beside it")
        with Image.open(found) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise DataError(
                    f"{found}: a {image.mode} image, not a class-index PNG; pass foveal's mask_png"
                )
            if image.size != (shape[1], shape[0]):
                image = image.resize((shape[1], shape[0]), Image.NEAREST)
            return np.asarray(image).astype(np.int64)


_EXPECTED = (
    "expected predictions.json of `foveal predict`/`foveal val` (a JSON list of rows with 'path' and "
    "'labels' or 'mask_png' or 'boxes') or a COCO results.json (a JSON list of {image_id or file_name, "
    "category_id, bbox, score})"
)


@dataclass(frozen=True)
class _Form:
    """What a predictions file holds: ``annotation`` (the ``DatasetKind.annotation`` its predictions are
    of: 'labels', 'mask', 'objects'; None for an empty list) and ``rows`` (foveal predict rows with a
    'path', else COCO results)."""

    annotation: str | None
    rows: bool = True

    @property
    def name(self) -> str:
        """How messages name it: the kind its predictions are for ('-rows' for foveal detection rows)."""
        if self.annotation is None:
            return "empty"
        kind = kind_of_annotation(self.annotation)
        return kind.name + ("-rows" if self.rows and kind.has_boxes else "")


def _form(data: Any) -> _Form | None:
    """The form of the predictions ``data``, None when it is no known format."""
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        return None
    if not data:
        return _Form(None, rows=False)
    if all("path" in r and "mask_png" in r for r in data):
        return _Form("mask")
    if all("path" in r and "boxes" in r and "labels" in r and "scores" in r for r in data):
        return _Form("objects")
    if all("path" in r and "labels" in r for r in data):
        return _Form("labels")
    if all(
        {"category_id", "bbox", "score"} <= r.keys() and ("file_name" in r or "image_id" in r) for r in data
    ):
        return _Form("objects", rows=False)
    return None


def _coco_ids(index: DatasetIndex) -> dict[Any, str]:
    """Image id -> resolved path from the dataset's COCO annotation files (ids in two files are dropped)."""
    from foveal.data.formats.coco import find_coco

    ids: dict[Any, str | None] = {}
    try:
        found = find_coco(index.root) if index.fmt == "coco" else {}
        for annotation, image_dir in found.values():
            for image in json.loads(annotation.read_text(encoding="utf-8")).get("images", []):
                path = image_dir / image["file_name"]
                path = path if path.is_file() else image_dir / Path(image["file_name"]).name
                ids[image["id"]] = None if image["id"] in ids else _key(path)
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return {}
    return {k: v for k, v in ids.items() if v is not None}


def _match_detections(data: list[dict[str, Any]], source: Path, index: DatasetIndex) -> Predictions:
    """COCO results matched by ``file_name`` (the path's last parts), then by the dataset's ``image_id``."""
    by_path = {_key(e.path): e for e in index.entries}
    by_name: dict[str, list[str]] = {}
    for key in by_path:
        by_name.setdefault(Path(key).name, []).append(key)
    ids = _coco_ids(index) if any("image_id" in d for d in data) else {}
    categories = {c["id"] for c in index.categories or []}
    rows: dict[str, list[dict[str, Any]]] = {}
    unmatched = 0
    for i, det in enumerate(data):
        bbox = det["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and isinstance(det["score"], (int, float))):
            raise DataError(
                f"{source}: detection {i} needs bbox [x, y, w, h] and a numeric score; fix the file"
            )
        if det["category_id"] not in categories:
            raise DataError(
                f"{source}: detection {i} has category_id {det['category_id']!r}, not one of the dataset's "
                f"ids {sorted(categories)}; pass results made with this dataset's categories"
            )
        key = None
        if det.get("file_name"):
            parts = Path(str(det["file_name"])).parts
            found = [k for k in by_name.get(parts[-1], []) if Path(k).parts[-len(parts) :] == parts]
            key = found[0] if len(found) == 1 else None
        key = key or ids.get(det.get("image_id"))
        if key is None or key not in by_path:
            unmatched += 1
            continue
        rows.setdefault(key, []).append(det)
    judged = {by_path[k].split for k in rows}
    return Predictions(source, rows, judged, unmatched)


def _detections_of(row: dict[str, Any], source: Path, index: DatasetIndex) -> list[dict[str, Any]]:
    """A foveal predict detection row (``boxes`` xyxy, ``labels`` class names, ``scores``) as COCO-style
    detections: ``bbox`` xywh pixels and the dataset's ``category_id``."""
    ids = {str(c["name"]): c["id"] for c in index.categories or []}
    out = []
    for box, label, score in zip(row["boxes"], row["labels"], row["scores"]):
        if label not in ids:
            raise DataError(
                f"{source}: {row['path']}: class '{label}' is not one of the dataset's classes "
                f"{list(ids)}; pass predictions of a model trained on this dataset"
            )
        x0, y0, x1, y1 = (float(v) for v in box)
        out.append({"category_id": ids[label], "score": float(score), "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return out


def load_predictions(source: Path, index: DatasetIndex) -> Predictions:
    """Read ``source`` (see ``write_gallery``) and match it to ``index``'s images; DataError when the file
    is no known predictions format, is for another task, or matches no image."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{source}: predictions file not found; check --predictions") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{source}: unknown predictions format (not JSON: {err}); {_EXPECTED}") from err
    form = _form(data)
    if form is None:
        raise DataError(f"{source}: unknown predictions format; {_EXPECTED}")
    kind = index.dataset_kind
    if form.annotation not in (None, kind.annotation):
        raise DataError(
            f"{source}: {form.name} predictions, but {index.root} is a {index.task} dataset; "
            f"pass {index.task} predictions"
        )
    detection_rows = kind.has_boxes and form.rows  # foveal predict rows of boxes
    if kind.has_boxes and not form.rows:  # COCO results (or none)
        preds = _match_detections(data, source, index)
    else:
        by_path = {_key(e.path) for e in index.entries}
        rows: dict[str, Any] = {}
        unmatched = 0
        for row in data:
            name = Path(str(row["path"])).expanduser()
            keys = [_key(base / name) for base in (Path.cwd(), source.parent, index.root)]
            key = next((k for k in keys if k in by_path), None)
            if key is None:
                unmatched += 1
            else:  # detection: every image with a row is judged, also one without boxes
                rows[key] = _detections_of(row, source, index) if detection_rows else row
        preds = Predictions(source, rows, set() if detection_rows else None, unmatched)
    if data and not preds.rows:
        raise DataError(
            f"{source}: none of its {len(data)} predictions matches an image of {index.root}; "
            "pass predictions made on this dataset's images"
        )
    return preds


def _xyxy(xywh: list[list[float]]) -> np.ndarray:
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def detection_mistake(objects: list[dict[str, Any]], detections: list[dict[str, Any]]) -> tuple[int, int]:
    """(missed target boxes, extra predictions): each detection (highest score first) takes the unmatched
    target of its class with the highest IoU >= MIN_IOU; crowd targets are never missed. Boxes xywh."""
    used = [False] * len(objects)
    extra = 0
    ordered = sorted(detections, key=lambda d: -float(d["score"]))
    ious = box_iou_numpy(_xyxy([d["bbox"] for d in ordered]), _xyxy([o["bbox"] for o in objects]))
    for i, det in enumerate(ordered):
        best, best_iou = None, MIN_IOU
        for j, obj in enumerate(objects):
            if obj["category_id"] != det["category_id"] or (used[j] and not obj.get("iscrowd")):
                continue
            iou = float(ious[i, j])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is None:
            extra += 1
        else:
            used[best] = True
    return sum(not u and not o.get("iscrowd") for u, o in zip(used, objects)), extra
