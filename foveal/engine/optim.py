"""Optimizers and learning-rate schedules for the Lightning engine.

Schedules step after every optimizer step (``interval: "step"``); their state dicts hold only numbers,
so Lightning checkpoints with them load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from foveal.errors import ConfigError, check_choice

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "radam")
SCHEDULERS = ("none", "step", "cosine", "onecycle", "cyclic")


def param_groups(params: Iterable[Any], weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights with ``weight_decay`` and biases/norm parameters (tensors with ndim <= 1) without.

    ``params``: parameters (``model.parameters()``) or a module; ready-made group dicts pass unchanged.
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    params = list(params)
    if params and isinstance(params[0], dict):
        return params
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [
        g
        for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
        if g["params"]
    ]


def build_optimizer(
    params: Iterable[Any],
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    lookahead: bool = False,
) -> torch.optim.Optimizer:
    """A torch optimizer over ``params`` without weight decay on biases and norm parameters.

    ``momentum`` applies to sgd and rmsprop; ``nesterov`` to sgd (needs momentum > 0). ``lookahead``
    wraps the optimizer in timm's Lookahead (k=6, alpha=0.5), which works with torch LR schedulers
    and Lightning checkpoints.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if lr <= 0 or weight_decay < 0 or momentum < 0:
        raise ConfigError(
            f"need lr > 0, weight_decay >= 0, momentum >= 0; got lr={lr}, "
            f"weight_decay={weight_decay}, momentum={momentum}"
        )
    if nesterov and (name != "sgd" or momentum <= 0):
        raise ConfigError(
            f"nesterov needs --optimizer sgd with momentum > 0 (got {name}, momentum={momentum})"
        )
    groups = param_groups(params, weight_decay)
    if name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    elif name == "rmsprop":
        optimizer = torch.optim.RMSprop(groups, lr=lr, momentum=momentum)
    else:
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}[name]
        optimizer = cls(groups, lr=lr)
    if lookahead:
        from timm.optim import Lookahead

        optimizer = Lookahead(optimizer)
    return optimizer


class LrFactor:
    """Picklable lr multiplier per optimizer step ``s`` (0-based) for ``LambdaLR``.

    Linear warmup over ``warmup`` steps from 1/(warmup+1) up to the schedule's start value, then:
    ``none`` 1; ``step`` ``gamma ** (s // step)`` (decay at epoch boundaries counted from the start);
    ``cosine`` from 1 to ``min_ratio`` over the remaining steps; ``cyclic`` a triangle between
    ``min_ratio`` and ``peak`` with half-period ``step`` steps (starting low, or at the peak after a warmup).
    """

    def __init__(
        self,
        kind: str,
        total: int,
        warmup: int = 0,
        step: int = 1,
        gamma: float = 0.1,
        min_ratio: float = 0.01,
        peak: float = 1.0,
    ) -> None:
        self.kind, self.total, self.warmup, self.step = kind, total, warmup, step
        self.gamma, self.min_ratio, self.peak = gamma, min_ratio, peak

    def schedule(self, s: int) -> float:
        t = max(0, s - self.warmup)
        if self.kind == "step":
            return self.gamma ** (s // self.step)
        if self.kind == "cosine":
            progress = min(1.0, t / max(1, self.total - self.warmup))
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "cyclic":
            phase = (t + (self.step if self.warmup else 0)) / self.step
            triangle = 1 - abs(phase % 2 - 1)
            return self.min_ratio + (self.peak - self.min_ratio) * triangle
        return 1.0

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return (s + 1) / (self.warmup + 1) * self.schedule(self.warmup)
        return self.schedule(s)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    step_size: int | None = None,
    gamma: float = 0.1,
    min_lr_ratio: float = 0.01,
    max_lr: float | None = None,
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config ``{"scheduler": ..., "interval": "step", "frequency": 1}``, or None
    for a constant lr (``none`` without warmup).

    Schedules over ``epochs * steps_per_epoch`` optimizer steps, after ``warmup_epochs`` of linear warmup
    from ~0 to the base lr (the optimizer's lr):
    - ``step``: lr * gamma every ``step_size`` epochs (default: a third of the epochs);
    - ``cosine``: cosine from lr to lr * min_lr_ratio;
    - ``onecycle``: torch ``OneCycleLR`` up to ``max_lr`` (default lr) over the warmup (default 30% of the
      steps), cosine down to max_lr * min_lr_ratio; momentum/betas cycle too;
    - ``cyclic``: triangle between lr * min_lr_ratio and ``max_lr`` (default lr), half a cycle every
      ``step_size`` epochs (default: a quarter of the epochs), as torch ``CyclicLR`` (triangular mode,
      no momentum cycling, so it works with Adam).
    """
    check_choice("scheduler", name, SCHEDULERS)
    total = epochs * steps_per_epoch
    if epochs < 1 or steps_per_epoch < 1 or not 0 <= warmup_epochs < epochs:
        raise ConfigError(
            f"need epochs >= 1, steps_per_epoch >= 1 and 0 <= warmup_epochs < epochs; got "
            f"epochs={epochs}, steps_per_epoch={steps_per_epoch}, warmup_epochs={warmup_epochs}"
        )
    if (step_size is not None and step_size < 1) or not 0 < gamma <= 1 or not 0 <= min_lr_ratio <= 1:
        raise ConfigError(
            f"need step_size >= 1, 0 < gamma <= 1, 0 <= min_lr_ratio <= 1; got "
            f"step_size={step_size}, gamma={gamma}, min_lr_ratio={min_lr_ratio}"
        )
    if max_lr is not None and max_lr <= 0:
        raise ConfigError(f"max_lr must be > 0, got {max_lr}")
    warmup = round(warmup_epochs * steps_per_epoch)
    base_lr = optimizer.param_groups[0]["lr"]
    if name == "none" and warmup == 0:
        return None
    if name == "onecycle":
        cycles = "betas" in optimizer.defaults or optimizer.defaults.get("momentum", 0) > 0
        scheduler: torch.optim.lr_scheduler.LRScheduler = OneCycleLR(
            optimizer,
            max_lr=max_lr or base_lr,
            total_steps=total,
            pct_start=warmup / total if warmup else 0.3,
            div_factor=25.0,
            final_div_factor=1 / (25.0 * max(min_lr_ratio, 1e-6)),
            cycle_momentum=cycles,
        )
    else:
        default_epochs = max(1, epochs // (3 if name == "step" else 4))
        factor = LrFactor(
            name,
            total,
            warmup,
            step=(step_size or default_epochs) * steps_per_epoch,
            gamma=gamma,
            min_ratio=min_lr_ratio,
            peak=(max_lr or base_lr) / base_lr,
        )
        scheduler = LambdaLR(optimizer, factor)
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}
