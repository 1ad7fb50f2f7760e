"""Class-imbalance handling for training: ``--balance none|oversample|undersample|weights``.

- ``oversample``: a weighted random sampler (with replacement, one epoch = as many draws as samples);
  a sample's weight is the largest ``1 / count`` over the classes it carries (for images with several
  classes, the rarest one decides, as in repeat-factor sampling).
- ``undersample``: every epoch draws, without replacement, as many samples of each class as the rarest
  class has (a sample belongs to its rarest class), so each epoch sees a fresh balanced subset.
- ``weights``: class weights in the loss, inverse frequency or effective number of samples
  (Cui et al. 2019: ``(1 - beta) / (1 - beta ** n)``), averaging 1 over the classes present.

Labels come from the task (``Task.balance_labels``): per sample the class indices it carries; a
sample without any class (a detection image without objects) counts as its own group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from foveal.config import BALANCE_MODES, WEIGHT_SCHEMES
from foveal.errors import ConfigError, DataError, check_choice


def class_counts(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(num_classes + 1,) int64: samples carrying each class; the last entry counts samples without any."""
    counts = np.zeros(num_classes + 1, dtype=np.int64)
    for classes in labels:
        present = set(classes)
        if not present:
            counts[num_classes] += 1
        for c in present:
            if not 0 <= c < num_classes:
                raise DataError(f"class index {c} outside 0..{num_classes - 1}; check the labels")
            counts[c] += 1
    return counts


def _rarest(labels: Sequence[Sequence[int]], counts: np.ndarray) -> np.ndarray:
    """(N,) the rarest class each sample carries (num_classes for a sample without any)."""
    empty = len(counts) - 1
    return np.array([min(set(c), key=lambda k: (counts[k], k)) if c else empty for c in labels])


def sample_weights(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(N,) float64 sampling weights: ``1 / count`` of each sample's rarest class."""
    counts = class_counts(labels, num_classes)
    return 1.0 / counts[_rarest(labels, counts)]


def class_weights(counts: Sequence[float], scheme: str = "inverse", beta: float = 0.999) -> list[float]:
    """Loss weights (C,) from per-class counts (samples or pixels): ``inverse`` (1 / n) or ``effective``
    ((1 - beta) / (1 - beta ** n)); scaled to mean 1 over classes with n > 0, 0 for absent classes."""
    check_choice("class weight scheme", scheme, WEIGHT_SCHEMES)
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or (n < 0).any():
        raise DataError(f"class counts must be a non-empty list of non-negative numbers, got {list(counts)}")
    seen = n > 0
    if not seen.any():
        raise DataError("every class count is 0: the training set has no labelled samples")
    if scheme == "effective" and not 0.0 < beta < 1.0:
        raise ConfigError(f"--balance-beta {beta}: must be between 0 and 1 (e.g. 0.999)")
    raw = 1.0 / n[seen] if scheme == "inverse" else (1.0 - beta) / (1.0 - np.power(beta, n[seen]))
    weights = np.zeros_like(n)
    weights[seen] = raw / raw.mean()
    return weights.tolist()


class UndersampleSampler(Sampler[int]):
    """Each epoch: ``min count`` samples of every group (its rarest class), drawn without replacement and
    shuffled; the draw changes every epoch (seeded by ``seed`` and the epoch number)."""

    def __init__(self, groups: Sequence[int], seed: int = 0) -> None:
        self.groups = np.asarray(groups)
        self.members = [np.flatnonzero(self.groups == g) for g in np.unique(self.groups)]
        self.per_group = min(len(m) for m in self.members)
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return self.per_group * len(self.members)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1  # a loader without set_epoch still gets a fresh subset every epoch
        chosen = np.concatenate([rng.choice(m, self.per_group, replace=False) for m in self.members])
        return iter(rng.permutation(chosen).tolist())


def make_sampler(
    labels: Sequence[Sequence[int]], num_classes: int, mode: str, seed: int = 0
) -> Sampler[int] | None:
    """The training sampler for ``mode`` (None for 'none' and 'weights', which keep plain shuffling)."""
    check_choice("--balance", mode, BALANCE_MODES)
    if mode in ("none", "weights"):
        return None
    if not labels:
        raise DataError("no training samples to balance")
    if mode == "oversample":
        weights = torch.as_tensor(sample_weights(labels, num_classes), dtype=torch.double)
        generator = torch.Generator().manual_seed(seed)
        return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
    return UndersampleSampler(_rarest(labels, class_counts(labels, num_classes)), seed)
