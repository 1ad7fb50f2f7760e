"""Up-front image checks: decode every image once so bad files fail fast, or are skipped."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from foveal.data.imageio import load_rgb
from foveal.data.sample import Sample
from foveal.errors import BadImageError, check_choice

log = logging.getLogger("foveal")

ON_BAD_IMAGE = ("error", "skip")


def _problem(sample: Sample) -> str | None:
    try:
        load_rgb(sample.path)
    except BadImageError as err:
        return str(err)
    return None


def drop_unreadable(samples: Sequence[Sample], on_bad_image: str = "error", workers: int = 4) -> list[Sample]:
    """Decode every image; raise on the first bad one, or skip bad ones with one warning.

    With ``on_bad_image="skip"`` a warning states the count and the first few paths.
    """
    check_choice("--on-bad-image value", on_bad_image, ON_BAD_IMAGE)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(_problem, samples))
    bad = [(s, p) for s, p in zip(samples, problems) if p is not None]
    if not bad:
        return list(samples)
    if on_bad_image == "error":
        raise BadImageError(
            bad[0][1] if len(bad) == 1 else f"{bad[0][1]} (and {len(bad) - 1} more bad images)"
        )
    first = ", ".join(s.path for s, _ in bad[:3])
    log.warning(
        "skipped %d unreadable image(s) of %d: %s%s",
        len(bad),
        len(samples),
        first,
        " ..." if len(bad) > 3 else "",
    )
    return [s for s, p in zip(samples, problems) if p is None]
