"""CSV layouts: ``path,label`` (one class per image) or ``path,labels`` (';'-separated, multilabel).

An optional ``split`` column (train/val/test) assigns rows to splits. Paths are relative to the
CSV file's folder unless absolute.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from foveal.data.sample import Sample
from foveal.errors import DataError, did_you_mean

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class CsvRows:
    """Rows of a classification CSV: samples per split ('all' when there is no split column)."""

    splits: dict[str, list[Sample]]
    class_names: list[str]
    multilabel: bool


def read_csv(path: Path, class_names: list[str] | None = None) -> CsvRows:
    """Read a classification CSV. ``class_names`` fixes the classes; unknown labels are errors."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            header = [h.strip() for h in (rows and rows[0].keys() or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read the CSV ({err}); save it as UTF-8 text") from err
    if not rows:
        raise DataError(f"{path}: the CSV has no rows; add a header 'path,label' and one row per image")
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]
    if "path" not in header or not ({"label", "labels"} & set(header)):
        raise DataError(
            f"{path}: columns {header} lack 'path' and 'label' (or 'labels' for multilabel); "
            "use a header like 'path,label'"
        )
    multilabel = "labels" in header
    column = "labels" if multilabel else "label"

    def names_of(row: dict[str, str]) -> list[str]:
        value = row[column]
        return [n.strip() for n in value.split(";") if n.strip()] if multilabel else [value]

    if class_names is None:
        found = sorted({n for row in rows for n in names_of(row) if n})
        class_names = found
    index = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, list[Sample]] = {}
    for line, row in enumerate(rows, start=2):
        names = names_of(row)
        if not row["path"] or (not multilabel and not names[0]):
            raise DataError(f"{path}:{line}: empty path or label; fill it in or delete the row")
        for name in names:
            if name not in index:
                raise DataError(
                    f"{path}:{line}: unknown label '{name}'{did_you_mean(name, class_names)}; "
                    f"known classes: {', '.join(class_names)}"
                )
        image = Path(row["path"])
        image = image if image.is_absolute() else path.parent / image
        split = row.get("split", "") or "all"
        if split not in (*SPLIT_NAMES, "all"):
            raise DataError(f"{path}:{line}: split '{split}' must be one of train, val, test")
        label: int | list[int] = sorted({index[n] for n in names}) if multilabel else index[names[0]]
        splits.setdefault(split, []).append(Sample(str(image), label))
    return CsvRows(splits, list(class_names), multilabel)
