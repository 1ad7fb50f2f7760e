"""COCO annotation files: find them, read images with their annotations, render semantic masks.

Layouts (``find_coco``):

- ``DIR/annotations.json`` with the images in ``DIR/images/`` (or beside the file): split ``all``;
- ``DIR/annotations/instances_<split>.json`` with the images in ``DIR/<split>/``, ``DIR/images/<split>/``
  or ``DIR/images/``; ``<split>`` names starting with train/val/test (e.g. ``train2017``) give those splits.

``read_coco`` keeps annotations as in the file (semantic segmentation); ``read_coco_detection`` checks
them for detection (boxes clipped, bad annotations refused or skipped; see ``foveal.data.det_loading``)
and ``write_coco`` writes ``DetectionData`` back in the layouts above.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from foveal.data.formats.common import (
    Checks,
    DetectionData,
    normalise_categories,
    place_image,
    prepare_output,
    unique_names,
)
from foveal.data.sample import Sample
from foveal.errors import DataError
from foveal.serialize import plain

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


def object_mask(obj: dict[str, Any], height: int, width: int) -> np.ndarray | None:
    """(H, W) bool mask of one annotation's polygons or RLE (pycocotools); None without a segmentation."""
    return _object_mask(obj, height, width)


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


# ---- detection: checked reading and writing ----


def _image_entries(
    doc: dict[str, Any], annotation: Path, image_dir: Path, checks: Checks
) -> tuple[dict[Any, Sample], dict[str, tuple[int, int]], set[Any]]:
    """Samples by image id, sizes by path, and the ids of images dropped (missing or unreadable)."""
    samples: dict[Any, Sample] = {}
    sizes: dict[str, tuple[int, int]] = {}
    dropped: set[Any] = set()
    for entry in doc["images"]:
        ident = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(ident, (int, str)) or isinstance(ident, bool) or "file_name" not in entry:
            checks.bad(
                "malformed image entries",
                f"{annotation}: image entry {str(entry)[:80]} lacks an 'id' or a 'file_name'; fix the entry",
            )
            continue
        if ident in samples or ident in dropped:
            checks.bad(
                "malformed image entries", f"{annotation}: image id {ident!r} is listed twice; keep one"
            )
            continue
        path = image_dir / str(entry["file_name"])
        if not path.is_file() and (image_dir / Path(str(entry["file_name"])).name).is_file():
            path = image_dir / Path(str(entry["file_name"])).name
        width, height = entry.get("width"), entry.get("height")
        if not path.is_file():
            checks.bad(
                "missing image(s)",
                f"{path}: image id {ident!r} listed in {annotation} not found; put it in {image_dir} "
                "or fix its file_name",
            )
            size = None
        elif isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            size = (height, width)
        else:  # no size in the file: read the image header
            size = checks.size(path)
        if size is None:
            dropped.add(ident)
            continue
        samples[ident] = Sample(str(path), objects=[])
        sizes[str(path)] = size
    return samples, sizes, dropped


def _read_split(
    doc: dict[str, Any], annotation: Path, image_dir: Path, checks: Checks
) -> tuple[list[Sample], dict[str, tuple[int, int]]]:
    samples, sizes, dropped = _image_entries(doc, annotation, image_dir, checks)
    annotations = doc.get("annotations") or []
    if not isinstance(annotations, list):
        raise DataError(f"{annotation}: 'annotations' is not a list; fix or re-export the file")
    for ann in annotations:
        ident = ann.get("id") if isinstance(ann, dict) else ann
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            checks.bad(
                "malformed annotation(s)",
                f"{annotation}: annotation {str(ident)[:80]} lacks 'image_id' or 'category_id'; fix it",
            )
            continue
        image_id = ann["image_id"]
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            checks.bad(
                "malformed annotation(s)",
                f"{annotation}: annotation id {ident!r} has image_id {image_id!r}; use an image's id",
            )
            continue
        if image_id in dropped:
            continue
        sample = samples.get(image_id)
        if sample is None:
            checks.bad(
                "annotation(s) of image ids not in 'images'",
                f"{annotation}: annotation id {ident!r} has image_id {image_id!r}, which is not in 'images'; "
                "add the image entry or remove the annotation",
            )
            continue
        obj = {key: value for key, value in ann.items() if key != "image_id"}
        checked = checks.object(obj, sizes[sample.path], f"{annotation}: annotation id {ident!r}")
        if checked is not None:
            sample.objects.append(checked)  # type: ignore[union-attr]
    return list(samples.values()), sizes


def read_coco_detection(root: str | Path, checks: Checks | None = None) -> DetectionData:
    """Read a COCO dataset (any ``find_coco`` layout, or one .json file) into checked ``DetectionData``.

    One file is split 'all'; an ``annotations/instances_<split>.json`` file takes its images from the
    folder the split layout gives (``<split>/``, ``images/<split>/`` or ``images/``).

    Image sizes come from each entry's ``width``/``height`` (the image header when absent). Category
    lists of several split files are merged by id (the same id must have the same name).
    ``checks`` applies the bad-input policy (default: raise on the first problem).
    """
    root = Path(root)
    checks = checks or Checks(root)
    found = find_coco(root)
    if root.is_file() and root.parent.name == "annotations" and root.stem.startswith("instances_"):
        # one file of the split layout: its images are where find_coco would look for that split
        name = root.stem.removeprefix("instances_")
        top = root.parent.parent
        folders = (top / name, top / "images" / name, top / "images")
        found = {"all": (root, next((f for f in folders if f.is_dir()), found["all"][1]))}
    if not found:
        raise DataError(
            f"{root}: no COCO annotation file found; expected annotations.json + images/ or "
            "annotations/instances_<split>.json + images/<split>/"
        )
    docs = {split: _load_json(annotation) for split, (annotation, _) in found.items()}
    merged: dict[int, dict[str, Any]] = {}
    for split, doc in docs.items():
        annotation = found[split][0]
        for category in normalise_categories(doc.get("categories") or [], annotation):
            known = merged.setdefault(category["id"], category)
            if known["name"] != category["name"]:
                raise DataError(
                    f"{annotation}: category id {category['id']} is '{category['name']}' here but "
                    f"'{known['name']}' in another annotation file; use one category list"
                )
    if not merged:
        raise DataError(
            f"{found[next(iter(found))][0]}: no 'categories' listed; add the categories (id, name)"
        )
    categories = [merged[key] for key in sorted(merged)]
    checks.set_categories(categories)
    splits: dict[str, list[Sample]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for split, (annotation, image_dir) in found.items():
        splits[split], split_sizes = _read_split(docs[split], annotation, image_dir, checks)
        sizes.update(split_sizes)
    return checks.finish(splits, categories, sizes, "coco")


_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "keypoints")


def _annotation(obj: dict[str, Any], ann_id: int, image_id: int) -> dict[str, Any]:
    """One COCO annotation: the object's keys (known ones first), with these ids and ``num_keypoints``."""
    ann: dict[str, Any] = {"id": ann_id, "image_id": image_id}
    for key in (*_ANNOTATION_KEYS[2:], *obj):
        if key in obj and key not in ann:
            ann[key] = obj[key]
    ann["bbox"] = [float(v) for v in ann["bbox"]]
    ann.setdefault("iscrowd", 0)
    if ann.get("keypoints") is not None and "num_keypoints" not in ann:
        ann["num_keypoints"] = sum(1 for v in ann["keypoints"][2::3] if v > 0)
    return ann


def write_coco(out: str | Path, data: DetectionData) -> Path:
    """Write ``data`` as COCO to the new or empty folder ``out``; returns ``out``.

    Splits give ``annotations/instances_<split>.json`` + ``images/<split>/``; data with the one split
    'all' gives ``annotations.json`` + ``images/``. Images are hard-linked (or copied) under their base
    names (``_2``, ... added on a clash); image ids run from 1 over all splits; annotation ids are kept
    when every object has a distinct integer ``id``, else numbered from 1.
    """
    ids = [obj.get("id") for part in data.splits.values() for s in part for obj in s.objects or []]
    keep_ids = all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids)
    out = prepare_output(out)
    single = list(data.splits) == ["all"]
    image_id = ann_id = 0
    for split, samples in data.splits.items():
        folder = out / "images" if single else out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        names = unique_names([s.path for s in samples])
        doc: dict[str, Any] = {"images": [], "annotations": [], "categories": data.categories}
        for sample in samples:
            place_image(sample.path, folder / names[sample.path])
            image_id += 1
            height, width = data.sizes[sample.path]
            doc["images"].append(
                {"id": image_id, "file_name": names[sample.path], "width": width, "height": height}
            )
            for obj in sample.objects or []:
                ann_id += 1
                doc["annotations"].append(_annotation(obj, obj["id"] if keep_ids else ann_id, image_id))
        target = out / "annotations.json" if single else out / "annotations" / f"instances_{split}.json"
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(plain(doc)))
    return out
