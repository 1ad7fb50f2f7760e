"""Read an image regression dataset (a CSV of image paths and numeric targets) into train/val/test.

The layout is ``foveal.data.formats.regression``'s: a CSV file, or a folder holding it as a sidecar
(its only ``*.csv``, or ``targets.csv``), or a split manifest (``foveal data split``) of task 'regress'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foveal.data.formats.regression import find_targets_csv, read_regression_csv
from foveal.data.sample import Sample
from foveal.data.splits import stratified_split
from foveal.errors import DataError, check_choice

FORMATS = ("auto", "csv")
TASK = "regress"  # the dataset kind this reader reads (foveal.data.kinds.REGRESS)


@dataclass
class RegressionData:
    """Samples per split (each with ``values`` in ``target_names`` order) and the target names."""

    target_names: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        return self.splits.get(name, [])


def detect_format(path: Path) -> str:
    """'csv' for a .csv file or a folder (which must hold a sidecar CSV); DataError for other files."""
    if path.is_file() and path.suffix.lower() != ".csv":
        raise DataError(f"{path}: a file that is not a CSV; pass a .csv file or the dataset folder")
    return "csv"


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such {what}; check the path")
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"{path}: the folder is empty; put the images and a targets.csv in it")
    return path


def _read(path: Path, fmt: str, target_names: list[str] | None) -> tuple[dict[str, list[Sample]], list[str]]:
    """Samples per split as read ('all' for rows without a split) and the target names."""
    from foveal.data.manifest import assign, check_task, is_manifest, read_manifest

    if is_manifest(path):
        manifest = read_manifest(path)
        check_task(manifest, TASK)
        splits, names = _read(manifest.source, manifest.fmt, target_names)
        return assign(manifest, (s for part in splits.values() for s in part)), names
    detect_format(path)  # the only format: checks that a file is a CSV
    rows = read_regression_csv(path if path.is_file() else find_targets_csv(path), target_names)
    return rows.splits, rows.target_names


def load_regression(
    data: str | Path,
    val: str | Path | None = None,
    *,
    fmt: str = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    target_names: list[str] | None = None,
    split_off_val: bool = True,
) -> RegressionData:
    """Read ``data`` (and an optional separate ``val`` CSV or folder) into train/val/test samples.

    Splits come from the CSV's ``split`` column (or the manifest). ``target_names`` (e.g. from a
    checkpoint) selects and orders the target columns, which the file must have; otherwise every
    column but path/split is a target. ``val`` is read with the same target names and becomes 'val'.
    With ``split_off_val`` rows without a split join 'train', and data without a 'val' split gets a
    seeded random split of ``val_fraction`` of 'train'; without it the splits stay as read ('all'
    for rows without a split), as evaluation wants them.
    """
    check_choice("format", fmt, FORMATS)
    root = _existing(data, "dataset file or folder")
    splits, names = _read(root, fmt, target_names)
    if val is not None:
        val_splits, _ = _read(_existing(val, "validation file or folder"), fmt, names)
        splits["val"] = [s for part in val_splits.values() for s in part]
    if not split_off_val:
        return RegressionData(names, splits)
    if "all" in splits:
        splits.setdefault("train", []).extend(splits.pop("all"))
    if "val" not in splits and splits.get("train"):
        if len(splits["train"]) < 4:
            raise DataError(
                f"{root}: only {len(splits['train'])} images, too few to split off a validation "
                "set; add images or pass --val"
            )
        splits["train"], splits["val"] = stratified_split(splits["train"], val_fraction, seed)
    return RegressionData(names, splits)


def target_matrix(samples: Sequence[Sample]) -> np.ndarray:
    """The (N, T) float32 targets of ``samples`` ((0, 0) for none); DataError for a sample without values."""
    missing = next((s for s in samples if s.values is None), None)
    if missing is not None:
        raise DataError(f"{missing.path}: no regression targets for this image; read it with load_regression")
    if not samples:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray([s.values for s in samples], dtype=np.float32)
