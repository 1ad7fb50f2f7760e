"""Pascal VOC detection datasets: ``Annotations/*.xml`` + ``JPEGImages/*``.

Layout: ``DIR/Annotations/<id>.xml``, the image ``DIR/JPEGImages/<filename>`` (the XML's ``<filename>``,
else ``<id>`` with any image extension), optional ``DIR/ImageSets/Main/{train,val,test}.txt`` (one id per
line; without them every image is in split 'all'; a lone ``trainval.txt`` gives 'train'). Class names
are the lines of ``DIR/classes.txt`` when present, else the object names found in the XMLs, sorted;
category id = position + 1.

Conventions:

- VOC pixel coordinates are 1-based and inclusive: an object on 0-based pixel columns c0..c1 has
  ``xmin = c0 + 1``, ``xmax = c1 + 1``. Reading gives the COCO box ``x = xmin - 1``,
  ``w = xmax - xmin + 1`` (likewise y, h), i.e. pixel-edge coordinates; writing does the inverse after
  rounding the box edges to whole pixels (``xmin = round(x) + 1``, ``xmax = round(x + w)``).
- ``<difficult>1</difficult>`` objects become ``iscrowd`` 1 (COCO evaluation then ignores them, as VOC's
  does) and are written back as difficult.
- VOC holds boxes only: ``write_voc`` drops segmentations and keypoints.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from foveal.data.formats.common import Checks, DetectionData, place_image, prepare_output, unique_names
from foveal.data.imageio import is_image_file
from foveal.data.sample import Sample
from foveal.errors import DataError, did_you_mean

log = logging.getLogger("foveal")

SPLITS = ("train", "val", "test", "all")
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _split_ids(root: Path, stems: list[str]) -> dict[str, list[str]]:
    sets = root / "ImageSets" / "Main"
    files = {name: sets / f"{name}.txt" for name in SPLITS if (sets / f"{name}.txt").is_file()}
    if not files and (sets / "trainval.txt").is_file():
        files = {"train": sets / "trainval.txt"}
    if not files:
        return {"all": stems}
    return {
        name: [line.split()[0] for line in f.read_text().splitlines() if line.strip()]
        for name, f in files.items()
    }


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _parse(xml: Path, checks: Checks) -> ET.Element | None:
    try:
        return ET.parse(xml).getroot()
    except ET.ParseError as err:
        checks.bad("malformed XML file(s)", f"{xml}: not valid XML ({err}); fix or re-export the annotation")
    except OSError as err:
        checks.bad(
            "malformed XML file(s)", f"{xml}: cannot be read ({err}); fix its permissions or remove it"
        )
    return None


def _xml_size(root: ET.Element) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        width, height = int(float(_text(size, "width") or 0)), int(float(_text(size, "height") or 0))
    except ValueError:
        return None
    return (height, width) if width > 0 and height > 0 else None


def _objects(
    xml: Path, root: ET.Element, size: tuple[int, int], ids: dict[str, int], checks: Checks
) -> list[dict[str, Any]]:
    objects = []
    for k, node in enumerate(root.findall("object"), 1):
        name = _text(node, "name") or ""
        where = f"{xml}: object {k} ('{name}')"
        if name not in ids:
            checks.bad(
                "object(s) of an unknown class",
                f"{where}: class '{name}' is not one of {list(ids)}{did_you_mean(name, ids)}; fix the name "
                "or add it to classes.txt",
            )
            continue
        box = node.find("bndbox")
        corners = [None if box is None else _text(box, tag) for tag in _CORNERS]
        try:
            xmin, ymin, xmax, ymax = (float(c) for c in corners)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            checks.bad(
                "malformed object(s)",
                f"{where}: bndbox {dict(zip(_CORNERS, corners))} lacks xmin/ymin/xmax/ymax numbers; "
                "fix the XML",
            )
            continue
        try:
            difficult = int(float(_text(node, "difficult") or 0))
        except ValueError:
            difficult = 0
        obj = {
            "category_id": ids[name],
            "bbox": [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1],
            "iscrowd": int(difficult == 1),
        }
        checked = checks.object(obj, size, where)
        if checked is not None:
            objects.append(checked)
    return objects


def read_voc(root: str | Path, checks: Checks | None = None) -> DetectionData:
    """Read a Pascal VOC dataset folder into checked ``DetectionData`` (see the module docstring)."""
    root = Path(root)
    checks = checks or Checks(root)
    annotations, image_dir = root / "Annotations", root / "JPEGImages"
    if not annotations.is_dir():
        raise DataError(
            f"{root}: no Annotations/ folder; a VOC dataset has Annotations/*.xml and JPEGImages/"
        )
    xmls = {p.stem: p for p in sorted(annotations.glob("*.xml"))}
    images: dict[str, Path] = {}
    if image_dir.is_dir():
        for path in sorted(image_dir.iterdir()):
            if is_image_file(path):
                images.setdefault(path.stem, path)
    split_ids = _split_ids(root, sorted(xmls))
    parsed: dict[str, ET.Element | None] = {}
    for split, stems in split_ids.items():
        for stem in stems:
            if stem in parsed:
                continue
            if stem not in xmls:
                checks.bad(
                    "image id(s) without an annotation file",
                    f"{root / 'ImageSets' / 'Main' / split}.txt: id '{stem}' has no "
                    f"{annotations / stem}.xml; "
                    "add the annotation or remove the line",
                )
                parsed[stem] = None
                continue
            parsed[stem] = _parse(xmls[stem], checks)
    class_file = root / "classes.txt"
    if class_file.is_file():
        names = [line.strip() for line in class_file.read_text().splitlines() if line.strip()]
    else:
        found = {
            _text(o, "name") or "" for r in parsed.values() if r is not None for o in r.findall("object")
        }
        names = sorted(found - {""})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    if not categories:
        raise DataError(f"{root}: no object classes in the XMLs and no classes.txt; list the class names")
    ids = {name: i + 1 for i, name in enumerate(names)}
    checks.set_categories(categories)
    splits: dict[str, list[Sample]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    done: dict[str, Sample] = {}
    for split, stems in split_ids.items():
        samples = []
        for stem in stems:
            xml_root = parsed.get(stem)
            if stem in done:
                samples.append(done[stem])
                continue
            if xml_root is None:
                continue
            filename = _text(xml_root, "filename")
            path = image_dir / filename if filename and (image_dir / filename).is_file() else images.get(stem)
            if path is None:
                checks.bad(
                    "missing image(s)",
                    f"{xmls[stem]}: no image for it in {image_dir} (looked for '{filename}' and '{stem}.*'); "
                    "add the image or remove the annotation",
                )
                parsed[stem] = None
                continue
            size = _xml_size(xml_root) or checks.size(path)
            if size is None:
                parsed[stem] = None
                continue
            sample = Sample(str(path), objects=_objects(xmls[stem], xml_root, size, ids, checks))
            sizes[sample.path] = size
            done[stem] = sample
            samples.append(sample)
        splits[split] = samples
    return checks.finish(splits, categories, sizes, "voc")


def _edges(start: float, length: float, limit: int) -> tuple[int, int]:
    """Whole-pixel edges (e0 < e1) of [start, start + length], rounded half up, kept in 0..limit."""
    e0 = min(max(math.floor(start + 0.5), 0), limit - 1)
    e1 = min(max(math.floor(start + length + 0.5), e0 + 1), limit)
    return e0, e1


def _xml(name: str, size: tuple[int, int], objects: list[dict[str, Any]], classes: dict[int, str]) -> str:
    height, width = size
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = name
    size_node = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size_node, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        x, y, w, h = (float(v) for v in obj["bbox"])
        (x0, x1), (y0, y1) = _edges(x, w, width), _edges(y, h, height)
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = classes[obj["category_id"]]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(int(bool(obj.get("iscrowd"))))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(_CORNERS, (x0 + 1, y0 + 1, x1, y1)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(out: str | Path, data: DetectionData) -> Path:
    """Write ``data`` as Pascal VOC to the new or empty folder ``out``; returns ``out``.

    Writes ``JPEGImages/`` (images hard-linked or copied, names unique by stem over all splits),
    ``Annotations/<stem>.xml`` (boxes rounded to whole-pixel edges, 1-based inclusive; crowd objects
    as difficult), ``classes.txt`` (names in id order) and, unless the only split is 'all',
    ``ImageSets/Main/<split>.txt``. Segmentations and keypoints are not written.
    """
    out = prepare_output(out)
    (out / "Annotations").mkdir()
    (out / "JPEGImages").mkdir()
    classes = {c["id"]: str(c["name"]) for c in data.categories}
    names = unique_names([s.path for part in data.splits.values() for s in part])
    dropped = 0
    for samples in data.splits.values():
        for sample in samples:
            name = names[sample.path]
            xml = out / "Annotations" / f"{Path(name).stem}.xml"
            if xml.exists():
                continue  # the same image in two splits
            place_image(sample.path, out / "JPEGImages" / name)
            objects = sample.objects or []
            dropped += sum(1 for o in objects if o.get("segmentation") or o.get("keypoints"))
            xml.write_text(_xml(name, data.sizes[sample.path], objects, classes))
    if list(data.splits) != ["all"]:
        (out / "ImageSets" / "Main").mkdir(parents=True)
        for split, samples in data.splits.items():
            ids = "".join(f"{Path(names[s.path]).stem}\n" for s in samples)
            (out / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in data.classes))
    if dropped:
        log.info("%s: VOC holds boxes only; left out the masks/keypoints of %d object(s)", out, dropped)
    return out
