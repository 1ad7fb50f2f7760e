"""``foveal ensemble``: members and their ensemble side by side."""

from __future__ import annotations

import argparse
from typing import Any


def _short(path: str) -> str:
    """'RUN/checkpoints/best.ckpt' -> 'RUN/best.ckpt' (the run's name says which model it is)."""
    from pathlib import Path

    p = Path(path)
    return f"{p.parent.parent.name}/{p.name}" if p.parent.name == "checkpoints" else str(p)


def run_ensemble(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from foveal.analysis.ensemble import ensemble

    result = ensemble(
        args.weights,
        args.data,
        split=args.split,
        method=args.method,
        member_weights=args.member_weights,
        oof=args.oof,
        tta=args.tta,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        fmt=args.format,
        out=args.out,
        run=args.run,
        project=args.project,
        name=args.name,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
    )
    from foveal.tasks import get_task

    task = get_task(result.task)
    columns = [
        c for c in task.headline_metrics or (task.monitor,) if isinstance(result.metrics.get(c), float)
    ]
    table = Table(title=f"ensemble ({result.method}) on {args.data} ({result.split}): {result.out}")
    for column in ("model", "weight", *columns):
        table.add_column(column, justify="left" if column == "model" else "right")
    for path, weight, metrics in zip(result.members, result.weights, result.member_metrics, strict=True):
        values = (f"{metrics.get(c, float('nan')):.4f}" for c in columns)
        table.add_row(_short(path), f"{weight:.3f}", *values)
    table.add_row(f"ensemble ({result.method})", "", *(f"{result.metrics[c]:.4f}" for c in columns),
                  style="bold")  # fmt: skip
    Console().print(table)
    return result.to_dict()


def add_parsers(commands: Any) -> None:
    from foveal.cli.parser import add_process_flags

    p = commands.add_parser("ensemble", help="evaluate checkpoints and their ensemble side by side")
    p.add_argument("--weights", nargs="+", required=True, help="two or more checkpoints (or run folders)")
    p.add_argument("--data", required=True, help="dataset (folder, CSV or split manifest)")
    p.add_argument("--split", default="val", help="val | test | train (val)")
    p.add_argument("--method", default="mean", help="mean | weighted | vote | stack (mean)")
    p.add_argument("--member-weights", default=None, help="weighted: comma-separated, one per model")
    p.add_argument("--oof", nargs="+", default=None, help="stack: one foveal cv oof.json per model")
    p.add_argument("--tta", nargs="?", const="hflip", default=None, help="TTA views for every member")
    p.add_argument("--format", default="auto")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    add_process_flags(p)
    p.add_argument("--out", default=None, help="folder for ensemble.json (default: a new PROJECT/NAME)")
    p.add_argument("--project", default=None, help="parent folder of the ensemble (default runs/<task>)")
    p.add_argument("--name", default=None, help="folder name of the ensemble (default ensemble)")
    p.add_argument("--run", default=None, help="also write RUN/comparisons/ensemble.json for its report")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ensemble)
