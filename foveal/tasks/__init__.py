"""The task registry: the one list of tasks, from which every other list, help text and default derives.

A task is registered here by name with the module and class that implement it (imported lazily, so
``import foveal`` and ``--help`` stay fast) and a one-line description. Adding a task is one entry here
plus its module (see the README's "Adding a task").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from foveal.config import DEFAULT_TASK
from foveal.errors import check_choice

if TYPE_CHECKING:
    from foveal.tasks.base import Task


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: ``target`` is 'module:Class'."""

    name: str
    target: str
    description: str


TASKS: dict[str, TaskEntry] = {
    entry.name: entry
    for entry in (
        TaskEntry("classify", "foveal.tasks.classify:ClassifyTask", "image classification"),
        TaskEntry("segment", "foveal.tasks.segment:SegmentTask", "semantic segmentation"),
        TaskEntry("detect", "foveal.tasks.detection.detect:DetectTask", "object detection (boxes)"),
        TaskEntry("instance", "foveal.tasks.detection.instance:InstanceTask", "instance segmentation"),
        TaskEntry("pose", "foveal.tasks.detection.pose:PoseTask", "keypoints (pose)"),
        TaskEntry("regress", "foveal.tasks.regress:RegressTask", "image regression (numeric targets)"),
    )
}


def task_names() -> list[str]:
    """Every registered task name, in registry order."""
    return list(TASKS)


def task_help() -> str:
    """'classify (default) | segment | ...' for ``--task`` help texts."""
    return " | ".join(f"{n} (default)" if n == DEFAULT_TASK else n for n in TASKS)


def check_task(name: str) -> str:
    """``name`` if it is a registered task, else a ConfigError with close matches."""
    return check_choice("task", name, task_names())


def get_task(name: str) -> type[Task]:
    """The Task class for ``name`` (imported lazily); unknown names suggest close matches."""
    module, cls = TASKS[check_task(name)].target.split(":")
    return getattr(importlib.import_module(module), cls)


def list_models(task: str | None = None, pattern: str | None = None) -> list[tuple[str, str, str]]:
    """The models ``task`` can train (its ``model_family``'s, as (name, family, description) rows; all
    when None), ``pattern`` as in ``foveal.models.registry.list_models``."""
    from foveal.models.registry import list_models as family_models

    return family_models(None if task is None else get_task(task).model_family, pattern)
