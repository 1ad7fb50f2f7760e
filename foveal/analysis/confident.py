"""Confident learning (Northcutt, Jiang & Chuang, 2021) on out-of-fold probabilities.

Per-class thresholds are the mean self-confidence of each given class; the confident joint counts
images by (given label, the most likely class whose probability reaches its threshold); calibrated to
the label counts and normalised, it estimates the joint of given and true labels, whose off-diagonal
divided by the given-label marginal is the noise rate. Issues are found by pruning by noise rate: for
each pair (given i, true j) the ``N * joint[i, j]`` images of given label ``i`` with the largest margin
``p_j - p_i``; images the model predicts as their given label are never issues. Multilabel data are one
binary (absent/present) problem per label. Arrays: ``labels`` (N,) int, ``probs`` (N, C) float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foveal.errors import ConfigError

RANKINGS = ("self_confidence", "normalized_margin")


@dataclass
class ConfidentResult:
    """``issues`` (N,) bool; ``quality`` (N,) label-quality score in [0, 1] (low: likely wrong);
    ``suggested`` (N,) the most likely class other than the given one; ``thresholds`` (C,);
    ``confident_joint`` (C, C) counts; ``joint`` (C, C) calibrated joint (sums to 1);
    ``noise`` (C, C) P(true j | given i) with the diagonal zeroed."""

    issues: np.ndarray
    quality: np.ndarray
    suggested: np.ndarray
    thresholds: np.ndarray
    confident_joint: np.ndarray
    joint: np.ndarray
    noise: np.ndarray


def _check(labels: np.ndarray, probs: np.ndarray) -> None:
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ConfigError(f"labels {labels.shape} and probs {probs.shape} must be (N,) and (N, C)")


def class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(C,) mean probability of class j over the images labelled j (1.0 for a class never given)."""
    _check(labels, probs)
    n_classes = probs.shape[1]
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((C, C) counts of (given i, confident true j), (C,) thresholds). An image counts under the
    class of highest probability among those at or over their threshold; none: it is not counted."""
    thresholds = class_thresholds(labels, probs)
    above = probs >= thresholds[None, :] - 1e-12
    masked = np.where(above, probs, -np.inf)
    counted = above.any(axis=1)
    true = masked.argmax(axis=1)
    n_classes = probs.shape[1]
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], true[counted]), 1)
    return joint, thresholds


def calibrate_joint(counts: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """(C, C) confident joint -> calibrated joint: each row scaled to its given-label count, then the
    whole normalised to sum to 1 (a row with no counts keeps its images on the diagonal)."""
    counts = counts.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    empty = rows[:, 0] == 0
    counts[empty] = np.eye(len(counts))[empty]
    rows[empty] = 1.0
    calibrated = counts / rows * label_counts[:, None]
    return calibrated / max(calibrated.sum(), 1e-12)


def noise_rates(joint: np.ndarray) -> np.ndarray:
    """(C, C) P(true j | given i) = joint[i, j] / P(given i), diagonal zeroed."""
    marginal = joint.sum(axis=1, keepdims=True)
    rates = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    np.fill_diagonal(rates, 0.0)
    return rates


def label_quality(labels: np.ndarray, probs: np.ndarray, rank: str = "self_confidence") -> np.ndarray:
    """(N,) in [0, 1], low = likely mislabelled: ``p[given]`` (self_confidence), or
    ``(p[given] - max other p + 1) / 2`` (normalized_margin)."""
    if rank not in RANKINGS:
        raise ConfigError(f"--rank {rank}: choose one of {', '.join(RANKINGS)}")
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    if rank == "self_confidence":
        return given
    return (given - _other(labels, probs).max(axis=1) + 1.0) / 2.0


def _other(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N, C) probabilities with the given class set to -inf."""
    other = probs.astype(np.float64, copy=True)
    other[np.arange(len(labels)), labels] = -np.inf
    return other


def prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """(N,) bool issues: for every pair (i, j != i) the round(N * joint[i, j]) images labelled i with the
    largest margin p_j - p_i; the images whose argmax is their given label are then cleared."""
    issues = np.zeros(len(labels), dtype=bool)
    prune = np.rint(joint * len(labels)).astype(np.int64)
    for i in range(len(joint)):
        members = np.flatnonzero(labels == i)
        for j in range(len(joint)):
            count = min(prune[i, j], len(members))
            if j == i or count <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            issues[members[np.argsort(-margin, kind="stable")[:count]]] = True
    issues &= probs.argmax(axis=1) != labels
    return issues


def find_issues(labels: np.ndarray, probs: np.ndarray, rank: str = "self_confidence") -> ConfidentResult:
    """Confident learning on one single-label problem (see the module docstring)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    _check(labels, probs)
    counts, thresholds = confident_joint(labels, probs)
    joint = calibrate_joint(counts, np.bincount(labels, minlength=probs.shape[1]).astype(np.float64))
    return ConfidentResult(
        issues=prune_by_noise_rate(labels, probs, joint),
        quality=label_quality(labels, probs, rank),
        suggested=_other(labels, probs).argmax(axis=1),
        thresholds=thresholds,
        confident_joint=counts,
        joint=joint,
        noise=noise_rates(joint),
    )


def find_multilabel_issues(
    labels: np.ndarray, probs: np.ndarray, rank: str = "self_confidence"
) -> list[ConfidentResult]:
    """One binary :func:`find_issues` per label: ``labels`` (N, C) 0/1, ``probs`` (N, C) sigmoid
    probabilities; result c has classes 0 = absent, 1 = present."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.shape != probs.shape or probs.ndim != 2:
        raise ConfigError(f"multilabel labels {labels.shape} and probs {probs.shape} must both be (N, C)")
    return [
        find_issues(labels[:, c], np.stack([1.0 - probs[:, c], probs[:, c]], axis=1), rank)
        for c in range(probs.shape[1])
    ]
