"""What a training run and the learning-rate range test both do first: the config from defaults, file
and options; the names checked; the data read; the Lightning module built (``foveal.engine.fit`` and
``foveal.engine.lr_find``)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from foveal.config import TrainConfig, load_yaml, make_config
from foveal.data.checks import drop_unreadable
from foveal.data.sample import Sample
from foveal.errors import check_choice
from foveal.tasks import get_task
from foveal.tasks.base import Task

log = logging.getLogger("foveal")


def resolve_config(config: str | Path | None = None, **options: Any) -> TrainConfig:
    """Defaults, then the YAML file, then explicit options (None values ignored)."""
    values = load_yaml(config) if config else {}
    values.update({k: v for k, v in options.items() if v is not None})
    return make_config(**values)


def check_names(cfg: TrainConfig) -> None:
    """Fail fast, before any data is read, on unknown model/optimizer/scheduler/augmentation names."""
    from foveal.data.checks import ON_BAD_IMAGE
    from foveal.data.transforms import resolve_aug
    from foveal.engine.optim import OPTIMIZERS, SCHEDULERS
    from foveal.models.registry import check_model_name

    if cfg.model is not None:
        check_model_name(cfg.model, cfg.task)
    check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
    check_choice("scheduler", cfg.scheduler, SCHEDULERS)
    check_choice("--on-bad-image value", cfg.on_bad_image, ON_BAD_IMAGE)
    resolve_aug(cfg.aug)


def prepare_run(cfg: TrainConfig) -> tuple[Task, dict[str, list[Sample]], TrainConfig]:
    check_names(cfg)
    task_cls = get_task(cfg.task)
    splits, meta = task_cls.load_data(cfg)
    if cfg.model is None:
        from foveal.models.registry import default_model

        cfg = replace(cfg, model=default_model(cfg.task, cfg.imgsz))
    meta["model"] = cfg.model
    meta["model_options"] = dict(cfg.model_options)
    splits = {name: drop_unreadable(samples, cfg.on_bad_image) for name, samples in splits.items() if samples}
    return task_cls(meta), splits, cfg


def build_module(task: Task, cfg: TrainConfig):
    import torch

    from foveal.engine.module import TaskModule

    model = task.build_model()
    if cfg.pretrained:
        from foveal.models.weights import load_pretrained

        report = load_pretrained(model, cfg.pretrained, cfg.model)
        log.info(
            "pretrained %s: %d tensors loaded, %d re-initialised (%s)",
            cfg.pretrained,
            len(report["loaded"]),
            len(report["skipped"]),
            ", ".join(report["skipped"][:4]),
        )
    if cfg.amp and not torch.cuda.is_available():
        log.warning("--amp ignored: mixed precision is used on CUDA only")
    return TaskModule(task, cfg, model)
