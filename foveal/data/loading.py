"""Read a classification dataset (ImageFolder or CSV) into train/val/test samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from foveal.data.formats.csvfile import read_csv
from foveal.data.formats.imagefolder import SPLIT_NAMES, has_split_folders, read_class_tree
from foveal.data.sample import Sample
from foveal.data.splits import stratified_split
from foveal.errors import DataError, check_choice

FORMATS = ("auto", "imagefolder", "csv")
KINDS = ("auto", "binary", "multiclass", "multilabel")


@dataclass
class ClassificationData:
    """Samples per split plus the class list; ``kind`` is binary, multiclass or multilabel."""

    class_names: list[str]
    kind: str
    splits: dict[str, list[Sample]] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        return self.splits.get(name, [])


def detect_format(path: Path) -> str:
    """'csv' for a .csv file (or a folder with one CSV and no class folders), else 'imagefolder'."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"{path}: a file that is not a CSV; pass a dataset folder or a .csv file")
    csvs = sorted(path.glob("*.csv"))
    has_dirs = any(p.is_dir() and not p.name.startswith(".") and p.name != "images" for p in path.iterdir())
    return "csv" if len(csvs) == 1 and not has_dirs else "imagefolder"


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such {what}; check the path")
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"{path}: the folder is empty; put one sub-folder of images per class in it")
    return path


def _read(
    path: Path, fmt: str, class_names: list[str] | None
) -> tuple[dict[str, list[Sample]], list[str], bool]:
    """Return samples per split ('all' when the layout has no splits), classes, multilabel flag."""
    from foveal.data.manifest import assign, check_task, is_manifest, read_manifest

    if is_manifest(path):
        manifest = read_manifest(path)
        check_task(manifest, "classify")
        splits, names, multilabel = _read(manifest.source, manifest.fmt, class_names)
        return assign(manifest, (s for part in splits.values() for s in part)), names, multilabel
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "csv":
        table = read_csv(path if path.is_file() else next(path.glob("*.csv")), class_names)
        return table.splits, table.class_names, table.multilabel
    if path.is_file():
        raise DataError(f"{path}: ImageFolder data must be a folder; pass its parent folder")
    if not has_split_folders(path):
        samples, names = read_class_tree(path, class_names)
        return {"all": samples}, names, False
    names = class_names
    splits: dict[str, list[Sample]] = {}
    for split in SPLIT_NAMES:
        if (path / split).is_dir():
            splits[split], found = read_class_tree(path / split, names)
            names = names or found
    return splits, names or [], False


def load_classification(
    data: str | Path,
    val: str | Path | None = None,
    *,
    fmt: str = "auto",
    kind: str = "auto",
    class_names: list[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    split_off_val: bool = True,
) -> ClassificationData:
    """Read ``data`` (and an optional separate ``val`` set) into train/val/test samples.

    Layouts without a validation split get a stratified, seeded split of ``val_fraction``.
    ``class_names`` (e.g. from a checkpoint) fixes the classes; otherwise they come from the data.
    Without ``split_off_val`` the splits stay as read ('all' for a layout without splits).
    """
    check_choice("format", fmt, FORMATS)
    check_choice("classification kind", kind, KINDS)
    root = _existing(data, "dataset file or folder")
    splits, names, multilabel = _read(root, fmt, class_names)
    if class_names is None and len(names) < 2:
        found = f"only the class '{names[0]}'" if names else "no classes"
        raise DataError(
            f"{root}: found {found}; classification needs at least two classes "
            "(one folder or label per class)"
        )
    if val is not None:
        val_splits, _, _ = _read(_existing(val, "validation file or folder"), fmt, names)
        splits["val"] = [s for part in val_splits.values() for s in part]
    if "all" in splits and split_off_val:
        pool = splits.pop("all")
        if "train" in splits or "val" in splits:
            splits.setdefault("train", []).extend(pool)
        else:
            splits["train"] = pool
    if "val" not in splits and splits.get("train") and class_names is None and split_off_val:
        if len(splits["train"]) < 4:
            raise DataError(
                f"{root}: only {len(splits['train'])} images, too few to split off a validation "
                "set; add images or pass --val"
            )
        splits["train"], splits["val"] = stratified_split(splits["train"], val_fraction, seed)
    if kind == "auto":
        kind = "multilabel" if multilabel else ("binary" if len(names) == 2 else "multiclass")
    elif (kind == "multilabel") != multilabel:
        raise DataError(
            f"{root}: --kind {kind} does not fit this data; multilabel needs a CSV with a "
            "'labels' column, single-label data a 'label' column or class folders"
        )
    elif kind == "binary" and len(names) != 2:
        raise DataError(f"{root}: --kind binary needs exactly 2 classes, found {len(names)}: {names}")
    return ClassificationData(list(names), kind, splits)
