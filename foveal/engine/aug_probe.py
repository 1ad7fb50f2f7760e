"""``--aug auto``: measure which flips of the task's default preset keep the labels, before training.

A probe model (the run's model, randomly initialised) trains without augmentation on at most
``PROBE_TRAIN`` training images for ``PROBE_STEPS`` steps of ``PROBE_BATCH`` images (pre-decoded, about a
third of the time the run needs for as many images); a run that sees fewer than ``RUN_SHARE`` times as
many training images in all (epochs x training images) is too short to pay for it and is not probed. It
then predicts at most ``PROBE_VAL`` validation images (a held-out quarter of the probe's training images
when there is no validation split) as they are and flipped, the flipped predictions mapped back to the
original frame (``MergedModel`` with the one view) and scored against the original targets. A flip that
changes labels (an arrow pointing left is one pointing right) makes the monitored metric collapse; one
that keeps them leaves it where it was.

Decision: with the metric's drop under the flip ``drop = plain - flipped`` (``mode`` max; reversed for
min) and what the probe learned ``signal = plain - untrained`` (the same model before training), the flip
is turned off when ``drop > margin = max(1.645 SE, 0.25 signal)``: significant (one-sided 5%, with the
jackknife standard error of the paired drop over groups of images) and relevant (a quarter of what the
probe learned: a flip that swaps two of four classes costs about half). When the probe learned nothing
significant (``signal <= 1.645 SE``) or the data are too few, the preset is kept and the evidence says
why. Rotation (``shift_scale_rotate``) is not probed: no task's default preset turns it on, and the
options other than the flips are kept as the preset sets them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from foveal.config import TrainConfig
from foveal.data.sample import Sample
from foveal.data.transforms import resolve_aug
from foveal.engine.inference import pick_device, to_device
from foveal.engine.merge import MergedModel, View
from foveal.errors import ConfigError
from foveal.tasks.base import Task

log = logging.getLogger("foveal")

CANDIDATES = {"hflip": View(hflip=True), "vflip": View(vflip=True)}
PROBE_TRAIN = 512  # training images the probe sees at most
PROBE_VAL = 256  # images it is scored on at most
PROBE_STEPS = 160
RUN_SHARE = 4  # the run must see this many times the probe's training images
PROBE_BATCH = 16
MIN_IMAGES = 8  # fewer training or scoring images: no probe
GROUPS = 32  # jackknife groups of scoring images at most
Z = 1.645  # standard errors a drop (or the probe's signal) must exceed: one-sided 5%
RELEVANT = 0.25  # share of the probe's signal a drop must exceed


def choose_aug(
    task: Task, splits: dict[str, list[Sample]], cfg: TrainConfig, base: str | dict | None = None
) -> tuple[str | dict, dict[str, Any]]:
    """The augmentation for ``--aug auto``: ``base`` (default: the task's ``default_aug``) with the flips
    that change labels turned off, and the evidence (plain values, YAML-able) that decided it."""
    base = task.default_aug if base is None else base
    resolved = resolve_aug(base)
    candidates = [name for name in CANDIDATES if resolved[name]]
    evidence: dict[str, Any] = {"base": base, "metric": task.monitor, "candidates": {}}
    if not candidates:
        return _skip(base, evidence, f"preset {_name(base)} has no flips: nothing to probe")
    if task.manual_optimization:
        return _skip(base, evidence, f"--task {task.name} trains with its own step: no probe")
    run_images, probe_images = cfg.epochs * len(splits.get("train", [])), PROBE_STEPS * PROBE_BATCH
    if run_images < RUN_SHARE * probe_images:
        reason = (
            f"the run sees {run_images} training images in all, too few to pay for a probe of "
            f"{probe_images} (under {RUN_SHARE}x)"
        )
        return _skip(base, evidence, reason)
    train, scored, source = _probe_samples(splits, cfg.seed)
    if len(train) < MIN_IMAGES or len(scored) < MIN_IMAGES:
        reason = f"too few images to probe ({len(train)} to train, {len(scored)} to score; {MIN_IMAGES} each)"
        return _skip(base, evidence, reason)
    unmapped = _unmappable(task, scored[:PROBE_BATCH], candidates, cfg)
    for name, reason in unmapped.items():
        evidence["candidates"][name] = {"kept": True, "unmeasured": reason}
    candidates = [name for name in candidates if name not in unmapped]
    if not candidates:
        return _skip(base, evidence, f"{', '.join(unmapped)} not measurable: {next(iter(unmapped.values()))}")
    start = time.perf_counter()
    scores = _probe(task, train, scored, [CANDIDATES[n] for n in candidates], cfg)
    evidence["probe"] = {
        "model": task.meta.model,
        "steps": PROBE_STEPS,
        "train_images": len(train),
        "scored_images": len(scored),
        "scored_on": source,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return _decide(task, base, candidates, scores, evidence)


def _name(base: str | dict) -> str:
    return base if isinstance(base, str) else str(base.get("preset", "light"))


def _skip(base: str | dict, evidence: dict[str, Any], reason: str) -> tuple[str | dict, dict[str, Any]]:
    evidence["summary"] = f"kept preset {_name(base)}: {reason}"
    return base, evidence


def _probe_samples(splits: dict[str, list[Sample]], seed: int) -> tuple[list[Sample], list[Sample], str]:
    """(probe training samples, scoring samples, where the latter come from), seeded subsets."""
    rng = random.Random(seed)
    train = rng.sample(splits.get("train", []), min(PROBE_TRAIN, len(splits.get("train", []))))
    if splits.get("val"):
        return train, rng.sample(splits["val"], min(PROBE_VAL, len(splits["val"]))), "val"
    held = min(PROBE_VAL, len(train) // 4)
    return train[held:], train[:held], "a held-out quarter of train (no val split)"


def _probe(
    task: Task,
    train: Sequence[Sample],
    scored: Sequence[Sample],
    views: Sequence[View],
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Kept outputs per group of scoring images: 'untrained', 'plain' and one entry per view's name."""
    probe = type(task)(replace(task.meta, aug=resolve_aug("none")))
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = probe.build_model().to(device)
    transform = probe.transforms("val")
    groups = _groups([probe.item(s, transform) for s in scored])
    kept = {"untrained": _score(probe, model, groups, None, device)}
    _fit(probe, model, [probe.item(s, transform) for s in train], cfg, device)
    kept["plain"] = _score(probe, model, groups, None, device)
    for view in views:
        kept[view.name] = _score(probe, model, groups, view, device)
    return kept


def _unmappable(
    task: Task, samples: Sequence[Sample], candidates: list[str], cfg: TrainConfig
) -> dict[str, str]:
    """The candidate flips whose outputs the task cannot map back (pose keypoints without flip_idx), with
    the task's reason: found on an untrained model and a few images, before any probe training."""
    probe = type(task)(replace(task.meta, aug=resolve_aug("none")))
    device = pick_device(cfg.device)
    model = probe.build_model().to(device)
    groups = [[probe.item(s, probe.transforms("val")) for s in samples]]
    unmapped = {}
    for name in candidates:
        try:
            _score(probe, model, groups, CANDIDATES[name], device)
        except ConfigError as err:
            unmapped[name] = str(err)
    return unmapped


def _groups(items: list[Any]) -> list[list[Any]]:
    """Items cut into at most ``GROUPS`` consecutive groups of equal size (the last one smaller)."""
    size = math.ceil(len(items) / GROUPS)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _fit(
    task: Task, model: torch.nn.Module, items: list[Any], cfg: TrainConfig, device: torch.device
) -> None:
    """``PROBE_STEPS`` AdamW steps (one-cycle schedule at ``cfg.lr``, 3e-3 for 'auto') over shuffled
    full batches of the decoded ``items``."""
    lr = cfg.lr if isinstance(cfg.lr, float) else 3e-3
    batch = min(PROBE_BATCH, cfg.batch, len(items))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=PROBE_STEPS)
    criterion = task.criterion()
    criterion = criterion.to(device) if criterion is not None else None
    generator = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    model.train()
    for _ in range(PROBE_STEPS):
        if len(order) < batch:
            order = torch.randperm(len(items), generator=generator).tolist()
        chosen, order = order[:batch], order[batch:]
        images, targets = task.collate([items[i] for i in chosen])
        images, targets = images.to(device), to_device(targets, device)
        loss = task.loss(task.forward(model, images, targets), targets, criterion)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


@torch.no_grad()
def _score(
    task: Task, model: torch.nn.Module, groups: list[list[Any]], view: View | None, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """``task.step_outputs`` per group: predictions on the images (viewed and mapped back when ``view``)
    against the original targets."""
    model.eval()
    runner = model if view is None else MergedModel(task, [model], [view])
    kept = []
    for group in groups:
        images, targets = task.collate(group)
        outputs = runner(images.to(device)) if view is not None else task.forward(model, images.to(device))
        kept.append(task.step_outputs(outputs, to_device(targets, device)))
    return kept


def _metric(task: Task, groups: list[dict[str, torch.Tensor]], leave_out: int | None = None) -> float:
    """The monitored metric over the groups (all, or all but ``leave_out``), as larger-is-better."""
    chosen = [g for i, g in enumerate(groups) if i != leave_out]
    kept = {key: torch.cat([g[key].cpu() for g in chosen]) for key in chosen[0]}
    value = float(task.compute_metrics(kept)[task.monitor])
    return value if task.mode == "max" else -value


def _paired(task: Task, first: list[dict], second: list[dict]) -> tuple[float, float]:
    """``metric(first) - metric(second)`` and its jackknife standard error over the shared groups."""
    full = _metric(task, first) - _metric(task, second)
    g = len(first)
    if g < 2:
        return full, math.inf
    loo = [_metric(task, first, i) - _metric(task, second, i) for i in range(g)]
    mean = sum(loo) / g
    return full, math.sqrt((g - 1) / g * sum((v - mean) ** 2 for v in loo))


def _decide(
    task: Task,
    base: str | dict,
    candidates: list[str],
    scores: dict[str, Any],
    evidence: dict[str, Any],
) -> tuple[str | dict, dict[str, Any]]:
    """Apply the decision rule (module docstring) to the probe's ``scores``."""
    sign = 1.0 if task.mode == "max" else -1.0
    plain, untrained = sign * _metric(task, scores["plain"]), sign * _metric(task, scores["untrained"])
    signal, signal_se = _paired(task, scores["plain"], scores["untrained"])
    evidence.update(plain=round(plain, 4), untrained=round(untrained, 4), signal=round(signal, 4))
    if not signal > Z * signal_se or not math.isfinite(signal):
        reason = (
            f"the probe learned too little to tell ({task.monitor} {plain:.3f} trained vs {untrained:.3f} "
            f"untrained, margin {Z * signal_se:.3f})"
        )
        return _skip(base, evidence, reason)
    off: dict[str, float] = {}
    for name in candidates:
        view = CANDIDATES[name]
        drop, drop_se = _paired(task, scores["plain"], scores[view.name])
        margin = max(Z * drop_se, RELEVANT * signal)
        keep = not drop > margin
        evidence["candidates"][name] = {
            "plain": round(plain, 4),
            "transformed": round(plain - sign * drop, 4),
            "drop": round(drop, 4),
            "margin": round(margin, 4),
            "kept": keep,
        }
        if not keep:
            off[name] = 0.0
    aug = base if not off else {**(base if isinstance(base, dict) else {"preset": base}), **off}
    parts = [
        f"{name} kept as the preset sets it (not measured: {c['unmeasured']})"
        if "unmeasured" in c
        else f"{name} {'kept' if c['kept'] else 'off'} ({task.monitor} {c['plain']:.3f} plain vs "
        f"{c['transformed']:.3f} {name}ped, drop {c['drop']:+.3f} {'<=' if c['kept'] else '>'} margin "
        f"{c['margin']:.3f})"
        for name, c in evidence["candidates"].items()
    ]
    evidence["summary"] = "; ".join(parts)
    return aug, evidence
