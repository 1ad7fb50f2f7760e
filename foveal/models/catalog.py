"""The table of model families, own models and default models that the model providers write to.

A model *family* is the string a model registers under (``classify``, ``segment``, ``detect``,
``instance``, ``pose``); the task of the same name builds its models from it. The families are not
listed anywhere: they are those of the prefix providers (:data:`PREFIX_FAMILIES`: which families
``tv:``, ``timm:`` and ``smp:`` names serve) and those own models are registered under.

Providers (``foveal.models.small``, ``segmentation``, ``centernet``, ``detection``) import this module
to :func:`register` their builders and :func:`set_defaults`; ``foveal.models.registry`` reads it to
check, list and build names, and imports the providers (on first use), never the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from foveal.errors import ConfigError, check_choice

Builder = Callable[..., nn.Module]

# Families each prefix provider serves: tv: torchvision (classification, segmentation, detection),
# timm: classifiers, smp: segmentation_models_pytorch.
PREFIX_FAMILIES: dict[str, tuple[str, ...]] = {
    "tv": ("classify", "segment", "detect", "instance", "pose"),
    "timm": ("classify",),
    "smp": ("segment",),
}


@dataclass(frozen=True)
class Entry:
    """An own model: its builder ``(num_classes, **kwargs) -> nn.Module``, family and one-line description."""

    builder: Builder
    family: str
    description: str


OWN: dict[tuple[str, str], Entry] = {}
"""Own models by (family, name)."""

DEFAULTS: dict[str, list[tuple[int | None, str]]] = {
    "classify": [(96, "smallresnet"), (None, "tv:resnet18")],
}
"""Default models per family: (largest image size it suits, or None for any size, model name), in order."""


def families() -> list[str]:
    """The model families: the prefix providers' in :data:`PREFIX_FAMILIES` order, then any other family
    an own model is registered under (in registration order)."""
    found = dict.fromkeys(family for served in PREFIX_FAMILIES.values() for family in served)
    found.update(dict.fromkeys(family for family, _ in OWN))
    return list(found)


def register(name: str, task: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(num_classes, **kwargs) -> nn.Module`` as own model ``name`` of the
    model family ``task`` (e.g. ``classify``; a new family comes into being with its first model).

    Raises ValueError if another builder already has that name in that family."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", task):
        raise ConfigError(f"model family {task!r}: use a lower-case word such as 'classify' or 'segment'")
    if ":" in name:
        raise ValueError(f"own model names take no prefix: {name!r}")

    def wrap(builder: Builder) -> Builder:
        if (task, name) in OWN and OWN[(task, name)].builder is not builder:
            raise ValueError(f"model {name!r} is already registered for task {task!r}")
        OWN[(task, name)] = Entry(builder, task, description)
        return builder

    return wrap


def set_defaults(task: str, by_size: list[tuple[int | None, str]]) -> None:
    """Set the default models of family ``task``: (largest image size or None for any, model name),
    in order."""
    check_choice("task", task, families())
    DEFAULTS[task] = list(by_size)
