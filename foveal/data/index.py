"""One view of any dataset for the data tools (check, eda, split, gallery): ``index_dataset(path)``.

Reads the dataset with its task's reader (classification, segmentation, detection, regression) and lists
every image once with the split it sits in on disk ('all' when the layout has no splits) and the class
names it carries: its label(s) for classification, its objects' classes for detection, for segmentation
the classes present in its mask when ``mask_classes`` is asked (decodes every mask), none for regression
(its targets are in ``entry.sample.values``, their names in ``DatasetIndex.target_names``).
"""

from __future__ import annotations

from pathlib import Path

from foveal.data.kinds import (
    AUTO,
    SPLIT_NAMES,
    TASKS,
    DatasetIndex,
    Entry,
    detect_kind,
    get_kind,
    resolve_task,
)
from foveal.errors import DataError

__all__ = ["SPLIT_NAMES", "TASKS", "DatasetIndex", "Entry", "detect_task", "index_dataset"]


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
