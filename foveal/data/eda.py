"""Exploratory statistics of a dataset for the EDA report: ``eda_dataset(path) -> EdaReport``.

One pass over the images (``health.check_dataset_records`` with ``stats``: one read and one decode per
image) gives the ``data check`` findings and the image statistics together: sizes, file sizes, formats,
modes, exact channel mean/std of the RGB pixels in [0, 1] and, for segmentation, per-class mask pixel
counts. Detection statistics come from the reader's objects (COCO [x, y, w, h] absolute pixels).
Thumbnails of the per-class samples are made in the same pass; those of segmentation samples and of
the duplicate / leakage groups shown (a bounded few) are decoded afterwards.
"""

from __future__ import annotations

import base64
import io
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from foveal.data.health import CheckResult, ImageRecord, check_dataset_records
from foveal.data.index import DatasetIndex, Entry
from foveal.errors import DataError

THUMB = 64  # thumbnail side (px)
GROUPS_SHOWN = 20  # duplicate / leakage / conflict groups shown per kind
MEMBERS_SHOWN = 6  # images shown per group
GROUP_KINDS = ("leakage_exact", "leakage_near", "label_conflict", "duplicate_exact", "duplicate_near")
HEATMAP_BINS = 16
SMALL, MEDIUM = 32**2, 96**2  # COCO area ranges


@dataclass
class EdaReport:
    """Dataset statistics (JSON-able through ``to_dict``; thumbnails stay out of it).

    ``class_counts``: {class: {split: count}} in ``count_unit`` (images for classification, objects for
    detection, images containing the class for segmentation). ``imbalance_ratio``: largest / smallest
    class count over the classes with samples, all splits together (None with fewer than one class).
    Histograms are ``{"edges": [...], "counts": [...]}``. ``channel_mean`` / ``channel_std``: R, G, B
    over every pixel of every readable image in [0, 1] (usable as normalisation constants).
    ``samples``: {class: [paths]} shown in the grids; ``groups``: the duplicate / leakage / label
    conflict groups shown, each ``{"kind", "detail", "members": [{"path", "split", "label"}]}``.
    """

    path: str
    task: str
    fmt: str
    kind: str
    n_images: int
    n_unreadable: int
    class_names: list[str]
    splits: list[str]
    images_per_split: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    count_unit: str
    imbalance_ratio: float | None
    imbalance_by_split: dict[str, float | None]
    width: dict[str, Any]
    height: dict[str, Any]
    aspect: dict[str, Any]
    common_sizes: list[list[int]]
    channel_mean: list[float]
    channel_std: list[float]
    pixels: int
    file_size: dict[str, Any]
    total_bytes: int
    formats: dict[str, int]
    modes: dict[str, int]
    samples: dict[str, list[str]]
    detection: dict[str, Any] | None
    segmentation: dict[str, Any] | None
    check: dict[str, Any]
    groups: list[dict[str, Any]]
    seconds: float = 0.0
    thumbnails: dict[str, str] = field(default_factory=dict, repr=False)  # path -> data: URI
    out: str | None = None  # the HTML page written (``eda_dataset(out=...)``)

    @property
    def normalisation(self) -> str:
        """The mean/std as CLI options: ``--mean r,g,b --std r,g,b``."""
        mean = ",".join(f"{v:.4f}" for v in self.channel_mean)
        std = ",".join(f"{v:.4f}" for v in self.channel_std)
        return f"--mean {mean} --std {std}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("thumbnails")
        out["normalisation"] = self.normalisation
        return out


# ---- small helpers ----


def histogram(values: Any, bins: int = 30, log: bool = False) -> dict[str, Any]:
    """``{"edges", "counts", "min", "max", "mean", "median"}`` of ``values``; log-spaced bins with ``log``
    (values must be > 0). Integer-valued data with few distinct values gets one bin per value."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"edges": [], "counts": [], "min": None, "max": None, "mean": None, "median": None}
    lo, hi = float(v.min()), float(v.max())
    if log and lo > 0 and hi > lo:
        edges = np.geomspace(lo, hi, bins + 1)
    elif np.all(v == np.round(v)) and hi - lo < bins:
        edges = np.arange(lo - 0.5, hi + 1.0)
    else:
        edges = np.histogram_bin_edges(v, bins=bins)
    counts, edges = np.histogram(v, bins=edges)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "min": lo,
        "max": hi,
        "mean": float(v.mean()),
        "median": float(np.median(v)),
    }


def _ratio(counts: Any) -> float | None:
    present = [c for c in counts if c > 0]
    return max(present) / min(present) if present else None


def data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    """A small image as a ``data:`` URI (JPEG quality 85, or PNG)."""
    buf = io.BytesIO()
    image.save(buf, fmt, quality=85) if fmt == "JPEG" else image.save(buf, fmt)
    mime = "jpeg" if fmt == "JPEG" else "png"
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _thumbnail(path: str) -> Image.Image | None:
    from foveal.data.imageio import load_rgb

    try:
        image = load_rgb(path)
    except DataError:
        return None
    image.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    return image


def _draw_boxes(thumb: Image.Image, objects: list[dict[str, Any]], size: tuple[int, int]) -> Image.Image:
    """Draw COCO [x, y, w, h] boxes of an image of ``size`` (W, H) on its thumbnail."""
    thumb = thumb.copy()
    sx, sy = thumb.width / size[0], thumb.height / size[1]
    draw = ImageDraw.Draw(thumb)
    for obj in objects:
        x, y, w, h = obj["bbox"]
        draw.rectangle([x * sx, y * sy, (x + w) * sx - 1, (y + h) * sy - 1], outline=(255, 220, 0))
    return thumb


# ---- statistics ----


def _channel_stats(records: list[ImageRecord]) -> tuple[list[float], list[float], int]:
    """Exact mean / std per channel in [0, 1] from the integer sums (Python ints: no overflow)."""
    good = [r for r in records if r.channel_sum is not None]
    n = sum(r.pixels for r in good)
    if n == 0:
        return [0.0] * 3, [0.0] * 3, 0
    s = [sum(int(r.channel_sum[c]) for r in good) for c in range(3)]  # type: ignore[index]
    ss = [sum(int(r.channel_sumsq[c]) for r in good) for c in range(3)]  # type: ignore[index]
    mean = [s[c] / (255 * n) for c in range(3)]
    std = [math.sqrt(max(ss[c] * n - s[c] * s[c], 0)) / (255 * n) for c in range(3)]
    return mean, std, n


def _class_counts(
    index: DatasetIndex | None, records: list[ImageRecord]
) -> tuple[dict[str, dict[str, int]], str]:
    if index is None:
        return {}, "images"
    kind = index.dataset_kind
    counts: dict[str, Counter[str]] = {name: Counter() for name in index.class_names}
    if kind.has_masks:  # images whose mask contains the class
        for r in records:
            if r.mask_counts is not None:
                for c in np.flatnonzero(r.mask_counts):
                    counts[index.class_names[c]][r.split] += 1
        return {k: dict(v) for k, v in counts.items()}, kind.count_unit
    names = {c["id"]: c["name"] for c in index.categories or []}
    for e in index.entries:
        if kind.has_boxes:  # objects
            for obj in e.sample.objects or []:
                counts.setdefault(names.get(obj.get("category_id"), "?"), Counter())[e.split] += 1
        else:
            for name in e.classes:
                counts.setdefault(name, Counter())[e.split] += 1
    return {k: dict(v) for k, v in counts.items()}, kind.count_unit


def _detection(index: DatasetIndex, records: list[ImageRecord]) -> dict[str, Any]:
    """Objects per image, box sizes (pixels) and aspects, normalised centres, COCO area buckets."""
    per_image: Counter[int] = Counter()
    widths, heights, centres = [], [], []
    buckets = {"small": 0, "medium": 0, "large": 0}
    for entry, record in zip(index.entries, records, strict=True):
        objects = entry.sample.objects or []
        per_image[len(objects)] += 1
        for obj in objects:
            x, y, w, h = (float(v) for v in obj["bbox"])
            widths.append(w)
            heights.append(h)
            area = float(obj.get("area", w * h))
            buckets["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
            if record.size:
                centres.append(((x + w / 2) / record.size[0], (y + h / 2) / record.size[1]))
    xy = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    heat, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=HEATMAP_BINS, range=[[0, 1], [0, 1]])
    w, h = np.asarray(widths), np.asarray(heights)
    ok = (w > 0) & (h > 0)
    return {
        "n_objects": len(widths),
        "objects_per_image": {int(k): int(v) for k, v in sorted(per_image.items())},
        "box_width": histogram(w),
        "box_height": histogram(h),
        "box_aspect": histogram(w[ok] / h[ok], log=True),
        "centre_heatmap": heat.astype(int).tolist(),  # rows: y from top, columns: x from left
        "size_buckets": buckets,
    }


def _segmentation(index: DatasetIndex, records: list[ImageRecord]) -> dict[str, Any]:
    """Per class: labelled-pixel fraction and the fraction of images whose mask contains it."""
    names = index.class_names
    counts = [r.mask_counts for r in records if r.mask_counts is not None]
    pixels = np.sum(counts, axis=0) if counts else np.zeros(len(names), dtype=np.int64)
    images = np.sum([c > 0 for c in counts], axis=0) if counts else np.zeros(len(names), dtype=np.int64)
    labelled = int(pixels.sum())
    total = sum(r.size[0] * r.size[1] for r in records if r.mask_counts is not None and r.size)
    return {
        "images_with_masks": len(counts),
        "labelled_pixels": labelled,
        "ignored_pixels": total - labelled,
        "pixel_counts": {n: int(p) for n, p in zip(names, pixels, strict=True)},
        "pixel_fraction": {n: float(p) / labelled if labelled else 0.0 for n, p in zip(names, pixels)},
        "image_fraction": {n: float(i) / len(counts) if counts else 0.0 for n, i in zip(names, images)},
    }


# ---- samples and finding groups ----


def _pick_by_class(index: DatasetIndex, n: int, seed: int) -> dict[str, list[str]]:
    """Up to ``n`` seeded random image paths per class the index lists images for."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for e in index.entries:
        for name in e.classes:
            by_class[name].append(e.path)
    rng = random.Random(seed)
    order = [c for c in index.class_names if c in by_class] + sorted(set(by_class) - set(index.class_names))
    return {c: rng.sample(sorted(set(by_class[c])), min(n, len(set(by_class[c])))) for c in order}


def _pick_segment(index: DatasetIndex, records: list[ImageRecord], n: int, seed: int) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = defaultdict(list)
    for r in records:
        for c in np.flatnonzero(r.mask_counts) if r.mask_counts is not None else ():
            by_class[index.class_names[c]].append(r.path)
    rng = random.Random(seed)
    return {c: rng.sample(by_class[c], min(n, len(by_class[c]))) for c in index.class_names if by_class[c]}


def _groups(result: CheckResult, by_path: dict[str, ImageRecord]) -> list[dict[str, Any]]:
    from foveal.data.health import format_label

    groups = []
    for kind in GROUP_KINDS:
        for finding in [f for f in result.report.findings if f.kind == kind][:GROUPS_SHOWN]:
            members = []
            for path in finding.paths[:MEMBERS_SHOWN]:
                record = by_path.get(path)
                label = None if record is None or record.label is None else format_label(record.label)
                members.append({"path": path, "split": record.split if record else "?", "label": label})
            groups.append(
                {"kind": kind, "detail": finding.detail, "members": members, "size": len(finding.paths)}
            )
    return groups


def _thumbnails(
    samples: dict[str, list[str]],
    groups: list[dict[str, Any]],
    by_path: dict[str, ImageRecord],
    entries: dict[str, Entry],
    boxes: bool,
) -> dict[str, str]:
    """Data URIs of every image shown (with ``boxes``: objects drawn): previews where made, else decoded."""
    wanted = {p for paths in samples.values() for p in paths}
    wanted |= {m["path"] for g in groups for m in g["members"]}
    out = {}
    for path in sorted(wanted):
        record = by_path.get(path)
        thumb = record.preview if record is not None and record.preview is not None else _thumbnail(path)
        if thumb is None:
            continue
        entry = entries.get(path)
        if boxes and entry is not None and record is not None and record.size:
            thumb = _draw_boxes(thumb, entry.sample.objects or [], record.size)
        out[path] = data_uri(thumb)
    return out


# ---- entry point ----


def eda_dataset(
    path: str | Path,
    task: str = "auto",
    fmt: str = "auto",
    *,
    hamming: int = 6,
    samples_per_class: int = 8,
    progress: bool = False,
    seed: int = 0,
    workers: int = 2,
) -> EdaReport:
    """Statistics of the dataset at ``path`` (any layout ``data check`` reads; ``task``/``fmt`` as there).

    ``hamming``: near-duplicate dHash distance for the findings; ``samples_per_class``: thumbnails per
    class in the grids (seeded by ``seed``). ``foveal.report.eda_html.eda_dataset`` (``foveal.eda_dataset``)
    also writes it as an HTML page. DataError when the path is missing or holds no images.
    """
    start = time.perf_counter()
    if samples_per_class < 0:
        raise DataError(f"--samples-per-class {samples_per_class}: must be >= 0 (default 8)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such dataset file or folder; check the path")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"{root}: the folder is empty; point data eda at a dataset folder")
    picked: dict[str, list[str]] = {}

    def previews(index: DatasetIndex) -> set[str]:
        if not index.dataset_kind.has_masks:  # mask samples: from the pass's mask counts, after it
            picked.update(_pick_by_class(index, samples_per_class, seed))
        return {p for paths in picked.values() for p in paths}

    result = check_dataset_records(
        root, task, fmt, hamming, progress=progress, workers=workers, previews=previews, label="reading"
    )
    index, records = result.index, result.records
    ok = [r for r in records if not r.error and r.size is not None]
    if not ok:
        raise DataError(f"{root}: none of the {len(records)} image(s) could be read; run foveal data check")
    boxes, masks = (index.dataset_kind.has_boxes, index.dataset_kind.has_masks) if index else (False, False)
    if index is not None and masks:
        picked = _pick_segment(index, records, samples_per_class, seed)
    elif index is None:
        rng = random.Random(seed)
        picked = {"(all images)": rng.sample([r.path for r in ok], min(samples_per_class, len(ok)))}
    by_path = {r.path: r for r in records}
    entries = {e.path: e for e in index.entries} if index is not None else {}
    counts, unit = _class_counts(index, records)
    splits = [s for s in ("train", "val", "test", "all") if any(r.split == s for r in records)]
    splits += sorted({r.split for r in records} - set(splits))
    mean, std, pixels = _channel_stats(ok)
    sizes = Counter(r.size for r in ok)
    groups = _groups(result, by_path)
    the_task = index.task if index is not None else result.report.task
    report = EdaReport(
        path=str(root),
        task=the_task,
        fmt=index.fmt if index is not None else fmt,
        kind=index.kind if index is not None else the_task,
        n_images=len(records),
        n_unreadable=len(records) - len(ok),
        class_names=list(index.class_names) if index is not None else [],
        splits=splits,
        images_per_split={s: sum(r.split == s for r in records) for s in splits},
        class_counts=counts,
        count_unit=unit,
        imbalance_ratio=_ratio(sum(v.values()) for v in counts.values()),
        imbalance_by_split={s: _ratio(v.get(s, 0) for v in counts.values()) for s in splits},
        width=histogram([r.size[0] for r in ok]),  # type: ignore[index]
        height=histogram([r.size[1] for r in ok]),  # type: ignore[index]
        aspect=histogram([r.size[0] / r.size[1] for r in ok], log=True),  # type: ignore[index]
        common_sizes=[[w, h, n] for (w, h), n in sizes.most_common(10)],
        channel_mean=mean,
        channel_std=std,
        pixels=pixels,
        file_size=histogram([r.file_size for r in ok]),
        total_bytes=sum(r.file_size for r in ok),
        formats=dict(Counter(r.format or "?" for r in ok).most_common()),
        modes=dict(Counter(r.mode for r in ok).most_common()),
        samples=picked,
        detection=_detection(index, records) if index is not None and boxes else None,
        segmentation=_segmentation(index, records) if index is not None and masks else None,
        check=result.report.to_dict(),
        groups=groups,
    )
    report.thumbnails = _thumbnails(picked, groups, by_path, entries, boxes)
    report.seconds = time.perf_counter() - start
    return report
