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

from pathlib import Path

from foveal.data.checks import ON_BAD_IMAGE
from foveal.data.formats.common import Checks, DetectionData
from foveal.errors import DataError, check_choice

FORMATS = ("auto", "coco", "yolo", "voc")
WRITE_FORMATS = ("coco", "yolo", "voc")
LAYOUTS = (
    "COCO (annotations.json + images/, or annotations/instances_<split>.json + images/<split>/), "
    "YOLO (data.yaml + images/<split>/ + labels/<split>/), "
    "VOC (Annotations/*.xml + JPEGImages/)"
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
    from foveal.data.manifest import assign, check_task, is_manifest, read_manifest

    root = Path(root).expanduser()
    if is_manifest(root):
        manifest = read_manifest(root)
        check_task(manifest, "detect")
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
