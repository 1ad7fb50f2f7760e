"""Detection datasets (boxes, instance masks, keypoints) in one form, whatever the file format.

``load_detection`` finds the layout (COCO, YOLO or Pascal VOC; see the readers in
``foveal.data.formats``) and returns ``DetectionData``: samples per split whose ``objects`` are COCO
annotation dicts (``category_id``, ``bbox`` [x, y, w, h] float absolute pixels, ``iscrowd``, ``area``,
optional ``segmentation`` polygons in pixels or RLE, optional ``keypoints`` flat [x, y, v] * K, optional
``id``), COCO category dicts and every image's size.

Bad input, checked by every reader through ``Checks``:

- a box reaching outside its image is clipped to the image, with one warning giving the count;
- a box without area (after clipping), an unknown category id, an annotation of an image id not in
  ``images``, keypoints that are not 3 * K values, a malformed JSON/XML file or YOLO label line, and an
  image file listed but missing or unreadable raise DataError (one line naming the file, the line or
  annotation id, the value and the fix), or with ``on_bad_image="skip"`` the annotation (or image) is
  dropped and one warning per kind of problem gives the count;
- a dataset without images raises DataError.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from foveal.data.checks import ON_BAD_IMAGE
from foveal.data.sample import Sample
from foveal.errors import BadImageError, DataError, check_choice

log = logging.getLogger("foveal")

FORMATS = ("auto", "coco", "yolo", "voc")
WRITE_FORMATS = ("coco", "yolo", "voc")
SPLIT_ORDER = ("train", "val", "test", "all")
CLIP_TOLERANCE = 1e-3  # pixels a box may reach past the image edge before its clipping is counted
LAYOUTS = (
    "COCO (annotations.json + images/, or annotations/instances_<split>.json + images/<split>/), "
    "YOLO (data.yaml + images/<split>/ + labels/<split>/), "
    "VOC (Annotations/*.xml + JPEGImages/)"
)


@dataclass
class DetectionData:
    """A detection dataset in memory.

    ``splits``: split name ('train', 'val', 'test' or 'all') -> samples whose ``objects`` are COCO
    annotation dicts (boxes [x, y, w, h] float absolute pixels). ``categories``: COCO category dicts
    in id order (``id``, ``name``, optional ``keypoints`` names, ``skeleton`` 1-based pairs and
    ``flip_idx``, a foveal extension: the keypoint index permutation under a horizontal flip).
    ``sizes``: image path -> (height, width). ``source``: 'coco', 'yolo' or 'voc'.
    """

    splits: dict[str, list[Sample]]
    categories: list[dict[str, Any]]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    source: str = "coco"

    @property
    def classes(self) -> list[str]:
        """Category names in id order."""
        return [str(c["name"]) for c in self.categories]

    def _keypoint_category(self) -> dict[str, Any] | None:
        return next((c for c in self.categories if c.get("keypoints")), None)

    @property
    def keypoint_names(self) -> list[str]:
        """Keypoint names of the first category that has them; [] when none has."""
        category = self._keypoint_category()
        return list(category["keypoints"]) if category else []

    @property
    def skeleton(self) -> list[tuple[int, int]]:
        """Skeleton edges (0-based keypoint index pairs) of the first category with keypoints."""
        category = self._keypoint_category()
        return [(int(a) - 1, int(b) - 1) for a, b in (category or {}).get("skeleton") or []]

    @property
    def flip_idx(self) -> list[int] | None:
        """Keypoint permutation under a horizontal flip, of the first category with keypoints; or None."""
        category = self._keypoint_category()
        flip = (category or {}).get("flip_idx")
        return [int(i) for i in flip] if flip is not None else None

    def summary(self) -> dict[str, Any]:
        """Images per split, the object count and the class names."""
        return {
            "format": self.source,
            "images": {name: len(samples) for name, samples in self.splits.items()},
            "objects": sum(len(s.objects or []) for part in self.splits.values() for s in part),
            "classes": self.classes,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def normalise_categories(categories: Any, where: Path | str) -> list[dict[str, Any]]:
    """Copies of COCO ``categories`` sorted by id; DataError for missing or twice-used ids, bad keypoints."""
    if not isinstance(categories, list):
        raise DataError(
            f"{where}: 'categories' is {categories!r}, not a list; list the categories (id, name)"
        )
    out: dict[int, dict[str, Any]] = {}
    for category in categories:
        if not isinstance(category, dict) or "name" not in category or not _is_int(category.get("id")):
            raise DataError(f"{where}: category {category!r} lacks an integer 'id' or a 'name'; fix the file")
        if category["id"] in out:
            raise DataError(
                f"{where}: category id {category['id']} is listed twice; give each category one id"
            )
        names = category.get("keypoints") or []
        if not isinstance(names, list):
            raise DataError(
                f"{where}: category {category['id']} 'keypoints' {names!r} is not a list of names"
            )
        for pair in category.get("skeleton") or []:
            if not (
                isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_int(i) for i in pair)
            ) or not (all(1 <= i <= len(names) for i in pair)):
                raise DataError(
                    f"{where}: category {category['id']} skeleton edge {pair!r} is not a pair of 1-based "
                    f"keypoint indices in 1..{len(names)}; fix the skeleton"
                )
        flip = category.get("flip_idx")
        if flip is not None and not (
            isinstance(flip, list) and all(map(_is_int, flip)) and sorted(flip) == list(range(len(names)))
        ):
            raise DataError(
                f"{where}: category {category['id']} flip_idx {flip!r} is not a permutation of "
                f"0..{len(names) - 1}; fix it or remove it"
            )
        out[category["id"]] = dict(category)
    return [out[key] for key in sorted(out)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image from its header (no full decode); BadImageError when unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError as err:
        raise BadImageError(f"{path}: image not found; check the path") from err
    except (UnidentifiedImageError, OSError) as err:
        raise BadImageError(f"{path}: not a readable image ({err}); replace or remove it") from err
    return int(height), int(width)


class Checks:
    """The bad-input policy the readers share: raise DataError, or drop the item and count it.

    With ``on_bad_image="error"`` the first problem raises; with "skip" each problem is counted per
    kind and ``finish`` logs one warning per kind with the count and the first message.
    """

    def __init__(self, root: str | Path, on_bad_image: str = "error") -> None:
        check_choice("--on-bad-image value", on_bad_image, ON_BAD_IMAGE)
        self.root = Path(root)
        self.skip = on_bad_image == "skip"
        self.dropped: dict[str, list[Any]] = {}  # kind -> [count, first message]
        self.clipped = 0
        self.first_clipped = ""
        self.categories: dict[int, dict[str, Any]] = {}

    def set_categories(self, categories: list[dict[str, Any]]) -> None:
        """The categories (already normalised) that annotations may refer to."""
        self.categories = {c["id"]: c for c in categories}

    def bad(self, kind: str, message: str) -> None:
        """Report one problem: raise DataError(message) or count it under ``kind``."""
        if not self.skip:
            raise DataError(f"{message} (or pass --on-bad-image skip to drop it)")
        entry = self.dropped.setdefault(kind, [0, message])
        entry[0] += 1

    def size(self, path: str | Path) -> tuple[int, int] | None:
        """(height, width) from the image header, or None after reporting a missing/unreadable image."""
        if not Path(path).is_file():
            self.bad("missing image", f"{path}: image file not found; add the image or remove its labels")
            return None
        try:
            return image_size(path)
        except DataError as err:
            self.bad("unreadable image", str(err))
            return None

    def object(self, obj: dict[str, Any], size: tuple[int, int], where: str) -> dict[str, Any] | None:
        """A checked copy of one COCO-form annotation (box clipped to the (H, W) image), or None if dropped.

        ``where`` names it in messages (file and line, or file and annotation id).
        """
        height, width = size
        category = self.categories.get(obj.get("category_id"))  # type: ignore[arg-type]
        if category is None:
            self.bad(
                "annotation(s) with an unknown category",
                f"{where}: category_id {obj.get('category_id')!r} is not one of the category ids "
                f"{sorted(self.categories)}; fix the annotation or add the category",
            )
            return None
        bbox = obj.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            self.bad(
                "malformed annotation(s)",
                f"{where}: bbox {bbox!r} is not [x, y, width, height] (4 numbers); fix the annotation",
            )
            return None
        kps = obj.get("keypoints")
        k = len(category.get("keypoints") or [])
        if kps is not None and not (
            isinstance(kps, list) and len(kps) == 3 * k and all(map(_is_number, kps))
        ):
            length = len(kps) if isinstance(kps, list) else kps
            self.bad(
                "annotation(s) with keypoints of the wrong length",
                f"{where}: keypoints have {length} values but category '{category['name']}' has K={k} "
                f"keypoints; give 3*K = {3 * k} numbers (x, y, v per keypoint)",
            )
            return None
        x, y, w, h = (float(v) for v in bbox)
        x0, y0 = min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))
        x1, y1 = min(max(x + w, 0.0), float(width)), min(max(y + h, 0.0), float(height))
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            self.bad(
                "box(es) without area",
                f"{where}: box [x, y, w, h] {list(bbox)} has no area inside the {width}x{height} image; "
                "fix its corners or remove it",
            )
            return None
        if max(x0 - x, y0 - y, x + w - x1, y + h - y1) > CLIP_TOLERANCE:
            self.clipped += 1
            self.first_clipped = self.first_clipped or f"{where}: {list(bbox)}"
        out = dict(obj)
        out["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        out["iscrowd"] = int(bool(obj.get("iscrowd", 0)))
        if not _is_number(out.get("area")):
            out["area"] = (x1 - x0) * (y1 - y0)
        return out

    def finish(
        self,
        splits: dict[str, list[Sample]],
        categories: list[dict[str, Any]],
        sizes: dict[str, Any],
        source: str,
    ) -> DetectionData:
        """Log the clipping and skip warnings; DataError when no image is left."""
        if self.clipped:
            log.warning(
                "%s: clipped %d box(es) reaching outside their image to the image (first: %s)",
                self.root,
                self.clipped,
                self.first_clipped,
            )
        for kind, (count, first) in self.dropped.items():
            log.warning("%s: skipped %d %s; first: %s", self.root, count, kind, first)
        ordered = {name: splits[name] for name in SPLIT_ORDER if name in splits}
        ordered.update({name: part for name, part in splits.items() if name not in ordered})
        if not any(ordered.values()):
            raise DataError(
                f"{self.root}: no images in this {source.upper()} dataset"
                f"{' after skipping bad input' if self.dropped else ''}; add images and their labels"
            )
        return DetectionData(
            ordered, categories, {s.path: sizes[s.path] for p in ordered.values() for s in p}, source
        )


def detect_format(root: str | Path) -> str:
    """'coco', 'yolo' or 'voc' from the files at ``root``; DataError listing the layouts when none matches."""
    from foveal.data.formats.coco import find_coco
    from foveal.data.formats.yolo import find_data_yaml

    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such dataset file or folder; check the path")
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix in (".yaml", ".yml"):
            return "yolo"
        raise DataError(f"{root}: not a COCO .json or YOLO .yaml file; pass the dataset folder")
    if find_coco(root):
        return "coco"
    if find_data_yaml(root) is not None:
        return "yolo"
    if (root / "Annotations").is_dir() and any((root / "Annotations").glob("*.xml")):
        return "voc"
    raise DataError(f"{root}: no detection dataset found; expected one of: {LAYOUTS}; or pass --format")


def load_detection(root: str | Path, fmt: str = "auto", on_bad_image: str = "error") -> DetectionData:
    """Read a COCO, YOLO or VOC dataset (``fmt`` 'auto' detects it) into ``DetectionData``.

    Boxes come back as COCO [x, y, w, h] float absolute pixels, clipped to their image; see the module
    docstring for the bad-input rules (``on_bad_image`` 'error' or 'skip').
    """
    check_choice("detection format", fmt, FORMATS)
    check_choice("--on-bad-image value", on_bad_image, ON_BAD_IMAGE)
    from foveal.data.kinds import DETECT
    from foveal.data.manifest import assign, check_task, is_manifest, read_manifest

    root = Path(root).expanduser()
    if is_manifest(root):
        manifest = read_manifest(root)
        check_task(manifest, DETECT.name)
        data = load_detection(manifest.source, manifest.fmt, on_bad_image)
        data.splits = assign(manifest, (s for part in data.splits.values() for s in part))
        return data
    if fmt == "auto":
        fmt = detect_format(root)
    elif not root.exists():
        raise DataError(f"{root}: no such dataset file or folder; check the path")
    checks = Checks(root, on_bad_image)
    if fmt == "coco":
        from foveal.data.formats.coco import read_coco_detection as reader
    elif fmt == "yolo":
        from foveal.data.formats.yolo import read_yolo as reader
    else:
        from foveal.data.formats.voc import read_voc as reader
    return reader(root, checks)


# ---- helpers for the writers ----


def check_output(out: str | Path) -> Path:
    """``out`` as a Path; DataError when it is a file or a non-empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder '{out}' is not empty; choose an empty or new folder")
    return out


def prepare_output(out: str | Path) -> Path:
    """Create ``out``; raise DataError when it is a file or a non-empty folder."""
    out = check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def place_image(src: str | Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (creating its folder), or copy it where links are not possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def unique_names(paths: list[str], taken: set[str] | None = None) -> dict[str, str]:
    """A file name per path, keeping base names but unique by lower-case stem (``a_2.png`` on a clash)."""
    taken = set() if taken is None else taken
    names: dict[str, str] = {}
    for path in paths:
        if path in names:
            continue
        stem, suffix = Path(path).stem, Path(path).suffix
        name, k = f"{stem}{suffix}", 1
        while Path(name).stem.lower() in taken:
            k += 1
            name = f"{stem}_{k}{suffix}"
        taken.add(Path(name).stem.lower())
        names[path] = name
    return names


def write_detection(out: str | Path, data: DetectionData, fmt: str) -> Path:
    """Write ``data`` to the new or empty folder ``out`` as 'coco', 'yolo' or 'voc'; returns ``out``."""
    check_choice("output format", fmt, WRITE_FORMATS)
    if fmt == "coco":
        from foveal.data.formats.coco import write_coco as writer
    elif fmt == "yolo":
        from foveal.data.formats.yolo import write_yolo as writer
    else:
        from foveal.data.formats.voc import write_voc as writer
    return writer(out, data)
