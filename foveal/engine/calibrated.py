"""The one place that applies a checkpoint's output temperature (``foveal calibrate``).

The temperature is attached to the model it calibrates as a forward hook calling ``Task.temper``, so
every consumer of that model (evaluation, prediction, explain, each member of a TTA/ensemble
``MergedModel``) sees tempered outputs exactly once, with the member's own temperature, and the
model's layers, names and weights stay as they are.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from foveal.tasks.base import Task


class Temper:
    """The forward hook: eval-mode outputs through ``task.temper`` (a class, not a closure, so a
    tempered model pickles: the processes of a multi-process pass load it from a file)."""

    def __init__(self, task: Task, temperature: float) -> None:
        self.task, self.temperature = task, temperature

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        return output if module.training else self.task.temper(output, self.temperature)


def temper_model(task: Task, model: nn.Module, temperature: float | None = None) -> RemovableHandle | None:
    """Make ``model``'s eval-mode outputs tempered by ``temperature`` (default: the task meta's);
    returns the hook handle (``handle.remove()`` restores raw outputs), None when T is 1."""
    temperature = float(task.meta.temperature if temperature is None else temperature)
    if temperature == 1.0:
        return None
    return model.register_forward_hook(Temper(task, temperature))
