"""The dataset kinds the data tools read: one declared ``DatasetKind`` per kind of annotation.

``KINDS`` registers them by name (``classify``: image labels, ``segment``: masks, ``detect``: objects,
``regress``: numeric targets); ``TASKS`` (the data tools' ``--task`` choices) derives from it, and
``ALIASES`` maps the model tasks that read another kind's datasets (instance, pose: detection datasets).
Each kind carries what the tools (``foveal data check|eda|split``, ``foveal gallery``) ask of it: how to
recognise and read its layouts into a ``DatasetIndex``, an image's label for duplicate checks, its
stratification labels, what its class counts count, whether its targets are masks or boxes, how gallery
cards are grouped. The tools ask the kind instead of comparing task names.

This module stays light (no numpy, no readers at import time): the CLI builds its help from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from foveal.data.splits import EMPTY_LABEL
from foveal.errors import DataError, check_choice

if TYPE_CHECKING:
    from foveal.data.sample import Sample

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
    """Every image of a dataset. ``task``: the name of its ``dataset_kind``; ``kind``: binary/multiclass/
    multilabel (classify), else the task.

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

    @property
    def dataset_kind(self) -> DatasetKind:
        """The registered kind of this dataset (``task`` is its name)."""
        return get_kind(self.task)

    def label_of(self, entry: Entry) -> Any:
        """A hashable label for comparing images: class name, sorted tuple (multilabel) or frozenset
        (detection objects); None when the kind has no image-level label (segmentation, regression)."""
        return self.dataset_kind.label_of(self, entry)


AUTO = "auto"


class DatasetKind:
    """One kind of dataset. Subclasses set the class attributes and override what differs.

    ``name``: the registry key (also ``DatasetIndex.task`` and a manifest's ``task``); ``title``: the
    adjective in messages ("the classification reader"); ``annotation``: what an image's target is,
    'labels' | 'mask' | 'objects' | 'values' (the gallery draws and judges cards by it);
    ``count_unit``: what the EDA class counts count; ``groups_by_class``: gallery cards (and its
    stratified sample) grouped by the first class, else by split; ``reads_subfolders``: the reader takes
    any subfolder of the dataset folder as data, so split manifests must not be written inside it.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    annotation: ClassVar[str]
    count_unit: ClassVar[str] = "images"
    groups_by_class: ClassVar[bool] = False
    reads_subfolders: ClassVar[bool] = False

    @property
    def has_masks(self) -> bool:
        """Targets are per-pixel class maps (EDA's segmentation section, mask checks and overlays)."""
        return self.annotation == "mask"

    @property
    def has_boxes(self) -> bool:
        """Targets are objects with boxes (EDA's detection section, boxes drawn on thumbnails)."""
        return self.annotation == "objects"

    def claims(self, path: Path) -> bool:
        """True when the file or folder ``path`` is in one of this kind's layouts (see ``detect_kind``)."""
        return False

    def read(self, root: Path, fmt: str, *, mask_classes: bool, on_bad_image: str) -> DatasetIndex:
        """Every image of the dataset at ``root`` (format ``fmt`` or 'auto'), splits as on disk."""
        raise NotImplementedError

    def label_of(self, index: DatasetIndex, entry: Entry) -> Any:
        """A hashable image-level label for comparing images, None when the kind has none."""
        return None

    def strata(self, index: DatasetIndex, entry: Entry) -> tuple[str, ...]:
        """The labels an image counts under for stratified splitting (``EMPTY_LABEL`` when none)."""
        return tuple(entry.classes) or (EMPTY_LABEL,)

    def group_table(self, source: Path, fmt: str) -> Path | None:
        """The label table whose columns can name ``--group-by`` groups, None when the format has none."""
        return None

    def split_csv(
        self, index: DatasetIndex, layout: dict[str, list[Entry]], rel: Callable[[str], str]
    ) -> tuple[list[str], list[list[str]]] | None:
        """(header, rows) of a CSV in this kind's own reader format written beside each split manifest
        (``layout``: split -> entries; ``rel``: an image path as the CSV names it), None for none."""
        return None

    def __repr__(self) -> str:
        return f"<dataset kind {self.name}>"


def _format_name(root: Path, fmt: str, detect: Callable[[Path], str]) -> str:
    """The format actually read: the manifest's source format for a manifest, else ``fmt`` or detected."""
    from foveal.data.manifest import is_manifest, read_manifest

    if is_manifest(root):
        return read_manifest(root).fmt
    return detect(root) if fmt == AUTO else fmt


class ClassifyKind(DatasetKind):
    """Image-level class labels (single-label or multilabel): image folders, label CSVs."""

    name = "classify"
    title = "classification"
    annotation = "labels"
    groups_by_class = True
    reads_subfolders = True

    def claims(self, path: Path) -> bool:
        return True  # the fallback: any layout no other kind claims is read as classification

    def read(self, root: Path, fmt: str, *, mask_classes: bool, on_bad_image: str) -> DatasetIndex:
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
        return DatasetIndex(root, self.name, fmt, data.kind, list(names), entries)

    def label_of(self, index: DatasetIndex, entry: Entry) -> Any:
        """The class name; the sorted tuple of names for multilabel."""
        return entry.classes[0] if index.kind != "multilabel" else entry.classes

    def group_table(self, source: Path, fmt: str) -> Path | None:
        if fmt != "csv":
            return None
        return source if source.is_file() else next(source.glob("*.csv"), None)

    def split_csv(
        self, index: DatasetIndex, layout: dict[str, list[Entry]], rel: Callable[[str], str]
    ) -> tuple[list[str], list[list[str]]] | None:
        """The CSV reader's ``path,label(s),split`` form (labels ``;``-separated)."""
        column = "labels" if index.kind == "multilabel" else "label"
        rows = [[rel(e.path), ";".join(e.classes), split] for split, part in layout.items() for e in part]
        return ["path", column, "split"], rows


def _mask_classes(sample: Sample, spec: Any) -> tuple[str, ...]:
    import numpy as np

    from foveal.data.seg_loading import decode_target

    try:
        values = np.unique(decode_target(sample, spec))
    except DataError:
        return ()
    return tuple(spec.class_names[v] for v in values if 0 <= v < len(spec.class_names))


class SegmentKind(DatasetKind):
    """Per-pixel class masks: images + masks folders, COCO segmentation."""

    name = "segment"
    title = "segmentation"
    annotation = "mask"
    count_unit = "images containing the class"

    def claims(self, path: Path) -> bool:

        if not path.is_dir():
            return False
        if (path / "images").is_dir() and (path / "masks").is_dir():
            return True
        return any((path / s / "images").is_dir() and (path / s / "masks").is_dir() for s in SPLIT_NAMES)

    def read(self, root: Path, fmt: str, *, mask_classes: bool, on_bad_image: str) -> DatasetIndex:
        """Entries carry the classes present in their mask only with ``mask_classes`` (decodes them)."""
        from foveal.data.seg_loading import detect_format, load_segmentation

        splits, spec = load_segmentation(root, fmt=fmt, split_off_val=False, on_bad_image="skip")
        fmt = _format_name(root, fmt, detect_format)
        pairs = [(split, s) for split, part in splits.items() for s in part]
        classes: list[tuple[str, ...]] = [()] * len(pairs)
        if mask_classes:
            with ThreadPoolExecutor(max_workers=2) as pool:
                classes = list(pool.map(lambda p: _mask_classes(p[1], spec), pairs))
        entries = [Entry(s.path, split, c, s) for (split, s), c in zip(pairs, classes)]
        return DatasetIndex(root, self.name, fmt, self.name, list(spec.class_names), entries, spec=spec)

    def strata(self, index: DatasetIndex, entry: Entry) -> tuple[str, ...]:
        """The classes present in the mask; the background (class 0) only when it is alone."""
        classes = tuple(entry.classes)
        if len(classes) > 1 and index.class_names:
            classes = tuple(c for c in classes if c != index.class_names[0])
        return classes or (EMPTY_LABEL,)


class DetectKind(DatasetKind):
    """Objects with boxes (and optional instance masks / keypoints): COCO, YOLO, Pascal VOC."""

    name = "detect"
    title = "detection"
    annotation = "objects"
    count_unit = "objects"

    def claims(self, path: Path) -> bool:
        from foveal.data.formats.coco import find_coco
        from foveal.data.formats.yolo import find_data_yaml

        if path.is_file():
            return path.suffix.lower() in (".json", ".yaml", ".yml")
        if find_coco(path) or find_data_yaml(path) is not None:
            return True
        return (path / "Annotations").is_dir() and any((path / "Annotations").glob("*.xml"))

    def read(self, root: Path, fmt: str, *, mask_classes: bool, on_bad_image: str) -> DatasetIndex:
        """Entries carry the sorted classes of their objects."""
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
        categories = list(data.categories)
        return DatasetIndex(root, self.name, fmt, self.name, data.classes, entries, categories=categories)

    def label_of(self, index: DatasetIndex, entry: Entry) -> Any:
        """The set of its objects' classes."""
        return frozenset(entry.classes)


class RegressKind(DatasetKind):
    """Numeric targets per image: a CSV (or a folder's sidecar CSV) with 'path' and no 'label(s)'."""

    name = "regress"
    title = "regression"
    annotation = "values"

    def claims(self, path: Path) -> bool:
        from foveal.data.formats.regression import is_regression_csv

        return is_regression_csv(path)

    def read(self, root: Path, fmt: str, *, mask_classes: bool, on_bad_image: str) -> DatasetIndex:
        """No classes: the targets are in ``entry.sample.values``, their names in ``target_names``."""
        from foveal.data.reg_loading import detect_format, load_regression

        data = load_regression(root, fmt=fmt, split_off_val=False)
        fmt = _format_name(root, fmt, detect_format)
        entries = [Entry(s.path, split, (), s) for split, part in data.splits.items() for s in part]
        names = list(data.target_names)
        return DatasetIndex(root, self.name, fmt, self.name, [], entries, target_names=names)


CLASSIFY, SEGMENT, DETECT, REGRESS = ClassifyKind(), SegmentKind(), DetectKind(), RegressKind()
KINDS: dict[str, DatasetKind] = {k.name: k for k in (CLASSIFY, SEGMENT, DETECT, REGRESS)}
"""Every dataset kind by name, in the order the ``--task`` choices list them."""
ALIASES = {"instance": DETECT.name, "pose": DETECT.name}
"""Model tasks whose datasets are of another kind (``foveal.tasks``' ``dataset_kind``), accepted by name."""
TASKS = (AUTO, *KINDS)
"""The data tools' ``--task`` choices: 'auto' (detect the kind from the layout) and every kind."""
DETECTION_ORDER = (DETECT, SEGMENT, REGRESS, CLASSIFY)
"""The order ``detect_kind`` asks the kinds: the first that claims a layout reads it (classify: all)."""


def task_help() -> str:
    """'classify|segment|detect|regress|auto (default auto)' for the data tools' ``--task`` help."""
    return "|".join(TASKS[1:]) + f"|{AUTO} (default {AUTO})"


def resolve_task(task: str) -> str:
    """``task`` as a ``TASKS`` entry (an alias becomes its kind's name); ConfigError when unknown."""
    return check_choice("task", ALIASES.get(task, task), TASKS)


def get_kind(name: str) -> DatasetKind:
    """The kind registered as ``name`` (or an alias of it); ConfigError with close matches otherwise."""
    name = ALIASES.get(name, name)
    return KINDS[check_choice("dataset kind", name, KINDS)]


def kind_of_annotation(annotation: str) -> DatasetKind:
    """The first registered kind whose targets are ``annotation`` ('labels', 'mask', 'objects', ...)."""
    return next(k for k in KINDS.values() if k.annotation == annotation)


def detect_kind(path: Path, order: Sequence[DatasetKind] = DETECTION_ORDER) -> DatasetKind:
    """The kind of the dataset at ``path``: a split manifest's declared task, else the first kind of
    ``order`` that claims the layout (detection: COCO / YOLO / VOC; segmentation: images + masks folders;
    regression: a CSV, or a folder's sidecar CSV, with 'path' and no 'label(s)' column; else classify)."""
    if path.is_file() and path.suffix.lower() == ".json":
        from foveal.data.manifest import is_manifest, read_manifest

        if is_manifest(path):
            manifest = read_manifest(path)
            name = ALIASES.get(manifest.task, manifest.task)
            if name not in KINDS:
                raise DataError(
                    f"{path}: a split manifest for task '{manifest.task}', not one of the dataset kinds "
                    f"{', '.join(KINDS)}; re-run foveal data split"
                )
            return KINDS[name]
    return next(k for k in order if k.claims(path))
