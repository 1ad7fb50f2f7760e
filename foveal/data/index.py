"""One view of any dataset for the data tools (check, eda, split, gallery): ``index_dataset(path)``.

Reads the dataset with its task's reader (classification, segmentation, detection, regression) and lists
every image once with the split it sits in on disk ('all' when the layout has no splits) and the class
names it carries: its label(s) for classification, its objects' classes for detection, for segmentation
the classes present in its mask when ``mask_classes`` is asked (decodes every mask), none for regression
(its targets are in ``entry.sample.values``, their names in ``DatasetIndex.target_names``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.data.kinds import AUTO, TASKS, DatasetKind, detect_kind, get_kind, resolve_task
from foveal.data.sample import Sample
from foveal.errors import DataError

__all__ = ["SPLIT_NAMES", "TASKS", "DatasetIndex", "Entry", "detect_task", "index_dataset"]
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


def detect_task(path: Path) -> str:
    """The name of the dataset kind at ``path`` (see ``foveal.data.kinds.detect_kind``): 'detect' for
    COCO / YOLO / VOC layouts, 'segment' for images + masks folders, 'regress' for a CSV (or a folder's
    sidecar CSV) with a 'path' and no 'label(s)' column, else 'classify'. A split manifest names its task.
    """
    return detect_kind(path).name


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
    task = resolve_task(task)
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such dataset file or folder; check the path")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"{root}: the folder is empty; point at a dataset folder")
    kind = detect_kind(root) if task == AUTO else get_kind(task)
    index = kind.read(root, fmt, mask_classes=mask_classes, on_bad_image=on_bad_image)
    if not index.entries:
        raise DataError(f"{root}: no images found for task {kind.name}; check the path and --format")
    return index
