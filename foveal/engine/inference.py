"""Batched inference with a loaded model: metrics over labelled samples, predictions for files."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.data.imageio import is_image_file
from foveal.data.sample import Sample
from foveal.engine.loaders import make_loader
from foveal.errors import DataError
from foveal.tasks.base import Task


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors, and tensors inside lists/tuples/dicts, moved to ``device``; other values unchanged."""
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


@torch.inference_mode()
def run_model(
    task: Task,
    model: nn.Module,
    samples: Sequence[Sample],
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    keep: bool = True,
    **postprocess: Any,
) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Run ``model`` over ``samples`` (eval transform).

    Returns the concatenated ``task.step_outputs`` (when ``keep``; targets must be present) and one
    ``task.postprocess`` prediction per sample, in order.
    """
    target = pick_device(device)
    model = model.to(target).eval()
    kept: list[dict[str, torch.Tensor]] = []
    predictions: list[Any] = []
    for images, targets in make_loader(task, samples, "val", batch, workers):
        outputs = task.forward(model, images.to(target))
        if keep:
            kept.append(task.step_outputs(outputs, to_device(targets, target)))
        predictions.extend(task.postprocess(outputs, **postprocess))
    merged = {k: torch.cat([part[k] for part in kept]).cpu() for k in kept[0]} if kept else {}
    return merged, predictions


def expand_sources(sources: Sequence[str]) -> list[Path]:
    """Files, folders (recursively, images only) and glob patterns -> sorted unique image paths."""
    found: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and is_image_file(p))
        elif path.is_file():
            found.append(path)
        elif any(ch in source for ch in "*?["):
            found.extend(Path(p) for p in sorted(glob.glob(source, recursive=True)) if is_image_file(p))
        else:
            raise DataError(f"{source}: no such file or folder; check the path")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise DataError(f"no images found in {', '.join(sources)}; pass image files, folders or globs")
    return unique
