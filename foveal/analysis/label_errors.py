"""``find_label_errors``: images whose labels look wrong, from out-of-fold predictions.

The out-of-fold predictions are a ``foveal cv`` ``oof.json`` (given, or made here by K-fold
cross-validation with the training options). Classification: confident learning
(``foveal.analysis.confident``); detection, instance and pose: boxes that look missing, of the wrong class
or badly placed (``foveal.analysis.object_issues``); segmentation: per-image softmin label quality and
its low-confidence regions (``foveal.analysis.mask_issues``) from per-pixel probabilities that the fold
checkpoints beside ``oof.json`` recompute (its rows carry no pixel probabilities).

Writes into a new run folder (default ``runs/<task>/label-errors``): ``label_errors.json`` and ``.csv``,
``review.html``, and ``clean.json``, a split manifest of the dataset without the flagged images that
``foveal train --data`` reads. Labels cannot be replaced through a manifest (it only selects files),
so suggested labels are in the JSON and CSV, not applied.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foveal.analysis import confident
from foveal.analysis.mask_issues import low_regions, self_confidence, softmin_quality
from foveal.analysis.object_issues import box_issues, image_score
from foveal.atomic import atomic_write_text
from foveal.data.index import DatasetIndex, Entry, index_dataset
from foveal.errors import ConfigError, DataError
from foveal.serialize import dumps

log = logging.getLogger("foveal")

LOW_PIXEL = 0.5  # segmentation: a pixel whose given class has a lower probability is suspicious
MIN_REGION = 0.005  # ... and a region of such pixels is an issue from this fraction of the image


@dataclass
class LabelErrorsResult:
    """``out``: the folder written; ``issues``: one row per flagged image, worst first; ``noise``: the
    estimated noise rate per (given, true) class pair (classification); ``n_images``: images judged."""

    out: Path
    task: str
    n_images: int
    issues: list[dict[str, Any]]
    noise: list[dict[str, Any]]
    oof: Path
    clean: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "task": self.task,
            "n_images": self.n_images,
            "n_flagged": len(self.issues),
            "issues": self.issues,
            "noise": self.noise,
            "oof": str(self.oof),
            "clean": str(self.clean),
        }


def _key(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def read_oof(oof: str | Path) -> list[dict[str, Any]]:
    """The rows of an ``oof.json``; DataError naming the file when it is not one."""
    path = Path(oof).expanduser()
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"{path}: not a readable oof.json ({err}); pass the oof.json that foveal cv wrote"
        ) from err
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "path" in r for r in rows):
        raise DataError(f"{path}: not an oof.json (a list of rows with 'path'); pass the one foveal cv wrote")
    return rows


def _match(oof: Path, rows: list[dict[str, Any]], index: DatasetIndex, data: str) -> list[tuple[Entry, dict]]:
    """(entry, row) per row; DataError when rows name images the dataset lacks."""
    by_path = {_key(e.path): e for e in index.entries}
    missing = [r["path"] for r in rows if _key(r["path"]) not in by_path]
    if missing:
        raise DataError(
            f"{oof}: {len(missing)} of its {len(rows)} images are not in the dataset {data} (e.g. "
            f"{missing[0]}); pass the oof.json of a cross-validation of this dataset, or leave out --oof"
        )
    return [(by_path[_key(r["path"])], r) for r in rows]


def _kind_error(oof: Path, task: str, key: str) -> DataError:
    return DataError(
        f"{oof}: its rows have no '{key}', so they are not {task} predictions; pass the oof.json of a "
        f"foveal cv of this {task} dataset, or leave out --oof"
    )


def _classes_error(oof: Path, found: list[str], index: DatasetIndex) -> DataError:
    return DataError(
        f"{oof}: predicts the classes {sorted(found)}, the dataset has {index.class_names}; pass the "
        "oof.json of a cross-validation of this dataset, or leave out --oof"
    )


# -- classification --------------------------------------------------------------------------------
def _probabilities(oof: Path, pairs: list[tuple[Entry, dict]], index: DatasetIndex) -> np.ndarray:
    """(N, C) OOF probabilities in the dataset's class order."""
    if not all(isinstance(r.get("probs"), dict) for _, r in pairs):
        raise _kind_error(oof, "classify", "probs")
    for _, row in pairs:
        if set(row["probs"]) != set(index.class_names):
            raise _classes_error(oof, list(row["probs"]), index)
    return np.array([[r["probs"][c] for c in index.class_names] for _, r in pairs], dtype=np.float64)


def _check_targets(oof: Path, pairs: list[tuple[Entry, dict]], index: DatasetIndex) -> None:
    """DataError when the rows' targets disagree with the dataset's labels (other labels or kind)."""
    for entry, row in pairs:
        target = row.get("target")
        given = list(entry.classes) if index.kind == "multilabel" else entry.classes[0]
        if isinstance(target, list) and index.kind == "multilabel":
            target = sorted(target)
        if target is not None and target != given:
            raise DataError(
                f"{oof}: {entry.path} has the target {target!r} there and {given!r} in the dataset; the "
                "labels changed since the cross-validation: leave out --oof to cross-validate again"
            )


def _single_label(
    pairs: list[tuple[Entry, dict]], probs: np.ndarray, index: DatasetIndex, rank: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = index.class_names
    labels = np.array([names.index(e.classes[0]) for e, _ in pairs])
    found = confident.find_issues(labels, probs, rank)
    issues = [
        {
            "path": e.path,
            "fold": r.get("fold"),
            "given": names[labels[i]],
            "suggested": names[found.suggested[i]],
            "score": round(1.0 - float(found.quality[i]), 6),
            "given_probability": round(float(probs[i, labels[i]]), 6),
            "suggested_probability": round(float(probs[i, found.suggested[i]]), 6),
        }
        for i, (e, r) in enumerate(pairs)
        if found.issues[i]
    ]
    counts = np.rint(found.joint * len(labels)).astype(int)
    noise = [
        {
            "given": names[i],
            "true": names[j],
            "rate": round(float(found.noise[i, j]), 6),
            "count": int(counts[i, j]),
        }
        for i in range(len(names))
        for j in range(len(names))
        if i != j and found.noise[i, j] > 0
    ]
    return issues, sorted(noise, key=lambda n: -n["rate"])


def _multilabel(
    pairs: list[tuple[Entry, dict]], probs: np.ndarray, index: DatasetIndex, rank: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = index.class_names
    labels = np.array([[int(n in e.classes) for n in names] for e, _ in pairs])
    per_label = confident.find_multilabel_issues(labels, probs, rank)
    flagged = np.stack([f.issues for f in per_label], axis=1)  # (N, C)
    quality = np.stack([f.quality for f in per_label], axis=1)
    issues = []
    for i, (entry, row) in enumerate(pairs):
        if not flagged[i].any():
            continue
        suggested = labels[i] ^ flagged[i]
        issues.append(
            {
                "path": entry.path,
                "fold": row.get("fold"),
                "given": list(entry.classes),
                "suggested": [n for n, on in zip(names, suggested) if on],
                "labels": [n for n, on in zip(names, flagged[i]) if on],
                "score": round(1.0 - float(quality[i].min()), 6),
            }
        )
    state = ("absent", "present")
    noise = [
        {
            "label": names[c],
            "given": state[g],
            "true": state[1 - g],
            "rate": round(float(f.noise[g, 1 - g]), 6),
            "count": int(round(f.joint[g, 1 - g] * len(labels))),
        }
        for c, f in enumerate(per_label)
        for g in (0, 1)
        if f.noise[g, 1 - g] > 0
    ]
    return issues, sorted(noise, key=lambda n: -n["rate"])


def _classify(
    oof: Path, pairs: list[tuple[Entry, dict]], index: DatasetIndex, rank: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    probs = _probabilities(oof, pairs, index)
    _check_targets(oof, pairs, index)
    if index.kind == "multilabel":
        return _multilabel(pairs, probs, index, rank)
    return _single_label(pairs, probs, index, rank)


# -- detection -------------------------------------------------------------------------------------
def _ground_truth(entry: Entry, index: DatasetIndex) -> tuple[np.ndarray, list[str]]:
    """(G, 4) xyxy boxes and class names of an image's (non-crowd) objects."""
    names = {c["id"]: str(c["name"]) for c in index.categories or []}
    objects = [o for o in entry.sample.objects or [] if not o.get("iscrowd")]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (o["bbox"] for o in objects)], dtype=np.float64)
    return boxes.reshape(-1, 4), [names.get(o.get("category_id"), "?") for o in objects]


def _objects(
    oof: Path, pairs: list[tuple[Entry, dict]], index: DatasetIndex, conf: float
) -> list[dict[str, Any]]:
    if not all(isinstance(r.get("boxes"), list) for _, r in pairs):
        raise _kind_error(oof, "detection", "boxes")
    predicted = {label for _, r in pairs for label in r.get("labels", [])}
    if not predicted <= set(index.class_names):
        raise _classes_error(oof, sorted(predicted), index)
    issues = []
    for entry, row in pairs:
        gt_boxes, gt_labels = _ground_truth(entry, index)
        found = box_issues(
            gt_boxes, gt_labels, np.array(row["boxes"]), np.array(row["scores"]), row["labels"], conf
        )
        if found:
            issues.append(
                {
                    "path": entry.path,
                    "fold": row.get("fold"),
                    "score": round(image_score(found), 6),
                    "given": gt_labels,
                    "issues": [i.to_dict() for i in found],
                }
            )
    return issues


# -- segmentation ----------------------------------------------------------------------------------
def _pixel_probabilities(
    oof: Path, pairs: list[tuple[Entry, dict]]
) -> Iterator[tuple[Entry, dict, np.ndarray, np.ndarray]]:
    """(entry, row, (H, W, K) probabilities, (H, W) given classes) at the model's size, each image from
    the fold checkpoint that did not train on it (``fold_k/checkpoints/best.ckpt`` beside ``oof.json``)."""
    import torch

    from foveal.engine.checkpoint import load
    from foveal.engine.loaders import make_loader

    folds = sorted({r.get("fold") for _, r in pairs}, key=str)
    for k in folds:
        ckpt = oof.parent / f"fold_{k}" / "checkpoints" / "best.ckpt"
        if not ckpt.is_file():
            raise DataError(
                f"{oof}: segmentation needs the fold checkpoints beside it, and {ckpt} is missing; pass "
                "the oof.json inside a foveal cv folder, or leave out --oof"
            )
        loaded = load(ckpt)
        part = [(e, r) for e, r in pairs if r.get("fold") == k]
        done = 0
        with torch.no_grad():
            for images, targets in make_loader(loaded.task, [e.sample for e, _ in part], "val", 16, 0):
                outputs = loaded.task.forward(loaded.model, images)
                probs = loaded.task.class_logits(outputs).softmax(-1).numpy()
                for p, t in zip(probs, targets.numpy()):
                    yield part[done][0], part[done][1], p, t
                    done += 1


def _masks(oof: Path, pairs: list[tuple[Entry, dict]], index: DatasetIndex) -> list[dict[str, Any]]:
    from PIL import Image

    if not all(isinstance(r.get("areas"), dict) for _, r in pairs):
        raise _kind_error(oof, "segmentation", "areas")
    for _, row in pairs:
        if set(row["areas"]) != set(index.class_names):
            raise _classes_error(oof, list(row["areas"]), index)
    names, ignore = index.class_names, index.spec.ignore_index
    scored = []
    for entry, row, probs, given in _pixel_probabilities(oof, pairs):
        with Image.open(entry.path) as image:
            width, height = image.size
        sx, sy = width / given.shape[1], height / given.shape[0]
        quality = softmin_quality(self_confidence(probs, given, ignore))
        min_area = max(4, int(MIN_REGION * given.size))
        regions = [
            {
                **r.to_dict(),
                "given": names[r.given],
                "suggested": names[r.suggested],
                "area": round(r.area * sx * sy),
                "bbox": [
                    round(r.bbox[0] * sx),
                    round(r.bbox[1] * sy),
                    round(r.bbox[2] * sx),
                    round(r.bbox[3] * sy),
                ],
            }
            for r in low_regions(probs, given, ignore, LOW_PIXEL, min_area)
        ]
        if regions:
            scored.append(
                {
                    "path": entry.path,
                    "fold": row.get("fold"),
                    "score": round(1.0 - quality, 6),
                    "quality": round(quality, 6),
                    "regions": regions,
                }
            )
    return scored


# -- outputs ---------------------------------------------------------------------------------------
def _source(data: str, index: DatasetIndex) -> tuple[Path, str]:
    """The dataset a manifest of it points at, and its format (a manifest's own source for a manifest)."""
    from foveal.data.manifest import is_manifest, read_manifest

    if is_manifest(data):
        manifest = read_manifest(data)
        return manifest.source, manifest.fmt
    return Path(data).expanduser().resolve(), index.fmt


def write_clean(out: Path, data: str, index: DatasetIndex, flagged: set[str]) -> Path:
    """``out``: a split manifest of ``data`` without the ``flagged`` paths, splits as on disk ('all', a
    layout without splits, becomes 'train': training draws its validation split)."""
    from foveal.data.manifest import write_manifest

    source, fmt = _source(data, index)
    splits: dict[str, list[str]] = {}
    for entry in index.entries:
        if _key(entry.path) not in flagged:
            splits.setdefault("train" if entry.split == "all" else entry.split, []).append(entry.path)
    return write_manifest(out, index.task, source, fmt, splits, excluded=len(flagged))


def _csv(task: str, issues: list[dict[str, Any]]) -> str:
    """One row per flagged image (classification, segmentation regions) or per suspicious box."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if task == "detect":
        writer.writerow(["path", "fold", "image_score", "kind", "given", "suggested", "score", "iou", "box"])
        for row in issues:
            for i in row["issues"]:
                writer.writerow(
                    [
                        row["path"],
                        row["fold"],
                        row["score"],
                        i["kind"],
                        i["given"] or "",
                        i["suggested"],
                        i["score"],
                        round(i["iou"], 4),
                        ";".join(str(v) for v in i["box"]),
                    ]
                )
    elif task == "segment":
        writer.writerow(
            ["path", "fold", "score", "quality", "regions", "worst_region_bbox", "worst_region_given"]
        )
        for row in issues:
            worst = row["regions"][0]
            writer.writerow(
                [
                    row["path"],
                    row["fold"],
                    row["score"],
                    row["quality"],
                    len(row["regions"]),
                    ";".join(str(v) for v in worst["bbox"]),
                    worst["given"],
                ]
            )
    else:
        writer.writerow(["path", "fold", "given", "suggested", "score"])
        for row in issues:
            given, suggested = (
                ";".join(v) if isinstance(v, list) else v for v in (row["given"], row["suggested"])
            )
            writer.writerow([row["path"], row["fold"], given, suggested, row["score"]])
    return buffer.getvalue()


def find_label_errors(
    data: str | None = None,
    oof: str | Path | None = None,
    *,
    folds: int = 5,
    task: str = "auto",
    fmt: str = "auto",
    rank: str = "self_confidence",
    conf: float = 0.5,
    out: str | Path | None = None,
    project: str | None = None,
    name: str | None = None,
    **options: Any,
) -> LabelErrorsResult:
    """Flag the images of ``data`` whose labels look wrong, from the out-of-fold predictions ``oof``
    (a ``foveal cv`` oof.json) or, without it, from a ``folds``-fold cross-validation run here with the
    training ``options`` (in ``OUT/cv``). ``rank``: self_confidence | normalized_margin (classification);
    ``conf``: the score from which a detection counts as confident. Writes label_errors.json/.csv,
    review.html and clean.json into ``out`` (default a new run folder ``runs/<task>/label-errors``).
    """
    from foveal.data.kinds import get_kind
    from foveal.engine.rundir import check_out, output_dir
    from foveal.report.label_review import review_page

    if data is None:
        raise ConfigError("no data given; pass --data PATH (a dataset folder, CSV, COCO file or manifest)")
    if rank not in confident.RANKINGS:
        raise ConfigError(f"--rank {rank}: choose one of {', '.join(confident.RANKINGS)}")
    check_out(out, project, name)
    index = index_dataset(data, _dataset_kind(task), fmt)
    if index.task not in ("classify", "detect", "segment"):
        title = get_kind(index.task).title
        raise ConfigError(
            f"{data}: label-errors works on classification, detection and segmentation, not {title}"
        )
    train_task = index.task if task == "auto" else task
    folder = None
    if oof is None:
        from foveal.analysis.cv import cross_validate

        folder = output_dir(out, train_task, "label-errors", project, name)
        oof = cross_validate(
            data, folds, task=train_task, project=str(folder), name="cv", format=fmt, **options
        ).oof
    oof = Path(oof).expanduser()
    pairs = _match(oof, read_oof(oof), index, data)
    noise: list[dict[str, Any]] = []
    if index.task == "classify":
        issues, noise = _classify(oof, pairs, index, rank)
    elif index.task == "detect":
        issues = _objects(oof, pairs, index, conf)
    else:
        issues = _masks(oof, pairs, index)
    issues.sort(key=lambda r: -r["score"])
    folder = folder or output_dir(out, train_task, "label-errors", project, name)
    doc = {
        "task": index.task,
        "kind": index.kind,
        "data": str(data),
        "oof": str(oof),
        "rank": rank,
        "n_images": len(pairs),
        "n_flagged": len(issues),
        "noise": noise,
        "issues": issues,
    }
    table, page = _csv(index.task, issues), review_page(index, doc)  # all made before any is written
    atomic_write_text(folder / "label_errors.json", dumps(doc, indent=1))
    atomic_write_text(folder / "label_errors.csv", table)
    atomic_write_text(folder / "review.html", page)
    clean = write_clean(folder / "clean.json", data, index, {_key(r["path"]) for r in issues})
    log.info("label errors: %d of %d images flagged, written to %s", len(issues), len(pairs), folder)
    return LabelErrorsResult(folder, index.task, len(pairs), issues, noise, oof, clean)


def _dataset_kind(task: str) -> str:
    """The dataset kind a training task reads ('auto' stays 'auto')."""
    if task == "auto":
        return task
    from foveal.tasks import get_task

    return get_task(task).dataset_kind
