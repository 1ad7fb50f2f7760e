"""``foveal demo``: the main job on the embedded synthetic shapes data."""

from __future__ import annotations

import argparse
from typing import Any


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.demo import run_demo as demo

    return demo(project=args.project, n=args.n, epochs=args.epochs, seed=args.seed, tasks=args.task)


def add_parsers(commands: Any) -> None:

    p = commands.add_parser("demo", help="generate shapes and train/evaluate/predict on them")
    p.add_argument("--project", default="runs/demo", help="where the data and runs go (runs/demo)")
    p.add_argument("--n", type=int, default=None, help="number of images (default per task)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default per task)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--task", action="append", help="task to demo (repeatable; default: every task with a demo recipe)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_demo)
