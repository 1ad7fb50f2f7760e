"""Calibration metrics: expected calibration error, its bins, and the negative log-likelihood.

- Single-label (multiclass, binary): top-label calibration, the confidence being the largest
  probability and the outcome whether its class is the target (torchmetrics'
  ``multiclass_calibration_error``).
- Multilabel: every label is its own binary problem (confidence = its sigmoid probability,
  outcome = the label is present; torchmetrics' ``binary_calibration_error``); the ECE is the mean of
  the per-label ECEs.
- Bins: ``n_bins`` equal-width bins over [0, 1], left-closed like torchmetrics' (``[lo, hi)``), except
  that a confidence of exactly 1.0 falls in the last bin (torchmetrics gives it a bin of its own).

Temperature scaling of checkpoints (``foveal calibrate``) is in ``foveal.analysis.calibration``; the
reliability diagram in ``foveal.report.plots``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from foveal.errors import ConfigError

ArrayLike = Tensor | np.ndarray


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
