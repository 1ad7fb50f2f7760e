"""Active-learning scores and selections on plain tensors and arrays.

Uncertainty scores map (..., K) class probabilities to (...) scores, larger = more uncertain:
least-confidence 1 - max p, margin 1 - (p1 - p2) (the two largest), entropy -sum p log p (nats).
MC-dropout scores take (T, ..., K) probabilities of T stochastic passes: BALD, the mutual information
H(mean_t p) - mean_t H(p), and the entropy of the mean H(mean_t p). An image's score reduces its units'
scores (pixels, boxes; one unit for a classified image) by their mean or the mean of the top k.
Selections: :func:`k_center_greedy` (core-set) and :func:`cluster_uncertain` (k-means on embeddings,
the most uncertain image of each cluster).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from foveal.errors import check_choice

UNCERTAINTY = ("least-confidence", "margin", "entropy")
MC_DROPOUT = ("bald", "mc-entropy")
STRATEGIES = ("random", *UNCERTAINTY, *MC_DROPOUT, "coreset", "cluster")
REDUCTIONS = ("mean", "topk")
EPS = 1e-12


def check_strategy(name: str) -> str:
    """``name`` if it is a strategy, else a ConfigError listing them."""
    return check_choice("active-learning strategy", name, STRATEGIES)


def least_confidence(probs: Tensor) -> Tensor:
    """(..., K) probabilities -> (...) 1 - the largest probability."""
    return 1 - probs.max(dim=-1).values


def margin(probs: Tensor) -> Tensor:
    """(..., K) probabilities (K >= 2) -> (...) 1 - (largest - second largest)."""
    top = probs.topk(2, dim=-1).values
    return 1 - (top[..., 0] - top[..., 1])


def entropy(probs: Tensor) -> Tensor:
    """(..., K) probabilities -> (...) Shannon entropy in nats."""
    return -(probs * probs.clamp_min(EPS).log()).sum(dim=-1)


def bald_of_means(mean_probs: Tensor, mean_entropy: Tensor) -> Tensor:
    """BALD from the (..., K) mean probabilities and the (...) mean entropy of T passes."""
    return (entropy(mean_probs) - mean_entropy).clamp_min(0)


def mc_entropy_of_means(mean_probs: Tensor, mean_entropy: Tensor) -> Tensor:
    """The entropy of the (..., K) mean probabilities of T passes (``mean_entropy`` is not needed)."""
    return entropy(mean_probs)


def bald(probs: Tensor) -> Tensor:
    """(T, ..., K) probabilities of T passes -> (...) mutual information H(mean p) - mean H(p)."""
    return bald_of_means(probs.mean(dim=0), entropy(probs).mean(dim=0))


def mc_entropy(probs: Tensor) -> Tensor:
    """(T, ..., K) probabilities of T passes -> (...) entropy of their mean."""
    return mc_entropy_of_means(probs.mean(dim=0), entropy(probs).mean(dim=0))


SCORES = {"least-confidence": least_confidence, "margin": margin, "entropy": entropy}
MC_SCORES = {"bald": bald_of_means, "mc-entropy": mc_entropy_of_means}  # from running means over passes


def reduce_units(scores: Tensor, how: str = "mean", topk: int = 100) -> float:
    """(M,) unit scores -> one image score: their mean, or the mean of the ``topk`` largest; 0 when
    the image has no unit (a detector that found nothing)."""
    check_choice("--reduce", how, REDUCTIONS)
    if scores.numel() == 0:
        return 0.0
    if how == "topk":
        scores = scores.topk(min(topk, scores.numel())).values
    return float(scores.float().mean())


def top_ranked(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest of (N,) ``scores``, largest first (ties: the earlier index)."""
    return np.argsort(-scores, kind="stable")[:n]


def k_center_greedy(
    pool: np.ndarray, n: int, centers: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (core-set) selection of ``n`` rows of (N, D) ``pool``: each pick is the point
    farthest (Euclidean) from every center so far; the initial centers are (L, D) ``centers`` (the
    labelled set), else the pool's mean. Returns the (n,) picked indices and (n,) their distances
    to the nearest center when picked."""
    pool = np.asarray(pool, dtype=np.float64)
    start = pool.mean(axis=0, keepdims=True) if centers is None or len(centers) == 0 else centers
    nearest = _min_distances(pool, np.asarray(start, dtype=np.float64))
    picked, distances = [], []
    for _ in range(n):
        index = int(np.argmax(nearest))
        picked.append(index)
        distances.append(float(nearest[index]))
        nearest = np.minimum(nearest, np.linalg.norm(pool - pool[index], axis=1))
        nearest[index] = -1.0  # never picked twice, even among duplicates
    return np.asarray(picked, dtype=np.int64), np.asarray(distances)


def _min_distances(pool: np.ndarray, centers: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(N,) distance of each pool row to its nearest row of ``centers`` (in chunks of centers)."""
    nearest = np.full(len(pool), np.inf)
    for i in range(0, len(centers), chunk):
        block = torch.cdist(torch.from_numpy(pool), torch.from_numpy(centers[i : i + chunk]))
        nearest = np.minimum(nearest, block.min(dim=1).values.numpy())
    return nearest


def cluster_uncertain(
    embeddings: np.ndarray, scores: np.ndarray, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-then-uncertainty: k-means with ``n`` clusters on (N, D) ``embeddings``, then the
    highest-scoring image of each cluster ((N,) ``scores``). Returns (n,) indices, most uncertain
    first, and (n,) their clusters."""
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=n, n_init=3, random_state=seed).fit_predict(np.asarray(embeddings, np.float64))
    best = {}
    for index in top_ranked(np.asarray(scores, dtype=np.float64), len(scores)):
        best.setdefault(int(labels[index]), int(index))
    chosen = sorted(best.values(), key=lambda i: (-scores[i], i))
    if len(chosen) < n:  # duplicate embeddings left some clusters empty: the most uncertain others
        rest = [
            int(i)
            for i in top_ranked(np.asarray(scores, dtype=np.float64), len(scores))
            if i not in best.values()
        ]
        chosen += rest[: n - len(chosen)]
    picked = np.asarray(chosen, dtype=np.int64)
    return picked, labels[picked]
