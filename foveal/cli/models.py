"""``foveal models``: what the registry can build."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.cli.parser import tasks_help


def run_models(args: argparse.Namespace) -> list[dict[str, str]]:
    from rich.console import Console
    from rich.table import Table

    from foveal.tasks import list_models

    rows = list_models(task=args.task, pattern=args.pattern)
    if not args.json:
        table = Table(title=f"models ({len(rows)})")
        for column in ("name", "task", "description"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        if args.pattern is None:
            print("timm models: pass a pattern, e.g. foveal models 'timm:efficientnet*'")
    return [{"name": n, "task": t, "description": d} for n, t, d in rows]


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("models", help="list the models the registry can build")
    p.add_argument(
        "pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'tv:resnet*' or 'timm:vit*'"
    )
    p.add_argument("--task", default=None, help=tasks_help("only the models of this task's model family"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_models)
