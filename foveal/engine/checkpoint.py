"""Load foveal checkpoints safely (``weights_only=True``) into a ready-to-predict task and model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.engine.calibrated import temper_model
from foveal.errors import CheckpointError
from foveal.tasks import get_task, task_names
from foveal.tasks.base import Task


@dataclass
class Loaded:
    """A task with its model in eval mode, and the checkpoint's config values."""

    task: Task
    model: nn.Module
    config: dict[str, Any]
    path: Path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict; errors name the file and say what to pass instead."""
    path = Path(path).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.ckpt"
        if best.is_file():
            path = best
        else:
            raise CheckpointError(f"{path}: a folder without checkpoints/best.ckpt; pass a .ckpt file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass runs/<task>/<name>/checkpoints/best.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or damaged files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}); "
            "pass a best.ckpt or last.ckpt written by foveal"
        ) from err
    if not isinstance(checkpoint, dict) or "foveal" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path}: not a foveal checkpoint (no task metadata); pass a best.ckpt or "
            "last.ckpt from a foveal run, or use it as --pretrained weights"
        )
    checkpoint["path"] = str(path)
    return checkpoint


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to predict with (the EMA weights when the run used EMA), without prefixes."""
    prefix = "ema.module." if checkpoint["foveal"].get("weights") == "ema" else "model."
    return {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def task_meta(checkpoint: dict[str, Any]) -> Any:
    """The checkpoint's typed task meta (``Task.Meta``); one-line CheckpointError when it does not fit."""
    meta = checkpoint["foveal"]["meta"]
    return get_task(meta["task"]).Meta.from_dict(meta, source=checkpoint.get("path", "checkpoint"))


def load(
    path: str | Path,
    task: str | None = None,
    device: str | torch.device = "cpu",
    temper: bool = True,
    threads: int | None = None,
) -> Loaded:
    """Load a checkpoint for prediction; ``task`` (if given) must match the checkpoint's task. The
    model's outputs carry the checkpoint's calibrated temperature unless ``temper`` is False (raw
    outputs, e.g. to fit a temperature). Files written by ``foveal export`` (``.onnx``, ``.ts``) load
    into the same ``Loaded``, with a model that runs them (``foveal.engine.exported``); ``threads``
    sets their runtime's CPU threads."""
    from foveal.engine.exported import EXPORT_SUFFIXES

    if Path(path).suffix.lower() in EXPORT_SUFFIXES:
        from foveal.engine.exported import open_exported

        task_obj, model, config = open_exported(path, task=task, threads=threads)
        if temper:
            temper_model(task_obj, model)
        return Loaded(task_obj, model, config, Path(path).expanduser())
    checkpoint = read_checkpoint(path)
    meta = checkpoint["foveal"]["meta"]
    found = meta.get("task")
    if found not in task_names():
        raise CheckpointError(
            f"{checkpoint['path']}: checkpoint of unknown task '{found}'; it needs a newer foveal"
        )
    if task is not None and task != found:
        raise CheckpointError(
            f"{checkpoint['path']}: this is a '{found}' checkpoint, not '{task}'; "
            f"use --task {found} or a {task} checkpoint"
        )
    task_obj = get_task(found)(task_meta(checkpoint))
    model = task_obj.build_model()
    model.load_state_dict(model_state(checkpoint))
    model.eval().to(device)
    if temper:
        temper_model(task_obj, model)
    return Loaded(task_obj, model, checkpoint["foveal"].get("config", {}), Path(checkpoint["path"]))
