"""Regression CSVs: a ``path`` column, an optional ``split`` column and numeric target columns.

Every column other than ``path`` and ``split`` is a target, named by its header (``path,length``,
``path,width,height,split``). Paths are relative to the CSV file's folder unless absolute; ``split``
is train, val or test, an empty split (or no split column) leaves the row unassigned ('all'). Every
target value must be a finite number. A dataset folder holds the CSV as a sidecar: its only ``*.csv``
file, or ``targets.csv`` when there are several. Image files are not opened here: a missing or bad
image is reported when the images are decoded (``foveal.data.checks.drop_unreadable``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from foveal.data.sample import Sample
from foveal.errors import DataError, did_you_mean

SPLIT_NAMES = ("train", "val", "test")
RESERVED = ("path", "split")
SIDECAR = "targets.csv"
CLASS_COLUMNS = ("label", "labels")


@dataclass
class RegressionRows:
    """Rows of a regression CSV: samples per split ('all' for rows without a split) and target names."""

    splits: dict[str, list[Sample]]
    target_names: list[str]


def find_targets_csv(folder: Path) -> Path:
    """The sidecar CSV of a dataset folder: its only ``*.csv``, or ``targets.csv`` among several."""
    csvs = sorted(folder.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    if (folder / SIDECAR).is_file():
        return folder / SIDECAR
    if not csvs:
        raise DataError(
            f"{folder}: no CSV file in the folder; add {SIDECAR} with a header like 'path,length'"
        )
    names = ", ".join(p.name for p in csvs)
    raise DataError(
        f"{folder}: several CSV files ({names}) and no {SIDECAR}; rename the targets file to {SIDECAR}"
    )


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [h.strip() for h in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def is_regression_csv(path: Path) -> bool:
    """True when ``path`` (a CSV, or a folder with a sidecar CSV) has a 'path' and no 'label(s)' column.

    Reads only the header line; used to tell regression data from classification CSVs.
    """
    if path.is_dir():
        try:
            path = find_targets_csv(path)
        except DataError:
            return False
    if not path.is_file() or path.suffix.lower() != ".csv":
        return False
    header = _header(path)
    return "path" in header and not set(CLASS_COLUMNS) & set(header)


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header and the (line number, stripped fields) of every non-blank row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, [v.strip() for v in row]) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read the CSV ({err}); save it as UTF-8 text") from err
    return header, rows


def _check_header(path: Path, header: list[str]) -> list[str]:
    """The target columns of ``header`` in file order; DataError for a header foveal cannot use."""
    for i, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{path}:1: header column {i} has no name; name it or delete the column")
        if header.count(name) > 1:
            raise DataError(f"{path}:1: column '{name}' appears twice in the header; rename one")
    if "path" not in header:
        raise DataError(f"{path}:1: no 'path' column in the header {header}; use a header like 'path,length'")
    found = [h for h in header if h not in RESERVED]
    if not found:
        raise DataError(
            f"{path}:1: no target column, only {', '.join(header)}; add one numeric column per "
            "target (e.g. 'path,length')"
        )
    return found


def _number(path: Path, line: int, column: str, value: str) -> float:
    if not value:
        raise DataError(f"{path}:{line}: column '{column}' is empty; fill in a number or delete the row")
    try:
        number = float(value)
    except ValueError:
        hint = " (class labels need --task classify)" if column in CLASS_COLUMNS else ""
        raise DataError(
            f"{path}:{line}: column '{column}' has '{value}', not a number; write a number like 3.5{hint}"
        ) from None
    if not math.isfinite(number):
        raise DataError(
            f"{path}:{line}: column '{column}' has '{value}', not a finite number; write a finite "
            "number or delete the row"
        )
    return number


def read_regression_csv(path: Path, targets: Sequence[str] | None = None) -> RegressionRows:
    """Read a regression CSV into samples whose ``values`` follow the target order.

    ``targets`` selects and orders the target columns (e.g. a checkpoint's); the file must have them
    and its other columns are ignored. Without it (None or empty) every column but path/split is a
    target, in file order. DataError naming the file, the line and the column for any bad value.
    """
    header, rows = _read_rows(path)
    if not header or not rows:
        raise DataError(f"{path}: the CSV has no rows; add a header like 'path,length' and one row per image")
    found = _check_header(path, header)
    names = list(targets) if targets else list(found)
    for name in names:
        if name not in found:
            raise DataError(
                f"{path}: no target column '{name}'{did_you_mean(name, found)}; the CSV's target "
                f"columns are: {', '.join(found)}"
            )
    at = {name: header.index(name) for name in ("path", *names)}
    split_at = header.index("split") if "split" in header else None
    splits: dict[str, list[Sample]] = {}
    for line, row in rows:
        if len(row) > len(header):
            raise DataError(
                f"{path}:{line}: {len(row)} values for the {len(header)} header columns; remove the "
                "extra values (or quote values that hold a comma)"
            )
        row = row + [""] * (len(header) - len(row))
        if not row[at["path"]]:
            raise DataError(
                f"{path}:{line}: column 'path' is empty; fill in the image path or delete the row"
            )
        values = [_number(path, line, name, row[at[name]]) for name in names]
        split = (row[split_at] if split_at is not None else "") or "all"
        if split not in (*SPLIT_NAMES, "all"):
            raise DataError(
                f"{path}:{line}: column 'split' has '{split}'{did_you_mean(split, SPLIT_NAMES)}; "
                "use train, val or test (or leave it empty)"
            )
        image = Path(row[at["path"]]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        splits.setdefault(split, []).append(Sample(str(image), values=values))
    return RegressionRows(splits, names)
