"""Seeded, stratified train/validation splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from foveal.data.sample import Sample
from foveal.errors import DataError


def _stratum(sample: Sample) -> str:
    label = sample.label
    return ";".join(map(str, label)) if isinstance(label, list) else str(label)


def stratified_split(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into (train, holdout) with ``fraction`` held out, stratified by label.

    Multilabel samples are stratified by their label set when every set occurs at least twice,
    else the split is random (still seeded).
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction {fraction} must be between 0 and 1 (e.g. 0.2)")
    if len(samples) < 4:
        raise DataError(
            f"only {len(samples)} images: too few to split off a validation set; add images or pass --val"
        )
    from sklearn.model_selection import train_test_split

    strata = [_stratum(s) for s in samples]
    counts = Counter(strata)
    n_holdout = max(1, round(len(samples) * fraction))
    stratify = strata if min(counts.values()) >= 2 and n_holdout >= len(counts) else None
    train, holdout = train_test_split(
        list(samples), test_size=n_holdout, random_state=seed, stratify=stratify
    )
    return list(train), list(holdout)
