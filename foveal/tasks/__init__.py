"""Task registry: name -> Task class."""

from __future__ import annotations

from foveal.errors import check_choice
from foveal.tasks.base import Task


def task_names() -> list[str]:
    return ["classify"]


def get_task(name: str) -> type[Task]:
    """The Task class for ``name`` (imported lazily); unknown names suggest close matches."""
    check_choice("task", name, task_names())
    from foveal.tasks.classify import ClassifyTask

    return {"classify": ClassifyTask}[name]
