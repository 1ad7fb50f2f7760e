"""Stream an unlabelled pool through a loaded model: per-image uncertainty scores and embeddings.

Batches go through the model one at a time and only (N,) scores and, when asked, (N, D) float32
embeddings are kept (N images, D the embedding width, e.g. 256 for smallresnet), never the outputs.
The embedding of an image is the input of the model's ``.head`` (the layer before the outputs;
models without one: the input of their last ``nn.Linear``), each tensor of it averaged over its
spatial dimensions and concatenated (segmentation: decoder features; detection: the feature maps
the heads read). MC-dropout strategies run T passes of every batch with the dropout layers in train
mode and everything else (batch norm) in eval mode, keeping running means over the passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from foveal.analysis.active.strategies import MC_DROPOUT, MC_SCORES, SCORES, entropy, reduce_units
from foveal.data.sample import Sample
from foveal.engine.inference import pick_device
from foveal.engine.loaders import make_loader
from foveal.errors import ConfigError
from foveal.tasks.base import Task


@dataclass
class PoolScores:
    """(N,) uncertainty ``scores`` (None when not asked) and (N, D) ``embeddings`` (None when not asked)."""

    scores: np.ndarray | None
    embeddings: np.ndarray | None


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout modules that drop something (p > 0)."""
    return [m for m in model.modules() if isinstance(m, _DropoutNd) and m.p > 0]


def check_dropout(task: Task, model: nn.Module, strategy: str) -> None:
    """ConfigError when MC-dropout ``strategy`` cannot run: a task whose units change between passes,
    or a model without a dropout layer."""
    if not task.active_fixed_units:
        raise task.unsupported(f"--strategy {strategy} (MC dropout: the boxes differ between passes)")
    if not dropout_layers(model):
        raise ConfigError(
            f"--strategy {strategy} needs dropout but the {task.meta.model} model has no dropout layer "
            "with p > 0; train a model with dropout (e.g. --model smallresnet, or --model-options "
            "'{dropout: 0.3}' for lenet) or use --strategy entropy"
        )


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode with its dropout layers in train mode, restored to eval on exit."""
    model.eval()
    for layer in dropout_layers(model):
        layer.train()
    try:
        yield
    finally:
        model.eval()


def embedding_layer(model: nn.Module) -> nn.Module:
    """The module whose input is the embedding: ``model.head``, else the last ``nn.Linear``."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"{type(model).__name__} has neither a .head nor a linear layer to take embeddings from; "
            "use an uncertainty strategy"
        )
    return linears[-1]


def pooled(value: Any) -> Tensor:
    """(B, D) embedding of a layer input: a tensor, or the tensors of a dict/list/tuple, each
    averaged over its dimensions after the second and concatenated along the features."""
    if isinstance(value, dict):
        value = list(value.values())
    parts = value if isinstance(value, list | tuple) else [value]
    tensors = [
        p.float().flatten(2).mean(dim=2) if p.ndim > 2 else p.float() for p in parts if torch.is_tensor(p)
    ]
    return torch.cat(tensors, dim=1)


def mc_unit_scores(task: Task, model: nn.Module, images: Tensor, strategy: str, passes: int) -> list[Tensor]:
    """Per image of ``images``, (M,) MC-dropout ``strategy`` scores over ``passes`` stochastic passes,
    from running means of the unit probabilities and of their entropies (one pass in memory)."""
    mean_probs: list[Tensor] = []
    mean_entropy: list[Tensor] = []
    with mc_dropout(model):
        for t in range(passes):
            probs = task.active_probabilities(task.forward(model, images))
            if t == 0:
                mean_probs = [p / passes for p in probs]
                mean_entropy = [entropy(p) / passes for p in probs]
                continue
            for i, p in enumerate(probs):
                mean_probs[i] += p / passes
                mean_entropy[i] += entropy(p) / passes
    return [MC_SCORES[strategy](p, h) for p, h in zip(mean_probs, mean_entropy, strict=True)]


@torch.inference_mode()
def score_pool(
    task: Task,
    model: nn.Module,
    samples: Sequence[Sample],
    *,
    strategy: str | None,
    embeddings: bool = False,
    passes: int = 10,
    reduce: str = "mean",
    topk: int = 100,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    seed: int = 0,
) -> PoolScores:
    """Stream ``samples`` through ``model``: per-image scores of uncertainty ``strategy`` (None: no
    scores) reduced over units by ``reduce`` ('mean' | 'topk' mean of ``topk`` units), and the
    embeddings when ``embeddings``. MC-dropout strategies run ``passes`` stochastic passes, their
    dropout masks drawn from ``seed`` (the caller's random state is left as it was)."""
    target = pick_device(device)
    model = model.to(target).eval()
    mc = strategy in MC_DROPOUT
    if mc:
        check_dropout(task, model, strategy)
        if passes < 2:
            raise ConfigError(f"--passes {passes}: MC dropout needs at least 2 stochastic passes, e.g. 10")
    captured: list[Tensor] = []
    hook = None
    if embeddings:
        hook = embedding_layer(model).register_forward_pre_hook(
            lambda _m, args: captured.append(pooled(args[0]).cpu())
        )
    scores: list[float] = []
    kept: list[Tensor] = []
    try:
        with torch.random.fork_rng():  # the MC-dropout masks from seed, the caller's state kept
            torch.manual_seed(seed)
            for images, _targets in make_loader(task, samples, "val", batch, workers):
                images = images.to(target)
                outputs = None
                if embeddings:
                    captured.clear()
                    outputs = task.forward(model, images)
                    kept.append(captured[-1])
                if mc:
                    units = mc_unit_scores(task, model, images, strategy, passes)
                elif strategy is not None:
                    outputs = task.forward(model, images) if outputs is None else outputs
                    units = [SCORES[strategy](p) for p in task.active_probabilities(outputs)]
                if strategy is not None:
                    scores += [reduce_units(u, reduce, topk) for u in units]
    finally:
        if hook is not None:
            hook.remove()
    return PoolScores(
        np.asarray(scores) if strategy is not None else None,
        torch.cat(kept).numpy() if embeddings else None,
    )
