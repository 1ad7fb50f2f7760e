"""The dataset kinds registry: names, aliases, layout detection, what each kind declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from foveal.data.index import index_dataset
from foveal.data.kinds import (
    ALIASES,
    KINDS,
    TASKS,
    detect_kind,
    get_kind,
    kind_of_annotation,
    resolve_task,
    task_help,
)
from foveal.data.synth_writers import write_synthetic
from foveal.errors import ConfigError, DataError


def test_registry_names_and_help() -> None:
    assert list(KINDS) == ["classify", "segment", "detect", "regress"]
    assert TASKS == ("auto", "classify", "segment", "detect", "regress")
    assert task_help() == "classify|segment|detect|regress|auto (default auto)"
    assert {k.annotation for k in KINDS.values()} == {"labels", "mask", "objects", "values"}
    for kind in KINDS.values():
        assert get_kind(kind.name) is kind and kind_of_annotation(kind.annotation) is kind
    assert [k.name for k in KINDS.values() if k.has_masks] == ["segment"]
    assert [k.name for k in KINDS.values() if k.has_boxes] == ["detect"]


def test_aliases_and_unknown_names() -> None:
    assert resolve_task("pose") == resolve_task("instance") == "detect" == get_kind("pose").name
    assert resolve_task("auto") == "auto"
    with pytest.raises(ConfigError, match="unknown task 'nope'; choose one of: auto, classify"):
        resolve_task("nope")
    with pytest.raises(ConfigError, match="unknown dataset kind"):
        get_kind("auto")


def test_model_tasks_agree_with_the_aliases() -> None:
    from foveal.tasks import get_task

    for task, kind in ALIASES.items():
        assert get_task(task).dataset_kind == kind
    for name in ("classify", "segment", "detect"):
        assert get_task(name).dataset_kind == name


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [("imagefolder", "classify"), ("csv", "classify"), ("masks", "segment"), ("yolo-pose", "detect"),
     ("coco", "detect"), ("regress", "regress")],
)  # fmt: skip
def test_detect_kind_and_alias_read(tmp_path: Path, fmt: str, kind: str) -> None:
    root = write_synthetic(tmp_path / fmt, n=6, imgsz=32, seed=1, fmt=fmt)
    assert detect_kind(root).name == kind
    if fmt == "yolo-pose":
        assert index_dataset(root, "pose").task == "detect"


def test_a_manifest_of_an_unknown_task_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    manifest = tmp_path / "split.json"
    doc = '{"foveal_manifest": 1, "task": "bogus", "source": "data", "format": "x", "splits": {}}'
    manifest.write_text(doc)
    with pytest.raises(DataError, match="manifest for task 'bogus', not one of the dataset kinds"):
        detect_kind(manifest)
