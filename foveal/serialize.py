"""Strict JSON for results: NaN/inf become null, paths and numpy/torch scalars become plain values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """A JSON-safe copy of ``value``."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return str(value)


def dumps(value: Any, indent: int | None = None) -> str:
    """Standard JSON text (no NaN) for ``value``."""
    return json.dumps(plain(value), indent=indent, allow_nan=False)
