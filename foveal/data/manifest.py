"""Split manifests: a JSON file that lists which files of a dataset go to which split.

``foveal data split`` writes them; every reader (classification, segmentation, detection) accepts one
as ``--data``: it reads the source dataset with its own reader, then regroups the samples by the
manifest. The form::

    {"foveal_manifest": 1, "task": "classify", "source": "../shapes", "format": "imagefolder",
     "splits": {"train": ["circle/0001.png", ...], "val": [...], "test": [...]}, ...}

``source`` is relative to the manifest's folder (or absolute); file paths are relative to ``source``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write_text
from foveal.data.sample import Sample
from foveal.errors import DataError

MANIFEST_KEY = "foveal_manifest"
VERSION = 1


@dataclass
class Manifest:
    """A parsed manifest: ``source`` resolved to an absolute dataset path; ``splits`` of relative paths."""

    path: Path
    task: str
    source: Path
    fmt: str
    splits: dict[str, list[str]]
    extra: dict[str, Any] = field(default_factory=dict)


def is_manifest(path: str | Path) -> bool:
    """True for a JSON file whose top-level object carries the manifest key."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(200)
    return MANIFEST_KEY.encode() in head


def read_manifest(path: str | Path) -> Manifest:
    """Parse and check a manifest; DataError naming the file and the problem."""
    path = Path(path).expanduser()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable split manifest ({err}); re-run foveal data split") from err
    if not isinstance(doc, dict) or doc.get(MANIFEST_KEY) != VERSION:
        raise DataError(f"{path}: not a foveal split manifest (version {VERSION}); re-run foveal data split")
    for key in ("task", "source", "format", "splits"):
        if key not in doc:
            raise DataError(f"{path}: the manifest has no '{key}'; re-run foveal data split")
    splits = doc["splits"]
    if not isinstance(splits, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in splits.values()
    ):
        raise DataError(f"{path}: 'splits' must map split names to lists of file paths")
    source = Path(doc["source"]).expanduser()
    if not source.is_absolute():
        source = path.parent / source
    if not source.exists():
        raise DataError(
            f"{path}: its source dataset {source} does not exist; move it back or re-run foveal data split"
        )
    extra = {k: v for k, v in doc.items() if k not in (MANIFEST_KEY, "task", "source", "format", "splits")}
    return Manifest(path, str(doc["task"]), source, str(doc["format"]), splits, extra)


def write_manifest(
    out: str | Path,
    task: str,
    source: str | Path,
    fmt: str,
    splits: dict[str, list[str]],
    **extra: Any,
) -> Path:
    """Write a manifest atomically; ``splits`` hold image paths (absolute or relative to the cwd)."""
    out = Path(out)
    source_abs = Path(source).expanduser().resolve()
    base = source_abs if source_abs.is_dir() else source_abs.parent
    rel_source = os.path.relpath(source_abs, out.resolve().parent)
    doc = {
        MANIFEST_KEY: VERSION,
        "task": task,
        "source": rel_source,
        "format": fmt,
        **extra,
        "splits": {
            name: [os.path.relpath(Path(p).resolve(), base).replace(os.sep, "/") for p in paths]
            for name, paths in splits.items()
        },
    }
    return atomic_write_text(out, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def _key(path: str | Path) -> str:
    return os.path.normcase(str(Path(path).resolve()))


def assign(manifest: Manifest, samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Regroup ``samples`` (all splits of the source dataset) by the manifest; files the manifest does
    not list are left out. DataError naming the first listed file the dataset lacks."""
    by_path = {_key(s.path): s for s in samples}
    base = manifest.source if manifest.source.is_dir() else manifest.source.parent
    out: dict[str, list[Sample]] = {}
    for split, paths in manifest.splits.items():
        chosen = []
        for p in paths:
            sample = by_path.get(_key(base / p))
            if sample is None:
                raise DataError(
                    f"{manifest.path}: lists '{p}' ({split}), which the dataset at {manifest.source} "
                    "does not have (moved or deleted?); re-run foveal data split"
                )
            chosen.append(sample)
        out[split] = chosen
    return out


def check_task(manifest: Manifest, task: str) -> None:
    """DataError when a manifest written for another task is passed to ``task``'s reader."""
    if manifest.task != task:
        raise DataError(
            f"{manifest.path}: a split manifest for task '{manifest.task}', read as '{task}'; "
            f"pass --task {manifest.task}"
        )
