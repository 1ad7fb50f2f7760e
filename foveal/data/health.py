"""Dataset health check without training: ``check_dataset(path) -> CheckReport``.

Reads the dataset with the task's reader (classification, segmentation, detection), decodes every
image once (PIL) to find unreadable images and unexpected modes, hashes it (SHA-1 of the bytes, 64-bit
dHash of the pixels), and reports label problems, exact / near duplicates, duplicates whose labels
disagree, and duplicates shared between splits (leakage).

``check_dataset_records`` runs the same check and also returns the per-image records; with ``stats`` the
same single decode also collects what the EDA report needs (file size, PIL format, exact per-channel
sums over the RGB pixels, a small preview for chosen images, per-class mask pixel counts).
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from foveal.data.hashing import dhash_thumb, near_pairs, sha1_bytes
from foveal.data.imageio import is_image_file, to_rgb
from foveal.data.index import SPLIT_NAMES, DatasetIndex, detect_task, index_dataset
from foveal.data.kinds import AUTO, resolve_task
from foveal.errors import DataError

# Report order: leakage first.
KINDS = (
    "leakage_exact",
    "leakage_near",
    "unreadable_image",
    "unexpected_mode",
    "label_problem",
    "mask_problem",
    "label_conflict",
    "duplicate_exact",
    "duplicate_near",
)
EXPECTED_MODES = ("RGB",)
# dHash pairs are confirmed by their 9x8 colour thumbnails: mean absolute difference (0..255, over R, G, B)
# at most this. Resized / JPEG re-encoded copies measure <= 1.5; distinct low-detail images that share a
# dHash (plain backgrounds, one shape, also the same shape in other colours) measure >= 8.
NEAR_MAD = 4.0


@dataclass
class Finding:
    """One problem: ``kind`` (one of KINDS), the files involved, a one-line detail, how many it counts."""

    kind: str
    paths: list[str]
    detail: str
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "paths": self.paths, "detail": self.detail, "count": self.count}


@dataclass
class CheckReport:
    """The result of ``check_dataset``: findings, counts per kind, images checked, modes seen."""

    path: str
    task: str
    n_images: int
    findings: list[Finding] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for f in self.findings:
            counts[f.kind] = counts.get(f.kind, 0) + f.count
        return counts

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "task": self.task,
            "clean": self.clean,
            "n_images": self.n_images,
            "counts": self.counts,
            "modes": self.modes,
            "findings": [f.to_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ImageRecord:
    """One image as the per-image pass saw it (one file read, one decode).

    Always: ``sha1``, ``dhash``/``thumb`` (the (8, 9, 3) colour thumbnail at the dHash's grid), ``mode``,
    ``size`` (W, H), ``error`` (why it could not be read; empty when fine) and for segmentation
    ``mask_error``. With ``stats``: ``file_size`` (bytes), ``format`` (PIL's, e.g. PNG, JPEG),
    ``pixels`` (W * H), ``channel_sum`` / ``channel_sumsq`` ((3,) int64, exact sums of the 0..255 R, G, B
    values and of their squares after ``imageio.to_rgb``), ``preview`` (an RGB PIL image at most
    ``preview_size`` px a side, only for the paths asked for) and ``mask_counts`` ((C,) int64 pixels per
    class index of the decoded segmentation target).
    """

    path: str
    split: str
    label: Any = None  # hashable label: class name, tuple of names, frozenset of object classes
    mask: Any = None  # the reader's Sample, for segmentation targets
    sha1: str = ""
    dhash: int | None = None
    thumb: Any = None  # (8, 9, 3) float32 colour thumbnail at the dHash's grid
    mode: str = ""
    size: tuple[int, int] | None = None  # (W, H)
    error: str = ""
    mask_error: str = ""
    file_size: int = 0
    format: str = ""
    pixels: int = 0
    channel_sum: np.ndarray | None = None
    channel_sumsq: np.ndarray | None = None
    preview: Image.Image | None = None
    mask_counts: np.ndarray | None = None


_LEVELS = np.arange(256, dtype=np.int64)
_LEVELS_SQ = _LEVELS * _LEVELS


@dataclass
class CheckResult:
    """``check_dataset_records``'s answer: the report, one record per image, the dataset index.

    ``records`` follow ``index.entries`` one to one (same order); ``index`` is None when the task's
    reader stopped (the records then come from a scan of the image files).
    """

    report: CheckReport
    records: list[ImageRecord]
    index: DatasetIndex | None


# ---- reading ----


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextmanager
def _captured_warnings() -> Iterator[list[str]]:
    """Collect the readers' warnings on logger 'foveal' (instead of printing them)."""
    logger = logging.getLogger("foveal")
    handler = _Collect()
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:] = [handler]
    logger.propagate = False
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler.messages
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _scan(root: Path) -> list[ImageRecord]:
    """Every image file under ``root`` (split from a train/val/test folder in its path, else 'all')."""
    if root.is_file():
        root = root.parent
    items = []
    for p in sorted(q for q in root.rglob("*") if q.is_file() and is_image_file(q)):
        parts = p.relative_to(root).parts
        split = next((s for s in parts if s in SPLIT_NAMES), "all")
        items.append(ImageRecord(str(p), split))
    return items


# ---- per-image pass ----


@dataclass(frozen=True)
class _Options:
    stats: bool = False
    spec: Any = None  # segmentation MaskSpec: decode each target at its image's size
    previews: frozenset[str] = frozenset()
    preview_size: int = 64


def _collect_stats(item: ImageRecord, image: Image.Image, data: bytes, options: _Options) -> None:
    """File size, format and exact RGB channel sums (from the 3 x 256 histogram: no float copy)."""
    item.file_size, item.format = len(data), image.format or ""
    rgb = to_rgb(image)
    hist = np.asarray(rgb.histogram(), dtype=np.int64).reshape(3, 256)
    item.pixels = rgb.width * rgb.height
    item.channel_sum, item.channel_sumsq = hist @ _LEVELS, hist @ _LEVELS_SQ
    if item.path in options.previews:
        preview = rgb.copy()
        preview.thumbnail((options.preview_size, options.preview_size), Image.Resampling.BILINEAR)
        item.preview = preview


def _inspect_mask(item: ImageRecord, options: _Options) -> None:
    from foveal.data.seg_loading import decode_target

    try:
        target = decode_target(item.mask, options.spec, item.size)
    except DataError as err:
        item.mask_error = " ".join(str(err).split())
        return
    if options.stats:
        n = len(options.spec.class_names)
        values = target.ravel()
        item.mask_counts = np.bincount(values[(values >= 0) & (values < n)], minlength=n).astype(np.int64)


_PLAIN = _Options()


def _inspect(item: ImageRecord, options: _Options = _PLAIN) -> ImageRecord:
    """Read the file once: SHA-1 of its bytes, decode once (mode, size, dHash; with ``options.stats``
    also the EDA statistics), or record the error; then decode its segmentation target if any."""
    try:
        data = Path(item.path).read_bytes()
    except OSError as err:
        item.error = f"cannot read the file ({err.strerror or err})"
        return item
    item.sha1 = sha1_bytes(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            item.mode, item.size = image.mode, image.size
            if image.mode == "P" and "transparency" in image.info:
                item.mode = "P+transparency"
            item.dhash, item.thumb = dhash_thumb(image)
            if options.stats:
                try:
                    _collect_stats(item, image, data, options)
                except Exception:  # noqa: BLE001 - a mode without an RGB conversion: no pixel stats
                    item.channel_sum = item.channel_sumsq = None
    except Exception as err:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        item.error = f"cannot decode the image ({type(err).__name__}: {err})"
    if item.mask is not None and options.spec is not None and item.size is not None:
        _inspect_mask(item, options)
    return item


def _inspect_all(
    items: list[ImageRecord], progress: bool, workers: int, options: _Options, label: str = "hashing"
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(partial(_inspect, options=options), items, chunksize=1)
        if not progress:
            for _ in results:
                pass
            return
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(label, total=len(items))
            for _ in results:
                bar.advance(task)


# ---- findings ----


def _short(paths: list[str], root: Path) -> str:
    shown = []
    for p in paths[:3]:
        try:
            shown.append(str(Path(p).relative_to(root)))
        except ValueError:
            shown.append(p)
    return ", ".join(shown) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")


def _group_findings(groups: list[list[ImageRecord]], near: bool, root: Path) -> list[Finding]:
    findings = []
    what = "near duplicates" if near else "exact duplicates"
    for group in groups:
        paths = [it.path for it in group]
        splits = sorted({it.split for it in group})
        if len(splits) > 1:
            by_split = "; ".join(
                f"{s}: {_short([it.path for it in group if it.split == s], root)}" for s in splits
            )
            kind = "leakage_near" if near else "leakage_exact"
            findings.append(
                Finding(kind, paths, f"{len(group)} {what} across splits {'/'.join(splits)}: {by_split}")
            )
        else:
            kind = "duplicate_near" if near else "duplicate_exact"
            findings.append(
                Finding(kind, paths, f"{len(group)} {what} in {splits[0]}: {_short(paths, root)}")
            )
        labels = {it.label for it in group if it.label is not None}
        if len(labels) > 1:
            shown = "; ".join(f"{_short([it.path], root)} -> {format_label(it.label)}" for it in group[:4])
            findings.append(Finding("label_conflict", paths, f"{what} with different labels: {shown}"))
    return findings


def format_label(label: Any) -> str:
    if isinstance(label, frozenset | tuple):
        return "{" + ", ".join(sorted(map(str, label))) + "}"
    return str(label)


def _duplicates(items: list[ImageRecord], hamming: int, root: Path) -> list[Finding]:
    by_sha: dict[str, list[ImageRecord]] = defaultdict(list)
    for it in items:
        if it.sha1 and it.dhash is not None:
            by_sha[it.sha1].append(it)
    exact = [g for g in by_sha.values() if len(g) > 1]
    findings = _group_findings(exact, near=False, root=root)
    # Near duplicates among distinct files: one representative per SHA-1, union-find over close pairs.
    reps = list(by_sha.values())
    parent = list(range(len(reps)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in near_pairs([g[0].dhash for g in reps], hamming):  # type: ignore[misc]
        if float(np.abs(reps[i][0].thumb - reps[j][0].thumb).mean()) <= NEAR_MAD:
            parent[find(i)] = find(j)
    clusters: dict[int, list[ImageRecord]] = defaultdict(list)
    for i, group in enumerate(reps):
        clusters[find(i)].extend(group)
    near = [g for root_id, g in clusters.items() if len(g) > 1 and len({it.sha1 for it in g}) > 1]
    return findings + _group_findings(near, near=True, root=root)


def _mask_findings(items: list[ImageRecord]) -> list[Finding]:
    """The targets that failed to decode in the per-image pass."""
    return [
        Finding("mask_problem", [it.mask.mask or it.path], it.mask_error) for it in items if it.mask_error
    ]


def check_dataset(
    path: str | Path,
    task: str = "auto",
    fmt: str = "auto",
    hamming: int = 6,
    *,
    progress: bool = False,
    workers: int = 2,
) -> CheckReport:
    """Check the dataset at ``path`` without training; see the module docstring for what is checked.

    ``task`` picks the reader (auto: detection layouts -> detect, images + masks -> segment, a CSV with
    'path' and no 'label(s)' column -> regress, else classify; see ``detect_task``); ``fmt`` is passed
    to it. ``hamming``: the largest dHash distance (of 64 bits) counted as
    a near duplicate. A reader error that stops the reader becomes a 'label_problem' finding and every
    image file under ``path`` is still checked; DataError when there are no images at all.
    """
    return check_dataset_records(
        path, task, fmt, hamming, progress=progress, workers=workers, stats=False
    ).report


def check_dataset_records(
    path: str | Path,
    task: str = "auto",
    fmt: str = "auto",
    hamming: int = 6,
    *,
    progress: bool = False,
    workers: int = 2,
    stats: bool = True,
    previews: Callable[[DatasetIndex], Collection[str]] | None = None,
    preview_size: int = 64,
    label: str = "hashing",
) -> CheckResult:
    """``check_dataset`` that also returns the per-image records and the index (see ``CheckResult``).

    ``stats`` collects the EDA fields of each ``ImageRecord`` in the same single decode;
    ``previews(index)`` names the image paths that get a ``preview`` (at most ``preview_size`` px a
    side), chosen before the pass. ``label`` names the progress bar.
    """
    start = time.perf_counter()
    task = resolve_task(task)
    if hamming < 0 or hamming > 64:
        raise DataError(f"--hamming {hamming}: must be between 0 and 64 (default 6)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such dataset file or folder; check the path")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"{root}: the folder is empty; point data check at a dataset folder")
    task = detect_task(root) if task == AUTO else task
    findings: list[Finding] = []
    spec = None
    index: DatasetIndex | None = None
    with _captured_warnings() as warnings:
        try:
            index = index_dataset(root, task, fmt)
            spec, masks = index.spec, index.dataset_kind.has_masks
            items = [
                ImageRecord(e.path, e.split, index.label_of(e), e.sample if masks else None)
                for e in index.entries
            ]
        except DataError as err:
            index = None
            items = _scan(root)
            if not items:
                raise
            message = " ".join(str(err).split())
            findings.append(Finding("label_problem", [str(root)], f"the {task} reader stopped: {message}"))
    for message in warnings:
        match = re.search(r"\b(?:skipped|clipped) (\d+) ", message)
        count = int(match.group(1)) if match else 1
        findings.append(Finding("label_problem", [str(root)], message, count))
    wanted = frozenset(previews(index) if stats and previews and index else ())
    _inspect_all(items, progress, workers, _Options(stats, spec, wanted, preview_size), label)
    modes = Counter(it.mode for it in items if it.mode)
    for it in items:
        if it.error:
            findings.append(Finding("unreadable_image", [it.path], it.error))
        elif it.mode not in EXPECTED_MODES:
            findings.append(Finding("unexpected_mode", [it.path], f"mode {it.mode} (expected RGB)"))
    findings += _mask_findings(items)
    findings += _duplicates(items, hamming, root if root.is_dir() else root.parent)
    findings.sort(key=lambda f: KINDS.index(f.kind))
    report = CheckReport(str(root), task, len(items), findings, dict(modes), time.perf_counter() - start)
    return CheckResult(report, items, index)
