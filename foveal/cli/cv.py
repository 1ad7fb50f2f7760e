"""``foveal cv``: k-fold cross-validation with the training options."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.cli.train import S, add_train_options, options


def run_cv(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from foveal.analysis.cv import cross_validate

    result = cross_validate(**options(args))
    table = Table(title=f"{len(result.runs)}-fold cross-validation: {result.out}")
    for column in ("metric", "mean", "std", "95% interval"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, s in result.summary.items():
        table.add_row(key, f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['ci95'][0]:.4f} .. {s['ci95'][1]:.4f}")
    Console().print(table)
    if result.resumed:
        print(f"folds already finished (not retrained): {result.resumed}")
    print(f"out-of-fold predictions: {result.oof}")
    return result.to_dict()


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("cv", help="k-fold cross-validation: K runs, mean ± std, out-of-fold predictions",
                            argument_default=S)  # fmt: skip
    add_train_options(p)
    p.add_argument("--folds", type=int, default=5, help="K folds (5)")
    p.add_argument("--group-by", default=None, help="CSV column or file-name regex: groups never split")
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="K",
        help="train K folds at once, each in its own process with cores/K threads; more than the folds "
        "or the cores is clamped to them, with a warning (1: one after another)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_cv)
