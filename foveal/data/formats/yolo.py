"""YOLO (Ultralytics) detection datasets: ``data.yaml`` + ``images/`` + ``labels/``.

``data.yaml`` keys: ``path`` (dataset root; relative to the yaml file, which is also the fallback when
it is absent or does not exist), ``train``/``val``/``test`` (an image folder, a .txt list of image
paths, or a list of those), ``names`` (a list, or a dict {class index: name}), optional ``kpt_shape``
[K, 3 or 2] and ``flip_idx`` (pose). foveal also reads and writes ``kpt_names`` and ``skeleton``
(0-based index pairs), each a list for every class or a dict {class index: list}.

An image's labels are in the .txt named like it, under the path with its last ``images`` component
replaced by ``labels``; a missing label file is an image without objects. One object per line, all
values normalised by the image width and height:

- detect: ``cls cx cy w h``;
- segment: ``cls x1 y1 x2 y2 ... xn yn`` (a polygon; its bounds give the box);
- pose (``kpt_shape`` set): ``cls cx cy w h`` + K keypoints ``px py [v]``.

Category ids are class index + 1. Crowd objects (``iscrowd`` 1, e.g. VOC's difficult) have no YOLO
form: ``write_yolo`` leaves them out with a warning.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from foveal.data.formats.coco import object_mask
from foveal.data.formats.common import (
    Checks,
    DetectionData,
    normalise_categories,
    place_image,
    prepare_output,
    unique_names,
)
from foveal.data.imageio import is_image_file
from foveal.data.sample import Sample
from foveal.errors import DataError, check_choice

log = logging.getLogger("foveal")

SPLITS = ("train", "val", "test")
YAML_NAMES = ("data.yaml", "data.yml")
NORM_TOLERANCE = 0.01  # normalised values may reach this far outside [0, 1] (then boxes are clipped)
MODES = ("auto", "detect", "segment", "pose")


def find_data_yaml(root: Path) -> Path | None:
    """``root/data.yaml`` (or ``.yml``), else the only ``*.yaml`` in ``root`` that has ``names``; or None."""
    for name in YAML_NAMES:
        if (root / name).is_file():
            return root / name
    candidates = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    with_names = []
    for path in candidates:
        try:
            doc = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and "names" in doc:
            with_names.append(path)
    return with_names[0] if len(with_names) == 1 else None


def label_path(image: str | Path) -> Path:
    """The label .txt of an image: the last ``images`` path component replaced by ``labels``."""
    parts = list(Path(image).with_suffix(".txt").parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts)


# ---- polygons ----


def polygon_area(xy: np.ndarray) -> float:
    """Area of a (N, 2) polygon (shoelace formula)."""
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2)


def mask_polygons(mask: np.ndarray, tolerance: float = 0.5) -> list[np.ndarray]:
    """Outer outlines of an (H, W) bool mask as (N, 2) float xy polygons in pixel-edge coordinates.

    Traced with ``skimage.measure.find_contours`` at level 0.5 (so a polygon's bounds are the tight box of
    its pixels) and simplified by ``tolerance`` pixels; holes are left out (polygons cannot hold them).
    """
    from skimage.measure import approximate_polygon, find_contours

    polygons = []
    for contour in find_contours(np.pad(mask.astype(np.uint8), 1), 0.5):
        xy = contour[:, ::-1] - 0.5  # padded index -> pixel-edge coordinates (pixel i spans i..i+1)
        x, y = xy[:, 0], xy[:, 1]
        if np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y) <= 0:
            continue  # a hole (negative orientation, y down) or degenerate
        simple = approximate_polygon(xy, tolerance) if tolerance > 0 else xy
        xy = simple if len(simple) >= 4 else xy  # keep small parts (e.g. one pixel) as traced
        if len(xy) > 1 and np.allclose(xy[0], xy[-1]):
            xy = xy[:-1]
        if len(xy) >= 3:
            polygons.append(xy)
    return polygons


def join_polygons(polygons: list[Any]) -> np.ndarray:
    """One (N, 2) polygon visiting every part: each next part is joined at its closest point pair by
    a zero-width bridge (there and back), so the bounds and filled area stay those of the parts."""
    parts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    parts = [p for p in parts if len(p) >= 3]
    if not parts:
        return np.zeros((0, 2))
    path = parts[0]
    for part in parts[1:]:
        dist = ((path[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
        ring = np.roll(part, -int(j), axis=0)
        path = np.concatenate([path[: i + 1], ring, ring[:1], path[i:]])
    return path


# ---- reading ----


def _names(doc: dict[str, Any], where: Path) -> list[str]:
    names = doc.get("names")
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise DataError(
                f"{where}: names keys {sorted(names, key=str)} are not the class indices "
                f"0..{len(names) - 1}; "
                "number the classes from 0 without gaps"
            )
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{where}: 'names' is {names!r}; give a list of class names (or {{index: name}})")
    if "nc" in doc and doc["nc"] != len(names):
        raise DataError(f"{where}: nc {doc['nc']!r} but {len(names)} names; make them agree")
    return [str(n) for n in names]


def _per_class(value: Any, n: int, key: str, where: Path) -> list[Any]:
    """A per-class list from a list for all classes (list of lists for skeleton) or a {index: value} dict."""
    if value is None:
        return [None] * n
    if isinstance(value, dict):
        if not all(isinstance(k, int) and 0 <= k < n for k in value):
            raise DataError(f"{where}: '{key}' keys {list(value)} are not class indices 0..{n - 1}; fix them")
        return [value.get(i) for i in range(n)]
    if isinstance(value, list):
        return [value] * n
    raise DataError(f"{where}: '{key}' is {value!r}; give a list, or a dict {{class index: list}}")


def _categories(doc: dict[str, Any], where: Path) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    names = _names(doc, where)
    shape = doc.get("kpt_shape")
    categories: list[dict[str, Any]] = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    if shape is None:
        return categories, None
    if not (isinstance(shape, list) and len(shape) == 2 and shape[1] in (2, 3) and isinstance(shape[0], int)):
        raise DataError(f"{where}: kpt_shape {shape!r} is not [K, 2] or [K, 3]; fix it")
    k = shape[0]
    kpt_names = _per_class(doc.get("kpt_names"), len(names), "kpt_names", where)
    skeletons = _per_class(doc.get("skeleton"), len(names), "skeleton", where)
    for category, kp_names, skeleton in zip(categories, kpt_names, skeletons):
        kp_names = kp_names if kp_names is not None else [f"kpt_{i + 1}" for i in range(k)]
        if len(kp_names) != k:
            raise DataError(f"{where}: kpt_names {kp_names!r} do not name K={k} keypoints; give {k} names")
        category["keypoints"] = [str(n) for n in kp_names]
        try:
            category["skeleton"] = [[int(a) + 1, int(b) + 1] for a, b in skeleton or []]
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: skeleton {skeleton!r} is not a list of index pairs; fix it") from err
        if doc.get("flip_idx") is not None:
            category["flip_idx"] = doc["flip_idx"]
    return normalise_categories(categories, where), (k, shape[1])


def _image_list(base: Path, source: Any, key: str, where: Path) -> list[Path]:
    path = Path(str(source)).expanduser()
    path = path if path.is_absolute() else base / path
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
    if path.is_file() and path.suffix.lower() == ".txt":
        images = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            image = Path(line).expanduser()
            if not image.is_absolute():
                options = [path.parent / image, base / image]
                image = next((p for p in options if p.is_file()), options[0])
            images.append(image)
        return images
    raise DataError(
        f"{where}: {key} '{source}' is not an image folder or a .txt list of images ({path} not found); "
        "fix the path in data.yaml"
    )


def _bad_line(checks: Checks, where: str, message: str, kind: str = "malformed label line(s)") -> None:
    checks.bad(kind, f"{where}: {message}")


def _parse_line(
    fields: list[str],
    where: str,
    size: tuple[int, int],
    n_classes: int,
    kpt: tuple[int, int] | None,
    checks: Checks,
) -> dict[str, Any] | None:
    """One label line to a COCO-form object (pixels), or None after reporting a problem."""
    n = len(fields)
    if kpt is not None and n != 5 + kpt[0] * kpt[1]:
        _bad_line(
            checks,
            where,
            f"{n} fields; with kpt_shape {list(kpt)} a line is 'cls cx cy w h' and "
            f"{kpt[0]} keypoints of {kpt[1]} values ({5 + kpt[0] * kpt[1]} fields); fix the line",
        )
        return None
    if kpt is None and not (n == 5 or (n >= 7 and n % 2 == 1)):
        _bad_line(
            checks,
            where,
            f"{n} fields; a line is 'cls cx cy w h' (5 fields) or a polygon "
            "'cls x1 y1 ... xn yn' (3 or more points); fix the line",
        )
        return None
    try:
        values = [float(f) for f in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_float(f))
        _bad_line(checks, where, f"'{bad}' is not a number; fix the line")
        return None
    if not all(math.isfinite(v) for v in values) or not values[0].is_integer():
        _bad_line(checks, where, f"class index '{fields[0]}' is not an integer (or a value is not finite)")
        return None
    cls = int(values[0])
    if not 0 <= cls < n_classes:
        kind = "label line(s) with a class index out of range"
        _bad_line(
            checks,
            where,
            f"class index {cls} is not in 0..{n_classes - 1} (the names in data.yaml); "
            "fix the line or add the class to names",
            kind,
        )
        return None
    coords = values[1:]
    if kpt is not None and kpt[1] == 3:  # visibility values are not coordinates
        coords = values[1:5] + [v for i, v in enumerate(values[5:]) if i % 3 != 2]
    outside = next((v for v in coords if not -NORM_TOLERANCE <= v <= 1 + NORM_TOLERANCE), None)
    if outside is not None:
        kind = "label line(s) with values outside [0, 1]"
        _bad_line(
            checks,
            where,
            f"value {outside:g} is outside [0, 1]; YOLO coordinates are normalised "
            "(pixels divided by the image width or height)",
            kind,
        )
        return None
    height, width = size
    obj: dict[str, Any] = {"category_id": cls + 1, "iscrowd": 0}
    if kpt is None and n > 5:
        xy = np.asarray(values[1:], dtype=np.float64).reshape(-1, 2) * (width, height)
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        obj["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        obj["area"] = polygon_area(xy)
        obj["segmentation"] = [xy.ravel().tolist()]
        return obj
    cx, cy, w, h = values[1:5]
    obj["bbox"] = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
    obj["area"] = w * width * h * height
    if kpt is not None:
        kps = np.asarray(values[5:], dtype=np.float64).reshape(kpt[0], kpt[1])
        if kpt[1] == 2:
            kps = np.concatenate([kps, np.where((kps == 0).all(1, keepdims=True), 0.0, 2.0)], 1)
        flat: list[float] = []
        for x, y, v in kps:
            flat += [float(x * width), float(y * height), int(v) if float(v).is_integer() else float(v)]
        obj["keypoints"] = flat
        obj["num_keypoints"] = int(np.count_nonzero(kps[:, 2] > 0))
    return obj


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_labels(
    image: Path, size: tuple[int, int], n_classes: int, kpt: tuple[int, int] | None, checks: Checks
) -> list[dict[str, Any]]:
    path = label_path(image)
    if not path.is_file():
        return []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        checks.bad("malformed label line(s)", f"{path}: not a text file; write one object per line")
        return []
    objects = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        obj = _parse_line(fields, where, size, n_classes, kpt, checks)
        checked = None if obj is None else checks.object(obj, size, where)
        if checked is not None:
            objects.append(checked)
    return objects


def read_yolo(root: str | Path, checks: Checks | None = None) -> DetectionData:
    """Read a YOLO dataset (a folder with data.yaml, or the yaml file) into checked ``DetectionData``.

    Boxes, polygons and keypoints are converted to absolute pixels with each image's size (read from the
    image header); splits are the data.yaml keys train/val/test that are set.
    """
    root = Path(root)
    checks = checks or Checks(root)
    where = root if root.is_file() else find_data_yaml(root)
    if where is None:
        raise DataError(f"{root}: no data.yaml; a YOLO dataset needs data.yaml with train/val and names")
    try:
        doc = yaml.safe_load(where.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: not valid YAML ({' '.join(str(err).split())}); fix the file") from err
    if not isinstance(doc, dict):
        raise DataError(f"{where}: not a YOLO data.yaml (no keys); give train/val image folders and names")
    categories, kpt = _categories(doc, where)
    checks.set_categories(categories)
    base = where.parent
    if doc.get("path"):
        given = Path(str(doc["path"])).expanduser()
        given = given if given.is_absolute() else where.parent / given
        if given.is_dir():
            base = given
        else:
            log.debug("%s: path %s not found; using the yaml file's folder", where, given)
    splits: dict[str, list[Sample]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for key in SPLITS:
        sources = doc.get(key)
        if not sources:
            continue
        images = [
            p
            for s in (sources if isinstance(sources, list) else [sources])
            for p in _image_list(base, s, key, where)
        ]
        samples = []
        for image in images:
            size = checks.size(image)
            if size is None:
                continue
            samples.append(
                Sample(str(image), objects=_read_labels(image, size, len(categories), kpt, checks))
            )
            sizes[str(image)] = size
        splits[key] = samples
    if not splits:
        raise DataError(f"{where}: no train, val or test images listed; set e.g. 'train: images/train'")
    return checks.finish(splits, categories, sizes, "yolo")


# ---- writing ----


def _fmt(values: Any) -> str:
    return " ".join(f"{min(max(float(v), 0.0), 1.0):.6f}" for v in values)


def _object_polygon(obj: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    """(N, 2) pixel polygon of an object: its polygons joined, its RLE traced, or its box's corners."""
    seg = obj.get("segmentation")
    polygons: list[Any] = []
    if isinstance(seg, list):
        polygons = [p for p in seg if len(p) >= 6]
    elif isinstance(seg, dict):
        mask = object_mask(obj, *size)
        polygons = mask_polygons(mask) if mask is not None else []
    joined = join_polygons(polygons)
    if len(joined):
        return joined
    x, y, w, h = obj["bbox"]
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def _line(obj: dict[str, Any], cls: int, size: tuple[int, int], mode: str, k: int) -> str:
    height, width = size
    if mode == "segment":
        return f"{cls} {_fmt((_object_polygon(obj, size) / (width, height)).ravel())}"
    x, y, w, h = (float(v) for v in obj["bbox"])
    line = f"{cls} {_fmt(((x + w / 2) / width, (y + h / 2) / height, w / width, h / height))}"
    if mode == "pose":
        kps = np.zeros((k, 3))
        given = np.asarray(obj.get("keypoints") or [], dtype=np.float64).reshape(-1, 3)[:k]
        kps[: len(given)] = given
        for px, py, v in kps:
            vis = str(int(v)) if float(v).is_integer() else f"{v:.6f}"
            line += f" {_fmt((px / width, py / height))} {vis}"
    return line


def _yaml_splits(data: DetectionData) -> dict[str, str]:
    """Source split -> data.yaml key: train/val/test as they are, 'all' -> 'train' (when there is none)."""
    keys = {}
    for split in data.splits:
        key = "train" if split == "all" and "train" not in data.splits else split
        if key not in SPLITS:
            raise DataError(
                f"split '{split}' has no YOLO data.yaml key (train, val, test); rename or merge the split"
            )
        keys[split] = key
    return keys


def write_yolo(out: str | Path, data: DetectionData, mode: str = "auto") -> Path:
    """Write ``data`` as YOLO to the new or empty folder ``out``; returns ``out``.

    ``mode`` picks the label lines: 'pose' (boxes + K keypoints; K the most any category has), 'segment'
    (polygons: polygons of one object joined, RLE masks traced, objects without one get their box's
    corners) or 'detect'; 'auto' takes pose when categories have keypoints, else segment when any object
    has a segmentation, else detect. Values are written with 6 decimals (within 1e-3 px up to 640 px).
    Class index = position in ``data.categories``; a split 'all' becomes 'train'. In pose mode every class
    gets K keypoint names (``kpt_1`` ... where a category has fewer) and ``flip_idx`` is written when
    every category with keypoints has the same one.
    """
    check_choice("YOLO label kind", mode, MODES)
    k = max((len(c.get("keypoints") or []) for c in data.categories), default=0)
    objects = [obj for part in data.splits.values() for s in part for obj in s.objects or []]
    if mode == "auto":
        mode = "pose" if k else "segment" if any(o.get("segmentation") for o in objects) else "detect"
    if mode == "pose" and not k:
        raise DataError("no category has keypoints; write YOLO 'detect' or 'segment' labels instead")
    keys = _yaml_splits(data)
    out = prepare_output(out)
    index = {c["id"]: i for i, c in enumerate(data.categories)}
    crowd = 0
    for split, samples in data.splits.items():
        (out / "images" / keys[split]).mkdir(parents=True, exist_ok=True)
        (out / "labels" / keys[split]).mkdir(parents=True, exist_ok=True)
        names = unique_names([s.path for s in samples])
        for sample in samples:
            image = out / "images" / keys[split] / names[sample.path]
            place_image(sample.path, image)
            size = data.sizes[sample.path]
            lines = []
            for obj in sample.objects or []:
                if obj.get("iscrowd"):
                    crowd += 1
                    continue
                lines.append(_line(obj, index[obj["category_id"]], size, mode, k) + "\n")
            label_path(image).write_text("".join(lines))
    if crowd:
        log.warning(
            "%s: left out %d crowd (iscrowd 1 / VOC difficult) object(s): YOLO has no such flag", out, crowd
        )
    doc: dict[str, Any] = {"path": str(out.resolve())}
    doc.update({keys[split]: f"images/{keys[split]}" for split in data.splits})
    doc["names"] = dict(enumerate(data.classes))
    if mode == "pose":
        doc["kpt_shape"] = [k, 3]
        with_kps = [c for c in data.categories if c.get("keypoints")]
        flips = [c.get("flip_idx") for c in with_kps]
        if flips[0] is not None and all(f == flips[0] for f in flips) and len(flips[0]) == k:
            doc["flip_idx"] = list(flips[0])
        doc["kpt_names"] = {
            i: list(c.get("keypoints") or [])
            + [f"kpt_{j + 1}" for j in range(len(c.get("keypoints") or []), k)]
            for i, c in enumerate(data.categories)
        }
        skeletons = {
            i: [[int(a) - 1, int(b) - 1] for a, b in c["skeleton"]]
            for i, c in enumerate(data.categories)
            if c.get("skeleton")
        }
        if skeletons:
            doc["skeleton"] = skeletons
    (out / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
