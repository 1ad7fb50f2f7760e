"""Image hashes for duplicate search: SHA-1 of the file bytes and a 64-bit perceptual dHash.

``dhash``: grayscale, resize to 9x8 (box filter), one bit per horizontal neighbour pair (left < right),
row-major, as an int in [0, 2**64). Resizing or JPEG re-encoding changes only a few bits, so near
duplicates are pairs at a small Hamming distance; ``near_pairs`` finds them without comparing all pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

HASH_BITS = 64


def sha1_bytes(data: bytes) -> str:
    """Hex SHA-1 of ``data`` (a file's bytes): equal for exact duplicates."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def dhash(image: Image.Image) -> int:
    """64-bit difference hash of a decoded ``image`` of any mode (16-bit and float modes rescaled)."""
    return dhash_thumb(image)[0]


def dhash_thumb(image: Image.Image) -> tuple[int, np.ndarray]:
    """The dHash of ``image`` and an (8, 9, 3) float32 colour thumbnail (0..255) at the hash's grid, to
    confirm near duplicates: the hash sees luminance only, so two same-shaped images of different
    colours can share it."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        gray = Image.fromarray(arr.astype(np.float32), mode="F")
        colour = None
    else:
        gray = image.convert("L") if image.mode != "L" else image
        colour = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    small = np.asarray(gray.resize((9, 8), Image.Resampling.BOX), dtype=np.float32)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    if colour is None or colour.mode == "L":
        thumb = np.repeat(small[:, :, None], 3, axis=2)
    else:
        thumb = np.asarray(colour.resize((9, 8), Image.Resampling.BOX), dtype=np.float32)
    return int.from_bytes(np.packbits(bits).tobytes(), "big"), thumb


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def _bands(threshold: int) -> list[tuple[int, int]]:
    """``threshold + 1`` contiguous bit ranges (shift, width) covering 64 bits: two hashes within
    ``threshold`` bits differ in at most ``threshold`` bands, so (pigeonhole) they agree on one."""
    n = min(HASH_BITS, threshold + 1)
    edges = [round(i * HASH_BITS / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(n)]


def _pairs_within(
    ids: np.ndarray, values: np.ndarray, threshold: int, chunk: int = 2048
) -> list[tuple[int, int]]:
    """Pairs (i < j) among ``ids`` whose hashes ``values[ids]`` are within ``threshold`` bits."""
    found: list[tuple[int, int]] = []
    hashes = values[ids]
    for start in range(0, len(ids), chunk):
        block = hashes[start : start + chunk]
        dist = np.bitwise_count(block[:, None] ^ hashes[None, :])
        rows, cols = np.nonzero(dist <= threshold)
        keep = cols > rows + start
        found.extend(zip(ids[rows[keep] + start].tolist(), ids[cols[keep]].tolist(), strict=True))
    return found


def near_pairs(hashes: Sequence[int], threshold: int = 6) -> list[tuple[int, int, int]]:
    """Index pairs (i, j, distance), i < j, of ``hashes`` (64-bit ints) within ``threshold`` bits.

    Candidates share one of ``threshold + 1`` bands (bucketed by sorting), then are verified by
    popcount; equal hashes are included (distance 0).
    """
    if threshold < 0:
        raise ValueError(f"hamming threshold {threshold} must be >= 0")
    values = np.asarray([h & (2**64 - 1) for h in hashes], dtype=np.uint64)
    if len(values) < 2:
        return []
    if threshold >= HASH_BITS:
        pairs = set(_pairs_within(np.arange(len(values)), values, threshold))
    else:
        pairs = set()
        for shift, width in _bands(threshold):
            band = (values >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            order = np.argsort(band, kind="stable")
            sorted_band = band[order]
            starts = np.flatnonzero(np.r_[True, sorted_band[1:] != sorted_band[:-1]])
            ends = np.r_[starts[1:], len(order)]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                if e - s > 1:
                    pairs.update(_pairs_within(np.sort(order[s:e]), values, threshold))
    return sorted((i, j, hamming(int(values[i]), int(values[j]))) for i, j in pairs)
