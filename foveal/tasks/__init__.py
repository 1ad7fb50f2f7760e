"""Task registry: name -> Task class."""

from __future__ import annotations

from foveal.errors import check_choice
from foveal.tasks.base import Task

TASK_CLASSES = {
    "classify": ("foveal.tasks.classify", "ClassifyTask"),
    "segment": ("foveal.tasks.segment", "SegmentTask"),
    "detect": ("foveal.tasks.detect", "DetectTask"),
    "instance": ("foveal.tasks.detect", "InstanceTask"),
    "pose": ("foveal.tasks.detect", "PoseTask"),
}


def task_names() -> list[str]:
    return list(TASK_CLASSES)


def get_task(name: str) -> type[Task]:
    """The Task class for ``name`` (imported lazily); unknown names suggest close matches."""
    import importlib

    check_choice("task", name, task_names())
    module, cls = TASK_CLASSES[name]
    return getattr(importlib.import_module(module), cls)
