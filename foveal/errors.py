"""User-facing errors: each names the file or value at fault and the fix.

The CLI prints a ``FovealError`` as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FovealError(Exception):
    """A user mistake (bad path, bad value, bad file) with an actionable message."""


class ConfigError(FovealError):
    """An unknown or invalid option, name or value."""


class DataError(FovealError):
    """A dataset that cannot be read or used as given."""


class BadImageError(DataError):
    """An image file that is empty, truncated or not an image."""


class CheckpointError(FovealError):
    """A checkpoint that cannot be loaded or belongs to another task."""


class ExportError(FovealError):
    """A model that cannot be exported, or an export that does not match its checkpoint."""


class DivergedError(FovealError):
    """The training loss became NaN or infinite: the recipe (learning rate, loss) does not train."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for close matches of ``value`` in ``choices``, or ''."""
    choices = list(choices)
    matches = difflib.get_close_matches(value, choices, n=n, cutoff=0.5)
    if not matches:
        lowered = value.lower()
        matches = [c for c in choices if lowered in c.lower()][:n]
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ConfigError with close matches."""
    choices = list(choices)
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise ConfigError(f"unknown {kind} '{value}'{hint}; choose one of: {', '.join(choices)}")
    return value
