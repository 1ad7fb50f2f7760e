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
from foveal.engine.threads import budget_threads, processes_sharing
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

    task_cls = get_task(cfg.task)  # an unknown task: ConfigError with close matches
    if cfg.model is not None:
        task_cls.check_model(cfg.model)
    check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
    check_choice("scheduler", cfg.scheduler, SCHEDULERS)
    check_choice("--on-bad-image value", cfg.on_bad_image, ON_BAD_IMAGE)
    if cfg.aug != "auto":
        resolve_aug(cfg.aug)


def prepare_run(cfg: TrainConfig) -> tuple[Task, dict[str, list[Sample]], TrainConfig]:
    """The task (its meta complete), the readable samples per split and the config with the task's
    defaults resolved (``model``; ``aug auto`` measured on the data, ``foveal.engine.aug_probe``, with
    its evidence in ``aug_evidence``). A config read back from a run's config.yaml (``--resume``, the
    processes of a multi-process run) holds the resolved aug, so it is never probed twice."""
    check_names(cfg)
    budget_threads(cfg.threads, processes_sharing(cfg.devices, cfg.strategy, cfg.device))
    task_cls = get_task(cfg.task)
    if cfg.model is None:
        cfg = replace(cfg, model=task_cls.default_model(cfg.imgsz))
    splits, meta = task_cls.load_data(cfg)
    splits = {name: drop_unreadable(samples, cfg.on_bad_image) for name, samples in splits.items() if samples}
    task = task_cls(meta)
    if cfg.aug == "auto":
        from foveal.data.transforms import resolve_aug
        from foveal.engine.aug_probe import choose_aug

        aug, evidence = choose_aug(task, splits, cfg)
        log.info("--aug auto: %s", evidence["summary"])
        cfg = replace(cfg, aug=aug, aug_evidence=evidence)
        task = task_cls(replace(meta, aug=resolve_aug(aug)))
    return task, splits, cfg


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
