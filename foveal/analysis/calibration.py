"""Calibration of classifiers: expected calibration error, reliability diagrams, temperature scaling.

- Single-label (multiclass, binary): top-label calibration, the confidence being the largest
  probability and the outcome whether its class is the target (torchmetrics'
  ``multiclass_calibration_error``).
- Multilabel: every label is its own binary problem (confidence = its sigmoid probability,
  outcome = the label is present; torchmetrics' ``binary_calibration_error``); the ECE is the mean of
  the per-label ECEs, and one temperature is fitted on the binary cross-entropy of all labels.
- Bins: ``n_bins`` equal-width bins over [0, 1], left-closed like torchmetrics' (``[lo, hi)``), except
  that a confidence of exactly 1.0 falls in the last bin (torchmetrics gives it a bin of its own).

:func:`calibrate` fits the temperature of a checkpoint on a labelled split and stores it in the
checkpoint's task meta (``temperature``), which ``ClassifyTask.probabilities`` divides the logits by.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.errors import ConfigError, DataError

log = logging.getLogger("foveal")

ArrayLike = Tensor | np.ndarray
T_BOUNDS = (0.01, 100.0)


def _np(values: ArrayLike) -> np.ndarray:
    if torch.is_tensor(values):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _is_multilabel(probs: np.ndarray, targets: np.ndarray) -> bool:
    """Targets (N, C) of 0/1 next to (N, C) probabilities mean multilabel; (N,) indices single-label."""
    if probs.ndim != 2:
        raise ValueError(f"probabilities must have shape (N, C), got {probs.shape}")
    if targets.shape == probs.shape:
        return True
    if targets.shape != (probs.shape[0],):
        raise ValueError(f"targets must have shape ({probs.shape[0]},) or {probs.shape}, got {targets.shape}")
    return False


def confidences_and_outcomes(probs: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The (confidence, outcome 0/1) pairs calibration is measured on.

    ``probs`` (N, C); ``targets`` (N,) class indices, or (N, C) 0/1 (multilabel). Single-label: (N,)
    top-label confidences and whether the top class is right. Multilabel: (N, C) probabilities and
    the (N, C) targets, one column per label.
    """
    p, t = _np(probs), _np(targets)
    if _is_multilabel(p, t):
        return p, t
    return p.max(axis=1), (p.argmax(axis=1) == t.astype(np.int64)).astype(np.float64)


def calibration_bins(
    confidences: np.ndarray, outcomes: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin over [0, 1]: (mean outcome, mean confidence, count), each (n_bins,);
    empty bins hold 0."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins {n_bins!r}: must be a whole number >= 1 (e.g. 15)")
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    hits = np.asarray(outcomes, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    safe = np.maximum(count, 1.0)
    accuracy = np.bincount(index, weights=hits, minlength=n_bins) / safe
    confidence = np.bincount(index, weights=conf, minlength=n_bins) / safe
    return accuracy, confidence, count


def _ece(confidences: np.ndarray, outcomes: np.ndarray, n_bins: int) -> float:
    accuracy, confidence, count = calibration_bins(confidences, outcomes, n_bins)
    return float(np.sum(np.abs(accuracy - confidence) * count) / max(count.sum(), 1.0))


def expected_calibration_error(probs: ArrayLike, targets: ArrayLike, n_bins: int = 15) -> float:
    """ECE (L1, bins weighted by their share of samples) of ``probs`` (N, C) against ``targets``.

    ``targets``: (N,) class indices (top-label ECE) or (N, C) 0/1 (multilabel: the mean over labels
    of each label's binary ECE).
    """
    conf, hits = confidences_and_outcomes(probs, targets)
    if conf.ndim == 1:
        return _ece(conf, hits, n_bins)
    return float(np.mean([_ece(conf[:, c], hits[:, c], n_bins) for c in range(conf.shape[1])]))


# -- temperature scaling ------------------------------------------------------------------------
def scaled_probabilities(logits: ArrayLike, temperature: float = 1.0, multilabel: bool = False) -> Tensor:
    """(N, C) logits -> probabilities of ``logits / temperature`` (sigmoid if multilabel, else softmax)."""
    scaled = torch.as_tensor(logits).double() / temperature
    return scaled.sigmoid() if multilabel else scaled.softmax(dim=1)


def negative_log_likelihood(
    logits: ArrayLike, targets: ArrayLike, temperature: float = 1.0, multilabel: bool | None = None
) -> float:
    """Mean NLL of ``logits / temperature``: cross-entropy for (N,) class-index ``targets``, binary
    cross-entropy over every (sample, label) for (N, C) 0/1 targets (multilabel)."""
    z = torch.as_tensor(logits).double() / temperature
    t = torch.as_tensor(targets)
    if multilabel is None:
        multilabel = tuple(t.shape) == tuple(z.shape)
    if multilabel:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(z, t.double()))
    return float(torch.nn.functional.cross_entropy(z, t.long()))


def fit_temperature(logits: ArrayLike, targets: ArrayLike, multilabel: bool | None = None) -> float:
    """The temperature T in [0.01, 100] minimising the NLL of ``logits / T`` (see
    :func:`negative_log_likelihood`; ``logits`` (N, C), ``targets`` (N,) indices or (N, C) 0/1).

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T finds its
    minimum to 1e-6 relative. T = 1 is returned when it is no worse (e.g. no samples).
    """
    z = torch.as_tensor(logits).double().cpu()
    t = torch.as_tensor(targets).cpu()
    if multilabel is None:
        multilabel = tuple(t.shape) == tuple(z.shape)
    if z.numel() == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return negative_log_likelihood(z, t, math.exp(log_t), multilabel)

    lo, hi = math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > 1e-6:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    best = (a + b) / 2.0
    return math.exp(best) if nll(best) < nll(0.0) else 1.0


# -- reliability diagram ------------------------------------------------------------------------
def reliability_diagram(
    probs: ArrayLike,
    targets: ArrayLike,
    out_png: str | Path,
    n_bins: int = 15,
    title: str = "Reliability",
) -> Path:
    """Write a reliability diagram of ``probs`` (N, C) against ``targets`` (as
    :func:`expected_calibration_error` takes them) to ``out_png``.

    Top: the accuracy of each confidence bin as bars against the diagonal (perfect calibration), the
    gap to the bin's mean confidence shaded red; bottom: how many predictions fall in each bin. The
    title carries the ECE. Multilabel pools every (image, label) pair in the bars.
    """
    from matplotlib.figure import Figure

    from foveal.report.plots import DPI, save_png

    conf, hits = confidences_and_outcomes(probs, targets)
    ece = expected_calibration_error(probs, targets, n_bins)
    accuracy, confidence, count = calibration_bins(conf, hits, n_bins)
    width = 1.0 / n_bins
    centres = (np.arange(n_bins) + 0.5) * width
    used = count > 0
    fig = Figure(figsize=(5.4, 6.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[used], accuracy[used], width=width, color="#4c72b0", edgecolor="black", label="accuracy")
    gap_low = np.minimum(accuracy, confidence)[used]
    top.bar(
        centres[used],
        np.abs(confidence - accuracy)[used],
        bottom=gap_low,
        width=width,
        color="#dd4444",
        alpha=0.35,
        edgecolor="#aa0000",
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1.0, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy" if conf.ndim == 1 else "fraction positive")
    kind = "top-label" if conf.ndim == 1 else "mean over labels"
    top.set_title(f"{title} (ECE {ece:.4f}, {kind})")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(centres, count, width=width, color="#888888", edgecolor="black")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    bottom.grid(alpha=0.3)
    return save_png(fig, out_png)


# -- calibrate a checkpoint ---------------------------------------------------------------------
@dataclass
class CalibrationResult:
    """A fitted temperature and the calibration of the split before and after it."""

    temperature: float
    previous_temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n: int
    split: str
    checkpoint: Path
    backup: Path
    out_dir: Path
    plots: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.update(
            checkpoint=str(self.checkpoint),
            backup=str(self.backup),
            out_dir=str(self.out_dir),
            plots=[str(p) for p in self.plots],
        )
        return values


def calibration_dir(checkpoint: Path) -> Path:
    """``<run>/calibration`` for a checkpoint in ``<run>/checkpoints/`` (a run has config.yaml), else a
    ``calibration`` folder next to the checkpoint."""
    run = checkpoint.parent.parent
    return (run if (run / "config.yaml").is_file() else checkpoint.parent) / "calibration"


def calibrate(
    weights: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    out: str | Path | None = None,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    fmt: str = "auto",
    on_bad_image: str = "error",
    n_bins: int = 15,
) -> CalibrationResult:
    """Fit a temperature for classification checkpoint ``weights`` on ``split`` of ``data``.

    Stores it in the checkpoint's task meta (``temperature``; the file is replaced atomically, the
    original kept once as ``<name>.uncalibrated.ckpt``) and writes ``calibration.json``,
    ``reliability_before.png`` and ``reliability_after.png`` into ``out`` (default: the run's
    ``calibration`` folder, see :func:`calibration_dir`). ECE and NLL "before" use the checkpoint's
    current temperature (1 unless calibrated already); the fit starts from the raw logits.
    """
    from foveal.atomic import atomic_write, atomic_write_text
    from foveal.data.checks import drop_unreadable
    from foveal.engine.checkpoint import load, read_checkpoint
    from foveal.engine.inference import run_model
    from foveal.serialize import dumps

    checkpoint = read_checkpoint(weights)
    path = Path(checkpoint.pop("path"))
    meta = checkpoint["foveal"]["meta"]
    if meta.get("task") not in ("classify", "segment", "detect", "instance", "pose"):
        raise ConfigError(
            f"{path}: a '{meta.get('task')}' checkpoint; calibration covers classify, segment, detect"
        )
    loaded = load(path)
    samples = drop_unreadable(loaded.task.load_eval_data(str(data), split, fmt), on_bad_image)
    if meta["task"] == "segment":
        logits, targets = pixel_logits(loaded, samples, batch, workers, device)
    elif meta["task"] != "classify":
        logits, targets = detection_logits(loaded, samples, batch, workers, device)
    else:
        kept, _ = run_model(loaded.task, loaded.model, samples, batch, workers, device)
        logits, targets = kept["logits"].double(), kept["targets"]
    multilabel = meta.get("kind") == "multilabel" or meta["task"] not in ("classify", "segment")
    previous = float(meta.get("temperature", 1.0))
    temperature = fit_temperature(logits, targets, multilabel)
    before = scaled_probabilities(logits, previous, multilabel)
    after = scaled_probabilities(logits, temperature, multilabel)

    backup = path.with_name(f"{path.stem}.uncalibrated{path.suffix}")
    if not backup.exists():
        _copy_atomic(path, backup)
    meta["temperature"] = temperature
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))

    out_dir = Path(out) if out is not None else calibration_dir(path)
    plots = [
        reliability_diagram(
            before, targets, out_dir / "reliability_before.png", n_bins, f"Before (T={previous:.3g})"
        ),
        reliability_diagram(
            after, targets, out_dir / "reliability_after.png", n_bins, f"After (T={temperature:.3g})"
        ),
    ]
    result = CalibrationResult(
        temperature=round(temperature, 6),
        previous_temperature=previous,
        ece_before=round(expected_calibration_error(before, targets, n_bins), 7),
        ece_after=round(expected_calibration_error(after, targets, n_bins), 7),
        nll_before=round(negative_log_likelihood(logits, targets, previous, multilabel), 7),
        nll_after=round(negative_log_likelihood(logits, targets, temperature, multilabel), 7),
        n=len(samples),
        split=split,
        checkpoint=path,
        backup=backup,
        out_dir=out_dir,
        plots=plots,
    )
    atomic_write_text(
        out_dir / "calibration.json",
        dumps({**result.to_dict(), "data": str(data), "n_bins": n_bins}, indent=2),
    )
    log.info(
        "temperature %.4f: ECE %.4f -> %.4f, NLL %.4f -> %.4f (%s, %d images); written to %s",
        temperature,
        result.ece_before,
        result.ece_after,
        result.nll_before,
        result.nll_after,
        split,
        result.n,
        path,
    )
    from foveal.report.html import refresh_report

    refresh_report(path)  # the run's report gains the calibration section
    return result


def detection_logits(
    loaded: Any, samples: Any, batch: int, workers: int | None, device: str
) -> tuple[Tensor, Tensor]:
    """A detector's raw scores as logits (N, 1) float64 and whether each detection is a true positive
    (N, 1) (scores >= 0.05, IoU >= 0.5 with a box of its class; see ``score_outcomes``)."""
    from foveal.engine.inference import run_model
    from foveal.metrics.detection import score_outcomes

    task = loaded.task
    saved_temperature = task.meta.pop("temperature", None)  # fit on the raw scores
    try:
        kept, _ = run_model(task, loaded.model, samples, batch, workers, device)
    finally:
        if saved_temperature is not None:
            task.meta["temperature"] = saved_temperature
    scores, hits = score_outcomes(*task.per_image(kept))
    if not len(scores):
        raise DataError("no detection scores >= 0.05 on this split: nothing to calibrate; train longer first")
    logits = torch.logit(torch.as_tensor(scores, dtype=torch.float64), eps=1e-6)
    return logits[:, None], torch.as_tensor(hits, dtype=torch.float64)[:, None]


def pixel_logits(
    loaded: Any, samples: Any, batch: int, workers: int | None, device: str, max_pixels: int = 500_000
) -> tuple[Tensor, Tensor]:
    """A segmentation model's raw per-pixel class logits (P, K) float64 and targets (P,) over labelled
    pixels of ``samples`` (binary maps as two classes [0, z]); a seeded random subset of about
    ``max_pixels`` pixels when there are more."""
    from foveal.engine.inference import pick_device
    from foveal.engine.loaders import make_loader

    task, target_device = loaded.task, pick_device(device)
    model = loaded.model.to(target_device).eval()
    keep_rate = min(1.0, max_pixels / max(1, len(samples) * task.meta["imgsz"] ** 2))
    generator = torch.Generator().manual_seed(0)
    saved_temperature = task.meta.pop("temperature", None)  # fit on the raw logits
    parts: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for images, targets in make_loader(task, samples, "val", batch, workers):
                logits = task.class_logits(task.forward(model, images.to(target_device))).cpu()
                valid = targets != task.ignore_index
                chosen = valid & (torch.rand(valid.shape, generator=generator) < keep_rate)
                parts.append((logits[chosen].double(), targets[chosen]))
    finally:
        if saved_temperature is not None:
            task.meta["temperature"] = saved_temperature
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file in the target's folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
