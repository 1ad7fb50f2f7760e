"""``foveal baseline``: placeholder until its implementation lands."""

from __future__ import annotations

from typing import Any


def add_parsers(commands: Any) -> None:
    """Register the command(s) on the top-level sub-parsers."""
