"""Read a semantic segmentation dataset (images + masks, or COCO) and decode its targets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from foveal.data.checks import ON_BAD_IMAGE
from foveal.data.formats.coco import coco_semantic_mask, find_coco, read_coco
from foveal.data.formats.masks import MaskSpec, decode_mask, read_mask_folder
from foveal.data.sample import Sample
from foveal.data.splits import stratified_split
from foveal.errors import BadImageError, DataError, check_choice, did_you_mean

log = logging.getLogger("foveal")

FORMATS = ("auto", "masks", "coco")


def detect_format(path: Path) -> str:
    """'coco' when ``path`` is or holds a COCO annotation file (see ``find_coco``), else 'masks'."""
    if path.is_file() and path.suffix.lower() != ".json":
        raise DataError(f"{path}: a file that is not a COCO .json; pass the dataset folder")
    return "coco" if find_coco(path) else "masks"


def coco_spec(categories: list[dict[str, Any]], ignore_index: int = 255) -> MaskSpec:
    """Classes ``["background", *category names in id order]``; a category named background maps to 0."""
    names = ["background"]
    mapping: dict[int, int] = {}
    for category in sorted(categories, key=lambda c: c["id"]):
        if str(category["name"]).lower() == "background":
            mapping[category["id"]] = 0
            continue
        mapping[category["id"]] = len(names)
        names.append(str(category["name"]))
    return MaskSpec(names, ignore_index=ignore_index, category_to_index=mapping)


def _category_map(annotation: Path, categories: list[dict[str, Any]], spec: MaskSpec) -> dict[int, int]:
    """This file's category ids -> ``spec``'s class indices, matched by name (background -> 0)."""
    mapping: dict[int, int] = {}
    for category in categories:
        name = str(category["name"])
        if name.lower() != "background" and name not in spec.class_names:
            raise DataError(
                f"{annotation}: category '{name}' is not one of the classes {spec.class_names[1:]}"
                f"{did_you_mean(name, spec.class_names)}; rename or remove it"
            )
        mapping[category["id"]] = 0 if name.lower() == "background" else spec.class_names.index(name)
    return mapping


def _read_coco(root: Path, class_spec: MaskSpec | None) -> tuple[dict[str, list[Sample]], MaskSpec]:
    found = find_coco(root)
    if not found:
        raise DataError(
            f"{root}: no COCO annotation file found; expected annotations.json + images/ or "
            "annotations/instances_<split>.json"
        )
    splits: dict[str, list[Sample]] = {}
    spec = None if class_spec is None else replace(class_spec)  # a copy: category ids are added
    for split, (annotation, image_dir) in found.items():
        samples, categories = read_coco(annotation, image_dir)
        objects = [obj for sample in samples for obj in sample.objects or []]
        if objects and not any(obj.get("segmentation") for obj in objects):
            raise DataError(
                f"{annotation}: no annotation has a 'segmentation' (polygons or RLE); semantic "
                "segmentation needs masks, not only boxes"
            )
        if not categories:
            raise DataError(f"{annotation}: no 'categories' listed; add the list of categories (id, name)")
        spec = spec or coco_spec(categories)
        mapping = _category_map(annotation, categories, spec)
        known = spec.category_to_index or {}
        if any(known.get(k, v) != v for k, v in mapping.items()):
            raise DataError(
                f"{annotation}: category ids differ from the other annotation files; use one id set"
            )
        spec.category_to_index = {**known, **mapping}
        unknown = next((obj for obj in objects if obj["category_id"] not in mapping), None)
        if unknown is not None:
            raise DataError(
                f"{annotation}: annotation {unknown.get('id')!r} has category_id {unknown['category_id']!r}, "
                "which is not in 'categories'; fix the annotation or add the category"
            )
        splits[split] = samples
    return splits, spec  # type: ignore[return-value]


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such {what}; check the path")
    return path


def _read(
    path: Path, fmt: str, class_spec: MaskSpec | None, on_bad_image: str
) -> tuple[dict[str, list[Sample]], MaskSpec]:
    from foveal.data.manifest import assign, check_task, is_manifest, read_manifest

    if is_manifest(path):
        manifest = read_manifest(path)
        check_task(manifest, "segment")
        splits, spec = _read(manifest.source, manifest.fmt, class_spec, on_bad_image)
        return assign(manifest, (s for part in splits.values() for s in part)), spec
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "coco":
        return _read_coco(path, class_spec)
    if path.is_file():
        raise DataError(f"{path}: images + masks data must be a folder; pass its parent folder")
    return read_mask_folder(path, class_spec, on_bad_image)


def load_segmentation(
    data: str | Path,
    val: str | Path | None = None,
    *,
    fmt: str = "auto",
    class_spec: MaskSpec | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    on_bad_image: str = "error",
    split_off_val: bool = True,
) -> tuple[dict[str, list[Sample]], MaskSpec]:
    """Read ``data`` (and an optional separate ``val`` set) into train/val/test samples and a class spec.

    ``fmt`` 'auto' picks COCO when an annotation JSON is found, else images + masks folders. COCO
    classes are ``["background", *category names in id order]``; ``class_spec`` (e.g. from a
    checkpoint) fixes the classes instead. With ``split_off_val``, data without split folders joins
    'train' and data without a validation split gets a seeded random split of ``val_fraction``;
    without it the splits stay as read ('all' for data without split folders). Masks are decoded
    later: ``decode_target`` per sample, ``check_masks`` for all of them up front.
    """
    check_choice("format", fmt, FORMATS)
    check_choice("--on-bad-image value", on_bad_image, ON_BAD_IMAGE)
    root = _existing(data, "dataset file or folder")
    splits, spec = _read(root, fmt, class_spec, on_bad_image)
    if val is not None:
        val_splits, _ = _read(_existing(val, "validation file or folder"), fmt, spec, on_bad_image)
        splits["val"] = [s for part in val_splits.values() for s in part]
    if not split_off_val:
        return splits, spec
    if "all" in splits:
        splits.setdefault("train", []).extend(splits.pop("all"))
    if "val" not in splits and splits.get("train"):
        splits["train"], splits["val"] = stratified_split(splits["train"], val_fraction, seed)
    return splits, spec


def decode_target(sample: Sample, spec: MaskSpec, size: tuple[int, int] | None = None) -> np.ndarray:
    """The (H, W) int64 class map of ``sample``: its mask file decoded, or its COCO objects rendered.

    ``size`` is the image's (W, H); a mask file must match it, and COCO objects are rendered at it
    (read from the image header when None). COCO category ids map through ``spec.category_to_index``.
    """
    if sample.mask is not None:
        return decode_mask(sample.mask, spec, size, image=sample.path)
    if sample.objects is None:
        raise DataError(f"{sample.path}: no mask or annotations for this image; add its mask")
    if spec.category_to_index is None:
        raise DataError(f"{sample.path}: COCO annotations but the class spec has no category ids")
    if size is None:
        size = _image_size(sample.path)
    try:
        return coco_semantic_mask(sample.objects, size[1], size[0], spec.category_to_index, spec.ignore_index)
    except DataError as err:
        raise DataError(f"{sample.path}: {err}") from err


def _image_size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as err:
        raise BadImageError(f"{path}: not a readable image ({err}); replace or remove it") from err


def _target_problem(sample: Sample, spec: MaskSpec) -> str | None:
    try:
        decode_target(sample, spec, _image_size(sample.path))
    except DataError as err:
        return str(err)
    return None


def check_masks(
    samples: Sequence[Sample], spec: MaskSpec, on_bad_image: str = "error", workers: int = 4
) -> list[Sample]:
    """Decode every target once at its image's size (from the header): raise on the first bad one, or
    with ``on_bad_image="skip"`` drop bad ones with one warning stating the count and first paths."""
    check_choice("--on-bad-image value", on_bad_image, ON_BAD_IMAGE)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(lambda s: _target_problem(s, spec), samples))
    bad = [(s, p) for s, p in zip(samples, problems) if p is not None]
    if not bad:
        return list(samples)
    if on_bad_image == "error":
        more = f" (and {len(bad) - 1} more bad masks)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0][1]}, or pass --on-bad-image skip{more}")
    first = ", ".join(s.mask or s.path for s, _ in bad[:3])
    more = " ..." if len(bad) > 3 else ""
    log.warning("skipped %d image(s) with a bad mask of %d: %s%s", len(bad), len(samples), first, more)
    return [s for s, p in zip(samples, problems) if p is None]
