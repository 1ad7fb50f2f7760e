"""``foveal.active_query``: rank an unlabelled pool of images for a person to label next.

Strategies (``foveal.analysis.active.strategies``): ``random``; ``least-confidence``, ``margin``,
``entropy`` (one pass); ``bald``, ``mc-entropy`` (T MC-dropout passes); ``coreset`` (k-center greedy
on the embeddings, the labelled set's embeddings as the initial centers when ``labelled`` is given);
``cluster`` (k-means into ``n`` clusters on the embeddings, the highest-entropy image of each).
An image's uncertainty reduces its units' scores: classify one unit (multilabel: one per label),
segment its pixels, detect/instance/pose its boxes scoring >= 0.25 (its best box when none does), by
their mean or top-k mean (``reduce``). ``query.csv``: rank, path, score, strategy (+ cluster).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foveal.analysis.active.pool import check_dropout, score_pool
from foveal.analysis.active.strategies import (
    MC_DROPOUT,
    REDUCTIONS,
    check_strategy,
    cluster_uncertain,
    k_center_greedy,
    top_ranked,
)
from foveal.atomic import atomic_write_text
from foveal.data.checks import drop_unreadable
from foveal.data.hashing import sha1_bytes
from foveal.data.sample import Sample
from foveal.engine.checkpoint import Loaded, load
from foveal.engine.inference import expand_sources
from foveal.errors import ConfigError, DataError, check_choice


@dataclass
class Query:
    """The ranked images (``rows``: rank, path, score, strategy[, cluster]) and the CSV written."""

    rows: list[dict[str, Any]]
    out: Path | None = None
    pool_size: int = 0
    skipped_labelled: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": None if self.out is None else str(self.out),
            "pool": self.pool_size,
            "skipped_labelled": self.skipped_labelled,
            "rows": self.rows,
        }


def labelled_paths(labelled: str | Path, kind: str) -> list[str]:
    """The images of ``labelled``: a dataset (or manifest) of the task's ``kind``, else a folder of
    images (any nesting)."""
    from foveal.data.index import index_dataset

    try:
        return [entry.path for entry in index_dataset(labelled, kind).entries]
    except DataError:
        return [str(p) for p in expand_sources([str(labelled)])]


def _keys(path: str | Path) -> tuple[str, str]:
    """(resolved path, SHA-1 of the bytes) of a file: an image is labelled when either matches."""
    path = Path(path)
    return str(path.resolve()), sha1_bytes(path.read_bytes())


def unlabelled(pool: Sequence[str], labelled: Sequence[str]) -> list[str]:
    """The paths of ``pool`` that are neither a path nor a byte-identical copy of one in ``labelled``."""
    known = {key for path in labelled for key in _keys(path)}
    return [path for path in pool if not known.intersection(_keys(path))]


def select(
    loaded: Loaded,
    pool: Sequence[str],
    n: int,
    strategy: str,
    *,
    labelled: Sequence[str] = (),
    seed: int = 0,
    **scoring: Any,
) -> list[dict[str, Any]]:
    """The ``n`` images of ``pool`` (paths, none labelled) that ``strategy`` picks, best first, as
    rows {rank, path, score, strategy[, cluster]}; ``labelled`` paths are the core-set's initial
    centers; ``seed``: random, k-means and the MC-dropout masks. ``scoring``: ``score_pool`` options
    (passes, reduce, topk, batch, workers, device)."""
    check_strategy(strategy)
    if strategy in MC_DROPOUT:
        check_dropout(loaded.task, loaded.model, strategy)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n {n}: give the number of images to pick, e.g. --n 100")
    if n > len(pool):
        raise ConfigError(
            f"--n {n}: larger than the pool's {len(pool)} unlabelled images; pass --n {len(pool)} or less"
        )
    samples = [Sample(str(p)) for p in pool]
    task, model = loaded.task, loaded.model
    cluster = None
    if strategy == "random":
        scores = np.random.default_rng(seed).random(len(pool))
        picked = top_ranked(scores, n)
        values = scores[picked]
    elif strategy == "coreset":
        found = score_pool(task, model, samples, strategy=None, embeddings=True, **scoring)
        centers = None
        if labelled:
            centers = score_pool(
                task, model, [Sample(str(p)) for p in labelled], strategy=None, embeddings=True, **scoring
            ).embeddings
        picked, values = k_center_greedy(found.embeddings, n, centers)
    elif strategy == "cluster":
        found = score_pool(task, model, samples, strategy="entropy", embeddings=True, **scoring)
        picked, cluster = cluster_uncertain(found.embeddings, found.scores, n, seed)
        values = found.scores[picked]
    else:
        scores = score_pool(task, model, samples, strategy=strategy, seed=seed, **scoring).scores
        picked = top_ranked(scores, n)
        values = scores[picked]
    rows = []
    for rank, (index, value) in enumerate(zip(picked, values, strict=True), start=1):
        row = {"rank": rank, "path": str(pool[index]), "score": float(value), "strategy": strategy}
        if cluster is not None:
            row["cluster"] = int(cluster[rank - 1])
        rows.append(row)
    return rows


def write_query(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Write ``rows`` as a CSV (rank, path, score, strategy[, cluster]) atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "score": f"{row['score']:.6g}"} for row in rows)
    return atomic_write_text(Path(out), buffer.getvalue())


def active_query(
    weights: str | Path | Loaded,
    pool: str | Path | Sequence[str],
    *,
    n: int = 100,
    strategy: str = "entropy",
    out: str | Path | None = "query.csv",
    labelled: str | Path | None = None,
    passes: int = 10,
    reduce: str = "mean",
    topk: int = 100,
    seed: int = 0,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    on_bad_image: str = "error",
) -> Query:
    """Rank the unlabelled images of ``pool`` (folders, any nesting; files; globs) for labelling with
    checkpoint ``weights`` and pick the ``n`` that ``strategy`` (one of ``strategies.STRATEGIES``) prefers.

    ``labelled`` (a dataset, manifest or folder of images): its images (same path or same bytes) are
    left out of the pool, and are the core-set's initial centers. ``passes``: MC-dropout passes T;
    ``reduce``: 'mean' or 'topk' (mean of the ``topk`` most uncertain pixels/boxes); ``seed``: random
    and k-means. Writes ``out`` (a CSV; None: nothing written). Returns the rows, best first.
    """
    check_strategy(strategy)
    check_choice("--reduce", reduce, REDUCTIONS)
    loaded = weights if isinstance(weights, Loaded) else load(weights)
    sources = [str(pool)] if isinstance(pool, str | Path) else [str(p) for p in pool]
    paths = [s.path for s in drop_unreadable([Sample(str(p)) for p in expand_sources(sources)], on_bad_image)]
    if not paths:
        raise DataError(f"{', '.join(sources)}: no readable images in the pool; pass a folder of images")
    known = labelled_paths(labelled, loaded.task.dataset_kind) if labelled is not None else []
    todo = unlabelled(paths, known) if known else paths
    if not todo:
        raise DataError(
            f"{', '.join(sources)}: all {len(paths)} pool images are already labelled in {labelled}; "
            "add unlabelled images to the pool"
        )
    rows = select(
        loaded,
        todo,
        n,
        strategy,
        labelled=known,
        seed=seed,
        passes=passes,
        reduce=reduce,
        topk=topk,
        batch=batch,
        workers=workers,
        device=device,
    )
    written = write_query(rows, out) if out is not None else None
    return Query(rows, written, len(todo), len(paths) - len(todo))
