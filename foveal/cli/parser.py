"""The ``foveal`` argument parser: sub-parsers may defer building some of their arguments until used."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


class FovealParser(argparse.ArgumentParser):
    """An ArgumentParser whose :meth:`defer`-red builders run only when it is used: when it parses
    its arguments or formats its help or usage. Arguments that need slow imports (e.g. every task's
    predict options, which import torch) so cost nothing to ``foveal --help`` or other commands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, build: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call ``build(self)`` (adding arguments) before this parser is first used."""
        self._deferred.append(build)

    def _build(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._build()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._build()
        return super().format_usage()

    def format_help(self) -> str:
        self._build()
        return super().format_help()


def tasks_help(what: str) -> str:
    """``what`` followed by the registered tasks, for a ``--task`` flag without a default."""
    from foveal.tasks import task_names

    return f"{what}: {' | '.join(task_names())}"


def add_process_flags(p: argparse.ArgumentParser) -> None:
    """--devices/--strategy/--num-nodes of a command that shares its images over DDP processes."""
    from foveal.config import int_or_auto

    p.add_argument("--devices", type=int_or_auto, default=1, help="processes per node sharing the images (1)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy for --devices > 1, e.g. ddp")
    p.add_argument("--num-nodes", type=int, default=1, help="machines sharing the images (1)")
