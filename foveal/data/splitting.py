"""``foveal data split``: stratified, group-aware train/val/test or k-fold split manifests of any dataset.

Every image of the dataset (whatever its on-disk splits) gets a label vector: its class (classification),
each of its labels (multilabel), each object class present (detection; ``(empty)`` when it has none),
or the classes present in its mask (segmentation; background only counts when alone). Units (groups
from ``group_by``, else single images) are assigned by ``foveal.data.splits.iterative_stratify``, seeded.
Outputs in ``out``: ``split.json`` (fractions) or ``fold_0.json`` .. ``fold_{K-1}.json`` and
``folds.csv`` (k-fold), plus ``split.csv`` / ``fold_k.csv`` for classification (the CSV reader's
``path,label(s),split`` form, paths relative to the CSV). See ``foveal.data.manifest`` for the JSON form.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write_text
from foveal.data.index import DatasetIndex, Entry, index_dataset
from foveal.data.manifest import is_manifest, read_manifest, write_manifest
from foveal.data.splits import iterative_stratify
from foveal.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
OUTPUTS = re.compile(r"(split\.(json|csv)|folds\.csv|fold_\d+\.(json|csv))")  # files ``--force`` replaces


@dataclass
class SplitResult:
    """What ``split_dataset`` wrote: ``paths``; per part (``train/val/test``, or ``fold_k`` = the val
    part of fold k, and ``test``) the number of ``images``, of ``groups`` and of images per label
    (``counts[part][label]``, labels in ``labels`` order)."""

    out: Path
    source: Path
    task: str
    fmt: str
    kind: str
    seed: int
    folds: int | None
    group_by: str | None
    n_images: int
    n_groups: int
    labels: list[str]
    parts: list[str]
    paths: list[Path] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        doc = asdict(self)
        doc.update(out=str(self.out), source=str(self.source), paths=[str(p) for p in self.paths])
        return doc


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.7,0.15,0.15' (train,val,test) or '0.8,0.2' (no test) -> a checked (train, val, test)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--fractions '{text}': not numbers; write e.g. 0.7,0.15,0.15 (train,val,test)"
        ) from None
    return check_fractions(values)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """(train, val[, test]) fractions >= 0 summing to 1, train and val > 0; ConfigError otherwise."""
    values = [float(v) for v in fractions]
    if len(values) == 2:
        values.append(0.0)
    text = ",".join(f"{v:g}" for v in fractions)
    if len(values) != 3:
        raise ConfigError(f"fractions {text}: give 2 or 3 values (train,val[,test]), e.g. 0.7,0.15,0.15")
    if min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"fractions {text}: must be >= 0 and sum to 1, e.g. 0.7,0.15,0.15")
    if values[0] <= 0 or values[1] <= 0:
        raise ConfigError(f"fractions {text}: train and val must be > 0 (test may be 0)")
    return values[0], values[1], values[2]


def _key(path: str | Path) -> str:
    return os.path.normcase(str(Path(path).resolve()))


def image_labels(index: DatasetIndex, entry: Entry) -> tuple[str, ...]:
    """The labels an image counts under for stratification: its kind's ``strata`` (module docstring)."""
    return index.dataset_kind.strata(index, entry)


def _csv_groups(table: Path, column: str) -> dict[str, str] | None:
    """Image key -> the ``column`` value of a classification CSV; None when it has no such column."""
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [(h or "").strip() for h in reader.fieldnames or []]
            if column not in header:
                return None
            groups: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                if not row[column]:
                    raise DataError(f"{table}:{line}: empty '{column}' value; give every row a group")
                image = Path(row.get("path", ""))
                groups[_key(image if image.is_absolute() else table.parent / image)] = row[column]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{table}: cannot read the CSV ({err}); save it as UTF-8 text") from err
    return groups


def group_keys(entries: Sequence[Entry], group_by: str, table: Path | None = None) -> list[str]:
    """The group of each entry: the ``group_by`` column of the classification CSV ``table`` when it has
    one, else the first capture group (or the whole match) of the regex ``group_by`` searched in the
    file name. DataError for an invalid regex or a file name it does not match."""
    if table is not None:
        by_column = _csv_groups(table, group_by)
        if by_column is not None:
            return [by_column[_key(e.path)] for e in entries]
    try:
        pattern = re.compile(group_by)
    except re.error as err:
        raise DataError(
            f"--group-by '{group_by}': not a valid regular expression ({err}); e.g. '^([^_]+)_' takes "
            "the name part before the first '_'"
        ) from None
    keys = []
    for entry in entries:
        name = Path(entry.path).name
        found = pattern.search(name)
        key = (found.group(1) if pattern.groups else found.group(0)) if found else None
        if not key:
            column = f" (nor a column of {table})" if table is not None else ""
            raise DataError(
                f"{entry.path}: the file name '{name}' does not match the --group-by regex '{group_by}'"
                f"{column}; fix the regex so that every file name matches, e.g. '^([^_]+)_'"
            )
        keys.append(key)
    return keys


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: a file, not a folder; choose a folder for the manifests")
    found = sorted(p.name for p in out.iterdir() if OUTPUTS.fullmatch(p.name)) if out.is_dir() else []
    if found and not force:
        raise DataError(
            f"--out {out}: already holds split manifests ({', '.join(found[:4])}); "
            "pass --force to replace them or choose another folder"
        )


def _assign(
    units: list[int], labels: list[Counter[str]], sizes: list[int], fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Units (indices) per part."""
    parts = iterative_stratify([labels[u] for u in units], [sizes[u] for u in units], fractions, seed)
    out: list[list[int]] = [[] for _ in fractions]
    for u, part in zip(units, parts, strict=True):
        out[part].append(u)
    return out


def _rel(path: str, folder: Path) -> str:
    target = Path(path).resolve()
    try:
        return os.path.relpath(target, folder).replace(os.sep, "/")
    except ValueError:  # another drive (Windows)
        return str(target)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def split_fractions(
    fractions: Sequence[float] | str | None = None,
    val: float | None = None,
    test: float | None = None,
    folds: int | None = None,
    keep_test: bool = False,
) -> tuple[tuple[float, float, float], float | None]:
    """The (train, val, test) fractions of a split, and the held-out test fraction of k-fold (None: no
    test part), from ``fractions`` (a sequence or text '0.7,0.15,0.15') or ``val``/``test``.

    Without either: val 0.15 and test 0.15 (0 with ``keep_test``, whose test split is the on-disk
    one); train gets the rest. With ``folds`` each val fold is 1/K of the data: ``fractions`` and
    ``val`` do not apply and ``test`` is the held-out part. ConfigError (one line) on conflicts or
    values out of range."""
    if folds is not None:
        if fractions is not None or val is not None:
            raise ConfigError("--folds K: each val fold is 1/K of the data; drop --fractions and --val")
        if test is not None and not 0.0 <= float(test) < 1.0:
            raise ConfigError(f"--test {test}: the test fraction must be >= 0 and < 1, e.g. 0.2")
        return (0.7, 0.15, 0.15), None if test is None else float(test)
    if fractions is not None:
        if val is not None or test is not None:
            raise ConfigError("pass either --fractions or --val/--test, not both")
        return parse_fractions(fractions) if isinstance(fractions, str) else check_fractions(fractions), None
    if keep_test and test is not None:
        raise ConfigError("--keep-test keeps the on-disk test split; drop --test, or drop --keep-test")
    for flag, value in (("--val", val), ("--test", test)):
        if value is not None and not 0.0 <= value < 1.0:
            raise ConfigError(f"{flag} {value}: must be >= 0 and < 1, e.g. 0.15")
    val = 0.15 if val is None else val
    test = (0.0 if keep_test else 0.15) if test is None else test
    if val + test >= 1.0:
        raise ConfigError(f"--val {val} and --test {test} leave nothing for train; lower them")
    return check_fractions((round(1.0 - val - test, 12), val, test)), None


def split_dataset(
    path: str | Path,
    out: str | Path,
    *,
    task: str = "auto",
    fmt: str = "auto",
    fractions: Sequence[float] | str | None = None,
    val: float | None = None,
    test: float | None = None,
    group_by: str | None = None,
    folds: int | None = None,
    seed: int = 0,
    keep_test: bool = False,
    force: bool = False,
    test_fraction: float | None = None,
) -> SplitResult:
    """Split every image of the dataset at ``path`` and write manifests to the folder ``out``.

    Without ``folds``: ``fractions`` (train, val[, test]; test 0 = no test split; or text
    '0.7,0.15,0.15'), or ``val``/``test`` (train gets the rest; default 0.15 each) -> ``split.json``
    (see :func:`split_fractions`). With ``folds`` K: ``fold_k.json`` (train / val = part k / test) and
    ``folds.csv``; ``test`` first holds out an untouched test part. ``group_by``: a classification CSV
    column or a file-name regex (see ``group_keys``); a group never spans two parts. ``keep_test``: the
    on-disk test split stays the test split and the rest is split (train and val in the ratio of their
    fractions; by default val 0.15). ``force`` replaces manifests already in ``out``. Same ``seed`` ->
    same manifests. ``test_fraction``: the older name of ``test``.
    """
    if folds is not None and (isinstance(folds, bool) or int(folds) != folds or folds < 2):
        raise ConfigError(f"--folds {folds}: k-fold needs an integer K >= 2, e.g. --folds 5")
    if test_fraction is not None:
        if test is not None:
            raise ConfigError("pass test (test_fraction is its older name), not both")
        test = test_fraction
    (train, val, test), held_out = split_fractions(fractions, val, test, folds, keep_test)
    if folds is not None:
        if keep_test and held_out is not None:
            raise ConfigError("--keep-test keeps the on-disk test split; drop --test, or drop --keep-test")
        test = 0.0 if held_out is None else held_out
    out = Path(out).expanduser()
    _check_out(out, force)
    index = index_dataset(path, task, fmt, mask_classes=True)
    root = Path(path).expanduser()
    source = read_manifest(root).source if is_manifest(root) else root
    kind = index.dataset_kind
    if kind.reads_subfolders and source.is_dir() and out.resolve().is_relative_to(source.resolve()):
        raise DataError(
            f"--out {out}: inside the dataset folder {source}, where the {kind.title} reader would see "
            "it as data; choose a folder outside the dataset"
        )
    entries = index.entries
    table = kind.group_table(source, index.fmt) if group_by else None
    keys = group_keys(entries, group_by, table) if group_by else [str(i) for i in range(len(entries))]
    unit_of: dict[str, int] = {}
    members: list[list[int]] = []
    for i, key in enumerate(keys):
        if key not in unit_of:
            unit_of[key] = len(members)
            members.append([])
        members[unit_of[key]].append(i)
    labels = [Counter(label for i in group for label in image_labels(index, entries[i])) for group in members]
    sizes = [len(group) for group in members]
    names = [keys[group[0]] for group in members]

    pool = list(range(len(members)))
    parts: dict[str, list[int]] = {}
    if keep_test:
        pool, parts["test"] = _on_disk_test(index, members, names, path)
    if folds is None:
        # one pass over train/val/test keeps every class within one image of its target in each part
        weights = (train / (train + val), val / (train + val)) if keep_test else (train, val, test)
        _check_enough(len(pool), sum(w > 0 for w in weights), path, group_by, "splits")
        got = _assign(pool, labels, sizes, weights, seed)
        parts.update(train=got[0], val=got[1], **({"test": got[2]} if test > 0 and not keep_test else {}))
    else:
        if test > 0:  # the test part first, then the folds over the rest
            _check_enough(len(pool), 2, path, group_by, "parts (rest and test)")
            pool, parts["test"] = _assign(pool, labels, sizes, (1.0 - test, test), seed)
        _check_enough(len(pool), folds, path, group_by, "folds")
        got = _assign(pool, labels, sizes, [1.0 / folds] * folds, seed)
        parts = {**{f"fold_{k}": got[k] for k in range(folds)}, **parts}
    if "test" in parts:
        parts["test"] = parts.pop("test")  # last
    for name, units in parts.items():
        if not units:
            raise DataError(
                f"{path}: the {name} part would get no images ({len(entries)} images, {len(members)} "
                "groups); add images, raise its fraction or lower --folds"
            )
    images = {name: [i for u in units for i in members[u]] for name, units in parts.items()}
    result = _result(index, source, out, seed, folds, group_by, len(members), parts, images)
    result.paths = _write(index, source, out, result, images, keys if group_by else None)
    return result


def _on_disk_test(
    index: DatasetIndex, members: list[list[int]], names: list[str], path: str | Path
) -> tuple[list[int], list[int]]:
    pool, held = [], []
    for u, group in enumerate(members):
        in_test = {index.entries[i].split == "test" for i in group}
        if len(in_test) > 1:
            raise DataError(
                f"{path}: group '{names[u]}' has images in the on-disk test split and outside it; "
                "drop --keep-test to re-split everything, or move the group's files"
            )
        (held if in_test == {True} else pool).append(u)
    if not held:
        raise DataError(f"{path}: --keep-test, but the dataset has no on-disk test split; drop --keep-test")
    return pool, held


def _check_enough(n_units: int, n_parts: int, path: str | Path, group_by: str | None, what: str) -> None:
    if n_units < n_parts:
        unit = f"groups (--group-by {group_by})" if group_by else "images"
        raise DataError(
            f"{path}: {n_units} {unit} to share out, too few for {n_parts} {what}; "
            f"add images or ask for fewer {what}"
        )


def _result(
    index: DatasetIndex,
    source: Path,
    out: Path,
    seed: int,
    folds: int | None,
    group_by: str | None,
    n_groups: int,
    parts: dict[str, list[int]],
    images: dict[str, list[int]],
) -> SplitResult:
    counts = {
        name: Counter(label for i in chosen for label in image_labels(index, index.entries[i]))
        for name, chosen in images.items()
    }
    seen = {label for c in counts.values() for label in c}
    labels = [n for n in index.class_names if n in seen] + sorted(seen - set(index.class_names))
    return SplitResult(
        out=out,
        source=source,
        task=index.task,
        fmt=index.fmt,
        kind=index.kind,
        seed=seed,
        folds=folds,
        group_by=group_by,
        n_images=len(index.entries),
        n_groups=n_groups,
        labels=labels,
        parts=list(parts),
        images={name: len(chosen) for name, chosen in images.items()},
        groups={name: len(units) for name, units in parts.items()},
        counts={name: {label: counts[name][label] for label in labels} for name in parts},
    )


def _layouts(images: dict[str, list[int]], folds: int | None) -> dict[str, dict[str, list[int]]]:
    """Manifest name -> split -> sorted image indices: ``split``, or ``fold_k`` (train: the other folds)."""
    if folds is None:
        return {"split": {s: sorted(images[s]) for s in SPLITS if s in images}}
    test = {"test": sorted(images["test"])} if "test" in images else {}
    return {
        f"fold_{k}": {
            "train": sorted(i for j in range(folds) if j != k for i in images[f"fold_{j}"]),
            "val": sorted(images[f"fold_{k}"]),
            **test,
        }
        for k in range(folds)
    }


def _write(
    index: DatasetIndex,
    source: Path,
    out: Path,
    result: SplitResult,
    images: dict[str, list[int]],
    keys: list[str] | None,
) -> list[Path]:
    """Write the manifests (and CSVs); remove older manifests of ours that this run does not replace."""
    out.mkdir(parents=True, exist_ok=True)
    here = out.resolve()
    entries = index.entries
    folds = result.folds
    extra: dict[str, Any] = {"seed": result.seed, "group_by": result.group_by}
    written: list[Path] = []
    for name, layout in _layouts(images, folds).items():
        fold = {} if folds is None else {"folds": folds, "fold": int(name.removeprefix("fold_"))}
        splits = {s: [entries[i].path for i in chosen] for s, chosen in layout.items()}
        manifest = out / f"{name}.json"
        written.append(write_manifest(manifest, index.task, source, index.fmt, splits, **extra, **fold))
        parts = {s: [entries[i] for i in chosen] for s, chosen in layout.items()}
        table = index.dataset_kind.split_csv(index, parts, lambda path: _rel(path, here))
        if table is not None:  # the same split in the kind's own reader format
            written.append(_write_csv(out / f"{name}.csv", *table))
    if folds is not None:
        fold_of = {i: name.removeprefix("fold_") for name, chosen in images.items() for i in chosen}
        rows = [
            [_rel(e.path, here), fold_of[i], keys[i] if keys else ""]
            for i, e in enumerate(entries)
            if i in fold_of
        ]
        written.append(_write_csv(out / "folds.csv", ["path", "fold", "group"], rows))
    keep = {p.name for p in written}
    for old in out.iterdir():
        if OUTPUTS.fullmatch(old.name) and old.name not in keep and old.is_file():
            old.unlink()
    return written
