"""Ensembles of checkpoints: ``ensemble(weights, data, method=...) -> EnsembleResult``.

Every member is evaluated alone and the ensemble beside them on the same samples, with the task's own
metrics. Methods:

- ``mean``: equal-weight mean of probabilities (classify, segment) or weighted boxes fusion (detect);
- ``weighted``: the same with member weights, given (``member_weights``) or fitted on the 'val' split:
  for classification the weights minimising the log loss of the mixture, for other tasks weights
  proportional to each member's validation score (the task's monitored metric);
- ``vote``: majority vote of the members' decisions (classify, segment);
- ``stack``: a logistic-regression meta-model on the members' concatenated probabilities, fitted on the
  out-of-fold predictions ``foveal cv`` saved (``oof``: one oof.json per member; single-label classify).

TTA views (``tta``) apply to every member inside the ensemble.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foveal.atomic import atomic_write_text
from foveal.errors import ConfigError, DataError, check_choice
from foveal.serialize import dumps

log = logging.getLogger("foveal")

METHODS = ("mean", "weighted", "vote", "stack")


@dataclass
class EnsembleResult:
    """Per-member and ensemble metrics on ``split``; ``weights``: the member weights used."""

    out: Path
    task: str
    method: str
    split: str
    members: list[str]
    weights: list[float]
    member_metrics: list[dict[str, Any]]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out": str(self.out)}


def _check_members(loaded: list[Any]) -> None:
    first = loaded[0].task
    for other in loaded[1:]:
        if other.task.name != first.name or other.task.class_names != first.class_names:
            raise ConfigError(
                f"{other.path}: a {other.task.name} model of classes {other.task.class_names}, "
                f"unlike {loaded[0].path} ({first.name}, {first.class_names}); ensemble models "
                "of one task and class list"
            )


def fit_log_loss_weights(probs: Sequence[np.ndarray], targets: np.ndarray) -> list[float]:
    """Mixture weights (sum 1) minimising the log loss of ``sum_m w_m probs[m]`` ((N, C) each) on
    integer ``targets`` (N,)."""
    from scipy.optimize import minimize

    picked = np.stack([p[np.arange(len(targets)), targets] for p in probs], axis=1)  # (N, M)

    def loss(z: np.ndarray) -> float:
        w = np.exp(z - z.max())
        w /= w.sum()
        return float(-np.log(np.clip(picked @ w, 1e-12, None)).mean())

    z = minimize(loss, np.zeros(len(probs)), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7}).x
    w = np.exp(z - z.max())
    return (w / w.sum()).tolist()


def _oof_features(paths: Sequence[str], class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, M*C) concatenated out-of-fold probabilities of the images every oof.json has, (N,) targets."""
    import json

    tables = []
    for path in paths:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        if not rows or "probs" not in rows[0]:
            raise DataError(f"{path}: not a classification oof.json from foveal cv; pass cv's oof.json")
        tables.append({str(Path(r["path"]).resolve()): r for r in rows})
    common = sorted(set.intersection(*(set(t) for t in tables)))
    if not common:
        raise DataError(
            f"{', '.join(map(str, paths))}: the oof files share no image; run foveal cv on one dataset"
        )
    index = {n: i for i, n in enumerate(class_names)}
    targets = []
    for key in common:
        target = tables[0][key].get("target")
        if not isinstance(target, str) or target not in index:
            raise DataError(f"{paths[0]}: image {key} has target {target!r}, not one of {class_names}")
        targets.append(index[target])
    features = np.array([[t[key]["probs"][n] for t in tables for n in class_names] for key in common])
    return features, np.array(targets)


def _stack(oof: Sequence[str], member_probs: list[np.ndarray], class_names: list[str]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    x, y = _oof_features(oof, class_names)
    meta = LogisticRegression(max_iter=2000).fit(x, y)
    out = np.zeros((len(member_probs[0]), len(class_names)))
    out[:, meta.classes_] = meta.predict_proba(np.concatenate(member_probs, axis=1))
    return out


def parse_member_weights(text: str) -> list[float]:
    """'0.6,0.4' -> [0.6, 0.4] (``--member-weights``); ConfigError for anything but numbers."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--member-weights '{text}': not numbers; write one per model, comma-separated, e.g. 0.6,0.4"
        ) from None


def ensemble(
    weights: Sequence[str | Path],
    data: str | Path,
    *,
    split: str = "val",
    method: str = "mean",
    member_weights: Sequence[float] | str | None = None,
    oof: Sequence[str | Path] | None = None,
    tta: str | bool | None = None,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    fmt: str = "auto",
    out: str | Path | None = None,
    run: str | Path | None = None,
    project: str | Path | None = None,
    name: str | None = None,
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
) -> EnsembleResult:
    """Evaluate each checkpoint in ``weights`` and their ensemble on ``split`` of ``data``.

    Writes ``ensemble.json`` in ``out`` (default a new run folder ``PROJECT/NAME``, by default
    ``runs/<task>/ensemble[-N]``; see ``foveal.engine.rundir.output_dir``) and, with ``run`` (a run
    folder), ``run/comparisons/ensemble.json`` for its report. ``member_weights`` may be text
    '0.6,0.4' (one per model). ``devices`` x ``num_nodes`` > 1 with a DDP ``strategy``: every pass
    (each member, the ensemble) shares its images over that many processes (as ``foveal.evaluate``);
    the metrics are the same and only the first process writes files.
    """
    from foveal.engine import distributed
    from foveal.engine.checkpoint import load
    from foveal.engine.evaluation import infer, with_tta
    from foveal.engine.merge import MergedModel, parse_tta
    from foveal.engine.rundir import check_out, output_dir

    check_choice("--method", method, METHODS)
    check_out(out, project, name)
    if isinstance(member_weights, str):
        member_weights = parse_member_weights(member_weights)
    if len(weights) < 2:
        raise ConfigError(
            f"an ensemble needs at least 2 checkpoints, got {len(weights)}; pass --weights A B ..."
        )
    if member_weights is not None and len(member_weights) != len(weights):
        raise ConfigError(
            f"--member-weights has {len(member_weights)} values for {len(weights)} models; give one per model"
        )
    loaded = [load(w) for w in weights]
    _check_members(loaded)
    task = loaded[0].task
    if method == "stack" and not task.single_label:
        raise ConfigError(
            "--method stack fits a logistic regression on class probabilities: single-label classify"
        )
    if method == "stack" and (not oof or len(oof) != len(loaded)):
        raise ConfigError(
            "--method stack needs --oof with one oof.json (from foveal cv) per member, in order"
        )
    samples = task.load_eval_data(str(data), split, fmt)
    spread = {"devices": devices, "strategy": strategy, "num_nodes": num_nodes}

    def one_pass(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[Any]]:
        """(kept outputs, the samples in their order): every pass shares ``samples`` out alike."""
        kept, _, order = infer(task, model, samples, batch, workers, device, **spread)
        return kept, order

    member_metrics, member_probs = [], []
    for member in loaded:
        kept, ordered = one_pass(with_tta(member, tta))
        member_metrics.append(member.task.compute_metrics(kept))
        if task.single_label:
            member_probs.append(member.task.single_label_probabilities(kept)[0].numpy())
    w = [1.0] * len(loaded)
    if method == "weighted":
        options = (batch, workers, device, fmt, tta, spread)
        w = list(member_weights or _fit_weights(loaded, data, split, member_probs, ordered, *options))
    if method == "stack":
        probs = torch.as_tensor(_stack([str(p) for p in oof or []], member_probs, task.class_names))
        kept = task.kept_from_probabilities(probs, torch.as_tensor(np.array([s.label for s in ordered])))
    else:
        merged = MergedModel(
            task, [m.model for m in loaded], parse_tta(tta), w, "vote" if method == "vote" else "mean"
        )
        kept, _ = one_pass(merged)
    metrics = task.compute_metrics(kept)
    if distributed.is_worker_process():  # under torchrun/SLURM: the first process writes the files
        return EnsembleResult(Path(), task.name, method, split, [str(m.path) for m in loaded], w,
                              member_metrics, metrics)  # fmt: skip
    out_dir = output_dir(out or None, task.name, "ensemble", project, name)
    result = EnsembleResult(out_dir, task.name, method, split, [str(m.path) for m in loaded], w,
                            member_metrics, metrics)  # fmt: skip
    doc = dumps({**result.to_dict(), "monitor": task.monitor, "tta": tta}, indent=1)
    atomic_write_text(out_dir / "ensemble.json", doc)
    if run is not None:
        from foveal.report.html import refresh_report

        atomic_write_text(Path(run) / "comparisons" / "ensemble.json", doc)
        refresh_report(run)
    return result


def _fit_weights(
    loaded: list[Any], data: Any, split: str, probs: list[np.ndarray], samples: list[Any], *args: Any
) -> list[float]:
    """Weights fitted on the 'val' split: log-loss optimal for classification, else ∝ the val score."""
    from foveal.engine.evaluation import evaluate, infer, with_tta

    batch, workers, device, fmt, tta, spread = args
    task = loaded[0].task
    if split != "val":
        samples = None  # evaluate on val below
    else:
        log.warning("weights fitted on the split they are scored on (val): optimistic; use --split test")
    if task.single_label:
        if samples is None:
            val = task.load_eval_data(str(data), "val", fmt)
            passes = [infer(m.task, with_tta(m, tta), val, batch, workers, device, **spread) for m in loaded]
            probs = [m.task.single_label_probabilities(kept)[0].numpy()
                     for m, (kept, _, _) in zip(loaded, passes, strict=True)]  # fmt: skip
            samples = passes[0][2]
        targets = np.array([s.label for s in samples])
        return fit_log_loss_weights(probs, targets)
    scores = [evaluate(m, data, split="val", batch=batch, workers=workers, device=device, fmt=fmt, tta=tta,
                       **spread) for m in loaded]  # fmt: skip
    values = [float(s.get(task.monitor, 0.0)) for s in scores]
    if task.mode == "min":
        values = [1.0 / max(v, 1e-12) for v in values]
    if not all(math.isfinite(v) for v in values) or sum(values) <= 0:
        return [1.0] * len(loaded)
    return [v / sum(values) for v in values]
