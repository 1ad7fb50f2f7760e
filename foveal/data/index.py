"""One view of any dataset for the data tools (check, eda, split, gallery): ``index_dataset(path)``.

Reads the dataset with its task's reader (classification, segmentation, detection, regression) and lists
every image once with the split it sits in on disk ('all' when the layout has no splits) and the class
names it carries: its label(s) for classification, its objects' classes for detection, for segmentation
the classes present in its mask when ``mask_classes`` is asked (decodes every mask), none for regression
(its targets are in ``entry.sample.values``, their names in ``DatasetIndex.target_names``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foveal.data.sample import Sample
from foveal.errors import DataError, check_choice

TASKS = ("auto", "classify", "segment", "detect", "regress")
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Entry:
    """One image: ``path``, the ``split`` it is in, the ``classes`` it carries, the reader's ``sample``."""

    path: str
    split: str
    classes: tuple[str, ...]
    sample: Sample


@dataclass
class DatasetIndex:
    """Every image of a dataset. ``kind``: binary/multiclass/multilabel (classify), else the task.

    ``spec``: the segmentation MaskSpec; ``categories``: the detection COCO categories;
    ``target_names``: the regression targets (``class_names`` is empty for regression).
    """

    root: Path
    task: str
    fmt: str
    kind: str
    class_names: list[str]
    entries: list[Entry] = field(default_factory=list)
    spec: Any = None
    categories: list[dict[str, Any]] | None = None
    target_names: list[str] | None = None

    @property
    def splits(self) -> list[str]:
        """Split names present, in train/val/test/all order."""
        present = {e.split for e in self.entries}
        return [s for s in (*SPLIT_NAMES, "all") if s in present]

    def label_of(self, entry: Entry) -> Any:
        """A hashable label for comparing images: class name, sorted tuple (multilabel) or frozenset
        (detection objects); None when the task has no image-level label (segmentation, regression)."""
        if self.task == "classify":
            return entry.classes[0] if self.kind != "multilabel" else entry.classes
        if self.task == "detect":
            return frozenset(entry.classes)
        return None


def detect_task(path: Path) -> str:
    """'detect' for COCO / YOLO / VOC layouts, 'segment' for images + masks folders, 'regress' for a CSV
    (or a folder's sidecar CSV) with a 'path' and no 'label(s)' column, else 'classify'.

    A split manifest (``foveal data split``) names its task.
    """
    from foveal.data.formats.coco import find_coco
    from foveal.data.formats.regression import is_regression_csv
    from foveal.data.formats.yolo import find_data_yaml

    if path.is_file():
        if path.suffix.lower() == ".json":
            from foveal.data.manifest import is_manifest, read_manifest

            if is_manifest(path):
                return read_manifest(path).task
        if is_regression_csv(path):
            return "regress"
        return "detect" if path.suffix.lower() in (".json", ".yaml", ".yml") else "classify"
    if find_coco(path) or find_data_yaml(path) is not None:
        return "detect"
    if (path / "Annotations").is_dir() and any((path / "Annotations").glob("*.xml")):
        return "detect"
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return "segment"
    if any((path / s / "images").is_dir() and (path / s / "masks").is_dir() for s in SPLIT_NAMES):
        return "segment"
    if is_regression_csv(path):
        return "regress"
    return "classify"


def _format_name(root: Path, fmt: str, detect: Any) -> str:
    """The format actually read: the manifest's source format for a manifest, else ``fmt`` or detected."""
    from foveal.data.manifest import is_manifest, read_manifest

    if is_manifest(root):
        return read_manifest(root).fmt
    return detect(root) if fmt == "auto" else fmt


def _index_classify(root: Path, fmt: str) -> DatasetIndex:
    from foveal.data.loading import detect_format, load_classification

    data = load_classification(root, fmt=fmt, split_off_val=False)
    fmt = _format_name(root, fmt, detect_format)
    names = data.class_names
    entries = []
    for split, samples in data.splits.items():
        for s in samples:
            labels = s.label if isinstance(s.label, list) else [s.label]
            classes = tuple(sorted(names[i] for i in labels))
            entries.append(Entry(s.path, split, classes, s))
    return DatasetIndex(root, "classify", fmt, data.kind, list(names), entries)


def _mask_classes(sample: Sample, spec: Any) -> tuple[str, ...]:
    from foveal.data.seg_loading import decode_target

    try:
        values = np.unique(decode_target(sample, spec))
    except DataError:
        return ()
    return tuple(spec.class_names[v] for v in values if 0 <= v < len(spec.class_names))


def _index_segment(root: Path, fmt: str, mask_classes: bool) -> DatasetIndex:
    from foveal.data.seg_loading import detect_format, load_segmentation

    splits, spec = load_segmentation(root, fmt=fmt, split_off_val=False, on_bad_image="skip")
    fmt = _format_name(root, fmt, detect_format)
    pairs = [(split, s) for split, part in splits.items() for s in part]
    classes: list[tuple[str, ...]] = [()] * len(pairs)
    if mask_classes:
        with ThreadPoolExecutor(max_workers=2) as pool:
            classes = list(pool.map(lambda p: _mask_classes(p[1], spec), pairs))
    entries = [Entry(s.path, split, c, s) for (split, s), c in zip(pairs, classes)]
    return DatasetIndex(root, "segment", fmt, "segment", list(spec.class_names), entries, spec=spec)


def _index_detect(root: Path, fmt: str, on_bad_image: str) -> DatasetIndex:
    from foveal.data.det_loading import detect_format, load_detection

    data = load_detection(root, fmt, on_bad_image=on_bad_image)
    fmt = _format_name(root, fmt, detect_format)
    names = {c["id"]: c["name"] for c in data.categories}
    entries = [
        Entry(s.path, split, tuple(sorted({names.get(o.get("category_id"), "?") for o in objects})), s)
        for split, part in data.splits.items()
        for s in part
        for objects in [s.objects or []]
    ]
    return DatasetIndex(
        root, "detect", fmt, "detect", data.classes, entries, categories=list(data.categories)
    )


def _index_regress(root: Path, fmt: str) -> DatasetIndex:
    from foveal.data.reg_loading import detect_format, load_regression

    data = load_regression(root, fmt=fmt, split_off_val=False)
    fmt = _format_name(root, fmt, detect_format)
    entries = [Entry(s.path, split, (), s) for split, part in data.splits.items() for s in part]
    return DatasetIndex(root, "regress", fmt, "regress", [], entries, target_names=list(data.target_names))


def index_dataset(
    path: str | Path,
    task: str = "auto",
    fmt: str = "auto",
    *,
    mask_classes: bool = False,
    on_bad_image: str = "skip",
) -> DatasetIndex:
    """Read the dataset at ``path`` (any format of ``task``; 'auto' detects both) into a DatasetIndex.

    Splits stay as on disk: no validation split is drawn. Bad images and labels are skipped with the
    reader's warning (``on_bad_image='skip'``) or raise DataError ('error'). DataError when the path
    is missing or the dataset has no images.
    """
    check_choice("task", task, TASKS)
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such dataset file or folder; check the path")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"{root}: the folder is empty; point at a dataset folder")
    task = detect_task(root) if task == "auto" else task
    if task == "classify":
        index = _index_classify(root, fmt)
    elif task == "segment":
        index = _index_segment(root, fmt, mask_classes)
    elif task == "regress":
        index = _index_regress(root, fmt)
    else:
        index = _index_detect(root, fmt, on_bad_image)
    if not index.entries:
        raise DataError(f"{root}: no images found for task {task}; check the path and --format")
    return index
