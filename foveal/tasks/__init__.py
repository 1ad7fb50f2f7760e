"""Task registry: name -> Task class."""

from __future__ import annotations

from foveal.errors import check_choice
from foveal.tasks.base import Task


def task_names() -> list[str]:
    return ["classify", "segment"]


def get_task(name: str) -> type[Task]:
    """The Task class for ``name`` (imported lazily); unknown names suggest close matches."""
    check_choice("task", name, task_names())
    if name == "segment":
        from foveal.tasks.segment import SegmentTask

        return SegmentTask
    from foveal.tasks.classify import ClassifyTask

    return ClassifyTask
