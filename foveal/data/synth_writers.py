"""Write the synthetic "shapes" data to disk in one of the dataset formats foveal reads.

Layouts (``i`` is the scene index, six digits; images are RGB PNGs):

- imagefolder: ``{split}/<class>/<i>.png``, single-object scenes.
- csv: ``images/<i>.png`` and ``labels.csv`` (``path,labels``; ``;``-separated class names present).
- coco: ``images/{split}/<i>.png`` and ``annotations/instances_{split}.json`` (RLE masks, keypoints).
- yolo: ``images/{split}/<i>.png``, ``labels/{split}/<i>.txt`` (``cls cx cy w h`` in [0, 1]), ``data.yaml``.
- yolo-seg: as yolo, with polygon lines ``cls x1 y1 ... xn yn`` in [0, 1]: each object's mask outline
  (``foveal.data.formats.yolo.mask_polygons``, parts joined), whose bounds are within half a pixel of its box.
- yolo-pose: as yolo, each line followed by 4 keypoints ``px py v`` (``kpt_shape: [4, 3]``; classes with
  fewer vertices padded with ``0 0 0``), plus ``kpt_names`` and ``skeleton`` (0-based) per class.
- masks: ``{split}/images/<i>.png``, ``{split}/masks/<i>.png`` (mode "L" class map) and ``classes.txt``.
- regress: ``images/<i>.png`` and ``targets.csv`` (``path,split,size,count``): the regression targets of
  ``regression_targets`` (mean shape size in pixels, number of shapes).

The csv format holds every scene in one file (no split); the others split by seeded shuffle.
``scene="arrows"`` writes the orientation-sensitive arrows (``foveal.data.synthetic.generate_arrows``,
classes left/right/up/down) instead of the shapes, as imagefolder or masks.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from foveal.data.synthetic import (
    ARROW_CLASSES,
    CLASSES,
    KEYPOINT_NAMES,
    MAX_KEYPOINTS,
    SKELETONS,
    Scene,
    ShapeObject,
    generate,
    generate_arrows,
)
from foveal.errors import ConfigError, DataError, check_choice

FORMATS = ("imagefolder", "csv", "coco", "yolo", "yolo-seg", "yolo-pose", "masks", "regress")
SPLITS = ("train", "val", "test")
SCENES = {"shapes": CLASSES, "arrows": ARROW_CLASSES}
ARROW_FORMATS = ("imagefolder", "masks")


def _split_of(n: int, seed: int, splits: tuple[float, float, float]) -> list[str]:
    """The split name of each of ``n`` scenes: a seeded shuffle cut by the ``splits`` fractions."""
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise ConfigError(f"splits {tuple(splits)} must be 3 fractions >= 0 (train, val, test) summing to 1")
    ends = np.rint(np.cumsum(splits) * n).astype(int)
    ends[-1] = n
    order = np.random.default_rng([seed, 1]).permutation(n)
    names = [""] * n
    for rank, i in enumerate(order):
        names[i] = SPLITS[int(np.searchsorted(ends, rank, side="right"))]
    return names


def _prepare(out: str | Path) -> Path:
    """Create ``out``; raise DataError when it is a file or a non-empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder '{out}' is not empty; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save(image: np.ndarray, path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode=mode).save(path)


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of an (H, W) bool mask: column-major run lengths, zeros first."""
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _coco_annotation(obj: ShapeObject, ann_id: int, image_id: int) -> dict:
    x0, y0, x1, y1 = (float(v) for v in obj.box)
    kps = np.zeros((MAX_KEYPOINTS, 3), dtype=np.float32)
    kps[: len(obj.keypoints)] = obj.keypoints
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.cls + 1,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(np.count_nonzero(obj.mask)),
        "iscrowd": 0,
        "segmentation": rle_encode(obj.mask),
        "keypoints": [round(float(v), 2) for v in kps.ravel()],
        "num_keypoints": int(np.count_nonzero(kps[:, 2])),
    }


Items = Iterable[tuple[int, Scene, str]]  # (scene index, scene, split name)


def _write_imagefolder(
    out: Path, items: Items, active: list[str], classes: tuple[str, ...] = CLASSES
) -> None:
    for split in active:
        (out / split).mkdir()
    for i, scene, split in items:
        _save(scene.image, out / split / classes[scene.objects[0].cls] / f"{i:06d}.png")


def _write_masks(out: Path, items: Items, active: list[str], classes: tuple[str, ...] = CLASSES) -> None:
    for split in active:
        (out / split / "images").mkdir(parents=True)
        (out / split / "masks").mkdir()
    for i, scene, split in items:
        _save(scene.image, out / split / "images" / f"{i:06d}.png")
        _save(scene.semantic, out / split / "masks" / f"{i:06d}.png", mode="L")
    (out / "classes.txt").write_text("\n".join(("background", *classes)) + "\n")


def _write_coco(out: Path, items: Items, active: list[str]) -> None:
    # No ``flip_idx``: keypoints are vertices ordered clockwise from the topmost, and a horizontal flip
    # maps that order to no single fixed permutation (it depends on each shape's rotation), so any
    # flip_idx would be wrong for some objects.
    categories = [
        {
            "id": c + 1,
            "name": name,
            "supercategory": "shape",
            "keypoints": list(KEYPOINT_NAMES),
            "skeleton": [[a + 1, b + 1] for a, b in SKELETONS[c]],
        }
        for c, name in enumerate(CLASSES)
    ]
    docs = {s: {"images": [], "annotations": [], "categories": categories} for s in active}
    for split in active:
        (out / "images" / split).mkdir(parents=True)
    ann_id = 0
    for i, scene, split in items:
        h, w = scene.semantic.shape
        _save(scene.image, out / "images" / split / f"{i:06d}.png")
        docs[split]["images"].append({"id": i + 1, "file_name": f"{i:06d}.png", "width": w, "height": h})
        for obj in scene.objects:
            ann_id += 1
            docs[split]["annotations"].append(_coco_annotation(obj, ann_id, i + 1))
    (out / "annotations").mkdir()
    for split, doc in docs.items():
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


def _box_line(obj: ShapeObject, h: int, w: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in obj.box)
    cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
    return f"{obj.cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


def _polygon_line(obj: ShapeObject, h: int, w: int) -> str:
    from foveal.data.formats.yolo import join_polygons, mask_polygons

    xy = join_polygons(mask_polygons(obj.mask)) / (w, h)
    return f"{obj.cls} " + " ".join(f"{v:.6f}" for v in np.clip(xy, 0.0, 1.0).ravel())


def _pose_line(obj: ShapeObject, h: int, w: int) -> str:
    kps = np.zeros((MAX_KEYPOINTS, 3), dtype=np.float64)
    kps[: len(obj.keypoints)] = obj.keypoints
    points = " ".join(f"{x / w:.6f} {y / h:.6f} {int(v)}" for x, y, v in kps)
    return f"{_box_line(obj, h, w)} {points}"


YOLO_LABELS = {"boxes": _box_line, "polygons": _polygon_line, "pose": _pose_line}
"""YOLO's label-line variants: yolo (boxes), yolo-seg (polygons), yolo-pose (boxes + keypoints)."""


def _write_yolo(out: Path, items: Items, active: list[str], labels: str = "boxes") -> None:
    line = YOLO_LABELS[labels]
    for split in active:
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
    for i, scene, split in items:
        h, w = scene.semantic.shape
        _save(scene.image, out / "images" / split / f"{i:06d}.png")
        lines = [line(obj, h, w) + "\n" for obj in scene.objects]
        (out / "labels" / split / f"{i:06d}.txt").write_text("".join(lines))
    data: dict = {"path": str(out.resolve())}
    data.update({s: f"images/{s}" for s in active})
    data["names"] = dict(enumerate(CLASSES))
    if labels == "pose":  # no flip_idx: see _write_coco
        data["kpt_shape"] = [MAX_KEYPOINTS, 3]
        data["kpt_names"] = {c: list(KEYPOINT_NAMES) for c in range(len(CLASSES))}
        data["skeleton"] = {c: [list(edge) for edge in edges] for c, edges in enumerate(SKELETONS) if edges}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _write_csv(out: Path, items: Items, active: list[str]) -> None:
    (out / "images").mkdir()
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        for i, scene, _ in items:
            rel = f"images/{i:06d}.png"
            _save(scene.image, out / rel)
            present = sorted({obj.cls for obj in scene.objects})
            writer.writerow([rel, ";".join(CLASSES[c] for c in present)])


REGRESSION_TARGETS = ("size", "count")


def regression_targets(scene: Scene) -> dict[str, float]:
    """A scene's regression targets, from the generator's known objects.

    ``size``: the mean over its shapes of the larger side (width or height) of each shape's tight box
    around its visible pixels, in pixels (2 decimals); ``count``: the number of shapes drawn.
    """
    sides = [float(max(o.box[2] - o.box[0], o.box[3] - o.box[1])) for o in scene.objects]
    return {"size": round(float(np.mean(sides)), 2) if sides else 0.0, "count": float(len(sides))}


def _write_regress(out: Path, items: Items, active: list[str]) -> None:
    (out / "images").mkdir()
    with open(out / "targets.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "split", *REGRESSION_TARGETS])
        for i, scene, split in items:
            rel = f"images/{i:06d}.png"
            _save(scene.image, out / rel)
            targets = regression_targets(scene)
            writer.writerow([rel, split, *(f"{targets[t]:g}" for t in REGRESSION_TARGETS)])


_WRITERS = {
    "imagefolder": _write_imagefolder,
    "csv": _write_csv,
    "coco": _write_coco,
    "yolo": _write_yolo,
    "yolo-seg": lambda out, items, active: _write_yolo(out, items, active, "polygons"),
    "yolo-pose": lambda out, items, active: _write_yolo(out, items, active, "pose"),
    "masks": _write_masks,
    "regress": _write_regress,
}


def _thin_minority(items: Items, keep_one_in: int) -> Items:
    """Keep every training scene of class 0 and one in ``keep_one_in`` of each other class's."""
    seen: Counter[int] = Counter()
    for i, scene, split in items:
        cls = scene.objects[0].cls
        if split == "train" and cls != 0:
            seen[cls] += 1
            if (seen[cls] - 1) % keep_one_in:
                continue
        yield i, scene, split


def write_synthetic(
    out: str | Path,
    n: int = 1000,
    imgsz: int = 64,
    seed: int = 0,
    fmt: str = "imagefolder",
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    max_objects: int = 4,
    imbalance: int = 1,
    scene: str = "shapes",
) -> Path:
    """Generate ``n`` shapes scenes and write them to the new or empty folder ``out`` as ``fmt``.
    ``fmt="video"``: an ``n``-frame video of ``max_objects`` moving shapes with known identities
    (``foveal.data.synth_video.write_synthetic_video``: video.mp4 and truth.json).

    imagefolder uses single-object scenes, the other formats 1..``max_objects`` objects per scene.
    Splits with fraction 0 are not written (csv ignores ``splits``). ``imbalance`` k > 1 (imagefolder
    only) keeps one in k training images of every class but the first, an imbalance of k:1 in 'train'
    (val and test stay balanced, so macro metrics show what the rare classes lost). ``scene``
    "arrows" writes arrows (classes left/right/up/down; imagefolder or masks). Returns ``out``.
    """
    if fmt == "video":
        from foveal.data.synth_video import write_synthetic_video

        return write_synthetic_video(out, frames=n, imgsz=imgsz, objects=max_objects, seed=seed)
    check_choice("synthetic data format", fmt, (*FORMATS, "video"))
    check_choice("synthetic scene", scene, tuple(SCENES))
    if scene == "arrows" and fmt not in ARROW_FORMATS:
        raise ConfigError(f"--scene arrows is written as {' or '.join(ARROW_FORMATS)}, not {fmt}")
    if not isinstance(imbalance, int) or imbalance < 1:
        raise ConfigError(f"--imbalance {imbalance!r}: must be a whole number >= 1 (e.g. 10 for 10:1)")
    if imbalance > 1 and fmt != "imagefolder":
        raise ConfigError(f"--imbalance needs --format imagefolder (single-label classes), not {fmt}")
    split_of = _split_of(n, seed, splits)
    active = [s for s, frac in zip(SPLITS, splits, strict=True) if frac > 0]
    if scene == "arrows":
        scenes = generate_arrows(n, imgsz, seed)
    else:
        scenes = generate(n, imgsz, seed, single_object=fmt == "imagefolder", max_objects=max_objects)
    out = _prepare(out)
    items = ((i, sc, split_of[i]) for i, sc in enumerate(scenes))
    items = _thin_minority(items, imbalance) if imbalance > 1 else items
    if scene == "arrows":
        _WRITERS[fmt](out, items, active, ARROW_CLASSES)
    else:
        _WRITERS[fmt](out, items, active)
    _write_readme(out, n, imgsz, seed, fmt, splits, max_objects, scene)
    return out


def _write_readme(
    out: Path,
    n: int,
    imgsz: int,
    seed: int,
    fmt: str,
    splits: tuple[float, float, float],
    max_objects: int,
    scene: str = "shapes",
) -> None:
    single = fmt == "imagefolder" or scene == "arrows"
    objects = "one object per image" if single else f"1 to {max_objects} objects per image"
    split_text = "no split (one labels.csv)" if fmt == "csv" else f"train/val/test fractions {tuple(splits)}"
    columns = (
        "targets.csv columns: path (the image, relative to this folder), split (train/val/test),\n"
        "size (the mean over the image's shapes of the larger side of each shape's tight box around\n"
        f"its visible pixels, in pixels) and count (the number of shapes, 1 to {max_objects}).\n"
        if fmt == "regress"
        else ""
    )
    rotation = "the direction it points +-15 degrees" if scene == "arrows" else "rotation"
    (out / "README.txt").write_text(
        f"Synthetic '{scene}' dataset generated by foveal (foveal.data.synthetic).\n"
        f"Classes: {', '.join(SCENES[scene])}. {n} RGB images of {imgsz}x{imgsz} pixels, {objects},\n"
        f"drawn on textured backgrounds with random colour, size, position and {rotation}.\n"
        f"Format: {fmt}; {split_text}; seed {seed}.\n"
        f"{columns}"
        "Regenerate with: foveal.data.synth_writers.write_synthetic("
        f"out, n={n}, imgsz={imgsz}, seed={seed}, fmt={fmt!r}, splits={tuple(splits)}, "
        f"max_objects={max_objects}, scene={scene!r})\n"
    )
