"""Seeded, stratified splits: the trainers' automatic validation split (``stratified_split``) and the
group-aware iterative stratification behind ``foveal data split`` (``iterative_stratify``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

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


EMPTY_LABEL = "(empty)"


def _part_key(
    vector: dict[str, int],
    main: str | None,
    need: dict[str, float],
    totals: Mapping[str, int],
    behind: float,
    tie: float,
) -> tuple:
    """How much a part wants a unit (larger is better); see ``iterative_stratify``."""
    if main is None:
        return (behind, tie)
    deficit = round(need[main], 9)
    if len(vector) == 1:  # any count between floor and ceiling is as good: balance the part sizes
        below_floor = math.floor(deficit + 1e-9) if deficit > 0 else 0
        return (deficit - vector[main] > -1 + 1e-9, below_floor, behind, tie)
    spread = sum(count * need[label] / totals[label] for label, count in vector.items())
    return (deficit, round(spread, 9), behind, tie)


def iterative_stratify(
    labels: Sequence[Mapping[str, int]],
    sizes: Sequence[int],
    fractions: Sequence[float],
    seed: int,
) -> list[int]:
    """Assign units (groups, or single images) to parts of the given ``fractions``; return each unit's part.

    ``labels[u]`` counts the images of unit ``u`` carrying each label (multilabel images count under each
    of their labels), ``sizes[u]`` is its number of images. Iterative stratification after Sechidis et
    al. (2011), extended to groups. Units are visited in a seeded random order, larger units first, then
    those carrying the rarest label. A unit's main label is the one it holds the largest share of (for
    one image: its rarest label). A unit of one label goes to a part that it does not push past the
    ceiling of its target for that label, the part still furthest below the floor of that target first;
    a unit of several labels goes to the part with the largest remaining deficit (images still wanted)
    for its main label, ties to the largest deficit summed over all its labels (each relative to the
    label's total). Remaining ties go to the part most behind its share of the units placed so far, then
    to a seeded draw. Parts of fraction 0 get nothing. Single images of one label each end with every
    label's count in every part within 1 of ``fraction * label total`` (its floor or ceiling), and the
    parts' sizes close to their fractions.
    """
    if len(labels) != len(sizes):
        raise ValueError(f"{len(labels)} label vectors for {len(sizes)} unit sizes")
    import numpy as np

    rng = np.random.default_rng([seed, 7])
    parts = [j for j, f in enumerate(fractions) if f > 0]
    vectors = [{label: count for label, count in v.items() if count} for v in labels]
    totals: Counter[str] = Counter()
    for vector in vectors:
        totals.update(vector)
    need = [{label: f * total for label, total in totals.items()} for f in fractions]
    order = [int(u) for u in rng.permutation(len(sizes))]
    rarest = [min((totals[label] for label in vector), default=0) for vector in vectors]
    order.sort(key=lambda u: (-sizes[u], rarest[u]))  # stable: the shuffle orders equal keys
    ties = rng.random((len(sizes), len(fractions)))
    assigned = [0] * len(sizes)
    placed, filled = 0, [0] * len(fractions)  # images placed so far, in all and per part
    for u in order:
        vector = vectors[u]
        main = max(vector, key=lambda label: (vector[label] / totals[label], label)) if vector else None
        keys = {}
        for j in parts:
            behind = round(fractions[j] * (placed + sizes[u]) - filled[j], 9)
            keys[j] = _part_key(vector, main, need[j], totals, behind, float(ties[u, j]))
        best = max(parts, key=keys.__getitem__)
        assigned[u] = best
        for label, count in vector.items():
            need[best][label] -= count
        placed += sizes[u]
        filled[best] += sizes[u]
    return assigned
