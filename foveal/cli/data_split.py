"""``foveal data split``: stratified, group-aware train/val/test or k-fold split manifests."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.data.kinds import AUTO, task_help


def _print(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    grouped = f", {result.n_groups} groups ({result.group_by})" if result.group_by else ""
    table = Table(
        title=escape(
            f"data split: {result.source} ({result.task}, {result.n_images} images{grouped}, "
            f"seed {result.seed})"
        )
    )
    table.add_column("")
    for part in result.parts:
        table.add_column(part.replace("fold_", "val fold ") if result.folds else part, justify="right")
    table.add_row("images", *(str(result.images[p]) for p in result.parts), style="bold")
    if result.group_by:
        table.add_row("groups", *(str(result.groups[p]) for p in result.parts))
    for label in result.labels:
        table.add_row(escape(label), *(str(result.counts[p][label]) for p in result.parts))
    console.print(table)
    for path in result.paths:
        console.print(f"wrote {path}", markup=False, highlight=False)


def run_split(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.data.splitting import split_dataset

    result = split_dataset(
        args.path,
        args.out,
        task=args.task,
        fmt=args.format,
        fractions=args.fractions,
        val=args.val,
        test=args.test,
        group_by=args.group_by,
        folds=args.folds,
        seed=args.seed,
        keep_test=args.keep_test,
        force=args.force,
    )
    if not args.json:
        _print(result)
    return result.to_dict()


def add_parser(actions: Any) -> None:
    """Register the action on the ``foveal data`` sub-parsers."""
    p = actions.add_parser(
        "split",
        help="stratified, group-aware train/val/test or k-fold split manifests (usable as --data)",
    )
    p.add_argument("path", metavar="PATH", help="dataset folder (or CSV / COCO .json / YOLO .yaml file)")
    p.add_argument("--out", required=True, help="folder for split.json (or fold_k.json + folds.csv)")
    p.add_argument("--task", default=AUTO, help=task_help())
    p.add_argument("--format", default="auto", help="input format for the task's reader (default auto)")
    p.add_argument("--fractions", help="train,val[,test] fractions summing to 1 (default 0.7,0.15,0.15)")
    p.add_argument("--val", type=float, help="validation fraction (default 0.15); train gets the rest")
    p.add_argument("--test", type=float, help="test fraction (default 0.15; with --folds: none)")
    p.add_argument(
        "--group-by",
        metavar="X",
        help="keep groups in one split: a column of the classification CSV, else a regex on file names "
        "(its first capture group, or the whole match, names the group), e.g. '^([^_]+)_'",
    )
    p.add_argument("--folds", type=int, help="K: write K folds (fold_0.json ...) instead of one split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-test", action="store_true", help="keep the on-disk test split; split the rest")
    p.add_argument("--force", action="store_true", help="replace manifests already in --out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_split)
