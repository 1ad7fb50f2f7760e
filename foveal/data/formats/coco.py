"""COCO annotation files: find them, read images with their annotations, render semantic masks.

Layouts (``find_coco``):

- ``DIR/annotations.json`` with the images in ``DIR/images/`` (or beside the file): split ``all``;
- ``DIR/annotations/instances_<split>.json`` with the images in ``DIR/<split>/``, ``DIR/images/<split>/``
  or ``DIR/images/``; ``<split>`` names starting with train/val/test (e.g. ``train2017``) give those splits.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from foveal.data.sample import Sample
from foveal.errors import DataError

log = logging.getLogger("foveal")

SPLIT_NAMES = ("train", "val", "test")


def _load_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path}: annotation file not found; check the path") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); fix or re-export the annotation file") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(
            f"{path}: not a COCO annotation file (no 'images' list); export the labels as COCO JSON"
        )
    return doc


def _objects_by_image(doc: dict[str, Any], path: Path) -> dict[Any, list[dict[str, Any]]]:
    """Each image id's annotations in file order, without ``image_id``, ``iscrowd`` defaulting to 0."""
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in doc.get("annotations") or []:
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            ident = ann.get("id") if isinstance(ann, dict) else ann
            raise DataError(
                f"{path}: annotation {ident!r} lacks 'image_id' or 'category_id'; fix or re-export the file"
            )
        obj = {key: value for key, value in ann.items() if key != "image_id"}
        obj.setdefault("iscrowd", 0)
        by_image[ann["image_id"]].append(obj)
    return by_image


def read_coco(annotation_file: Path, image_dir: Path) -> tuple[list[Sample], list[dict[str, Any]]]:
    """Read a COCO file into samples (``path``, ``objects``) and its categories list.

    ``objects`` holds the image's annotations as in the file (``category_id``, ``bbox`` xywh pixels,
    ``segmentation``, ``iscrowd``, ``area``, ``keypoints`` if present, ...); images without annotations
    get ``[]``. ``file_name`` is resolved under ``image_dir`` (or, failing that, its base name is).
    Raises DataError for bad JSON, entries without ids, or missing image files.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    doc = _load_json(annotation_file)
    by_image = _objects_by_image(doc, annotation_file)
    samples: list[Sample] = []
    missing: list[Path] = []
    for entry in doc["images"]:
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DataError(
                f"{annotation_file}: image entry {entry!r} lacks 'id' or 'file_name'; fix the file"
            )
        path = image_dir / entry["file_name"]
        if not path.is_file() and (image_dir / Path(entry["file_name"]).name).is_file():
            path = image_dir / Path(entry["file_name"]).name
        if not path.is_file():
            missing.append(path)
        samples.append(Sample(str(path), objects=by_image.pop(entry["id"], [])))
    if missing:
        raise DataError(
            f"{missing[0]}: image listed in {annotation_file} not found ({len(missing)} of {len(samples)} "
            f"missing); put the images in {image_dir} or fix their file_name"
        )
    if by_image:
        count = sum(len(objs) for objs in by_image.values())
        log.warning("%s: ignored %d annotation(s) of image ids not in 'images'", annotation_file, count)
    categories = list(doc.get("categories") or [])
    for category in categories:
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise DataError(f"{annotation_file}: category {category!r} lacks 'id' or 'name'; fix the file")
    return samples, categories


def _split_key(name: str) -> str:
    return next((split for split in SPLIT_NAMES if name.startswith(split)), name)


def find_coco(root: Path) -> dict[str, tuple[Path, Path]]:
    """COCO annotation files and their image folders under ``root``, by split; ``{}`` when there are none.

    ``root`` may also be an annotation ``.json`` file (images in ``images/`` beside it, or beside it).
    """
    root = Path(root)
    if root.is_file() or (root / "annotations.json").is_file():
        annotation = root if root.is_file() else root / "annotations.json"
        images = annotation.parent / "images"
        return {"all": (annotation, images if images.is_dir() else annotation.parent)}
    found: dict[str, tuple[Path, Path]] = {}
    for annotation in sorted((root / "annotations").glob("instances_*.json")):
        name = annotation.stem.removeprefix("instances_")
        folders = (root / name, root / "images" / name, root / "images")
        image_dir = next((folder for folder in folders if folder.is_dir()), None)
        if image_dir is None:
            raise DataError(
                f"{annotation}: no image folder for split '{name}'; put its images in {folders[1]}"
            )
        key = _split_key(name)
        if key in found:
            raise DataError(f"{annotation}: a second annotation file for split '{key}'; keep one per split")
        found[key] = (annotation, image_dir)
    return found


def _object_mask(obj: dict[str, Any], height: int, width: int) -> np.ndarray | None:
    """(H, W) bool mask of one annotation's polygons or RLE; None when it has no segmentation."""
    seg = obj.get("segmentation")
    if isinstance(seg, list):
        polygons = [polygon for polygon in seg if len(polygon) >= 6]
        if not polygons:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(seg, dict) and "counts" in seg:
        if list(seg.get("size", [])) != [height, width]:
            raise DataError(
                f"annotation {obj.get('id')!r}: RLE size {seg.get('size')} is not the image's "
                f"[{height}, {width}] (height, width); re-export the masks for this image"
            )
        rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg
    else:
        return None
    return mask_utils.decode(rle).astype(bool)


def coco_semantic_mask(
    objects: list[dict[str, Any]],
    height: int,
    width: int,
    category_to_index: dict[int, int],
    ignore_index: int = 255,
) -> np.ndarray:
    """Render annotations to an (H, W) int64 class map: background 0, each object its class index.

    Polygons and RLE (compressed or uncompressed) are decoded with pycocotools. Objects are drawn in
    list (file) order, so a later annotation overwrites an earlier one where they overlap; crowd
    regions (``iscrowd`` 1) are drawn as ``ignore_index``. Annotations without a segmentation are skipped.
    Raises DataError for an unknown category id or an RLE of another size.
    """
    out = np.zeros((height, width), dtype=np.int64)
    for obj in objects:
        mask = _object_mask(obj, height, width)
        if mask is None:
            continue
        if obj.get("iscrowd"):
            out[mask] = ignore_index
            continue
        category = obj.get("category_id")
        if category not in category_to_index:
            raise DataError(
                f"annotation {obj.get('id')!r}: category_id {category!r} is not one of the categories "
                f"{sorted(category_to_index)}; fix the annotation or add the category"
            )
        out[mask] = category_to_index[category]
    return out
