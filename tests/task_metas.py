"""Complete task metas for tests that build a Task without training one."""

from __future__ import annotations

from typing import Any

BASE: dict[str, dict[str, Any]] = {
    "classify": {"model": "smallresnet", "class_names": ["a", "b"], "kind": "multiclass"},
    "segment": {"model": "unet", "class_names": ["bg", "x"], "kind": "binary", "ignore_index": 255,
                "spec": {"class_names": ["bg", "x"], "ignore_index": 255}},
    "detect": {"model": "centernet", "class_names": ["a", "b"], "category_ids": [1, 2]},
    "instance": {"model": "maskrcnn_resnet18", "class_names": ["a"], "category_ids": [1]},
    "pose": {"model": "centernet", "class_names": ["p"], "category_ids": [1],
             "keypoint_names": ["l", "r", "c"],
             "skeleton": [[0, 1]], "flip_idx": [1, 0, 2], "kpt_sigmas": [0.05] * 3},
    "regress": {"model": "smallresnet", "target_names": ["size"], "target_mean": [0.0], "target_std": [1.0]},
}  # fmt: skip


def meta_for(task: str, **values: Any) -> dict[str, Any]:
    """A plain meta of ``task`` (as a checkpoint stores it), with ``values`` overriding the defaults."""
    return {"task": task, "imgsz": 32, **BASE[task], **values}
