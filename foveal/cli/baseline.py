"""``foveal baseline``: a classical classifier (HOG or pixels + scikit-learn) scored like a deep run."""

from __future__ import annotations

import argparse
from typing import Any


def run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.analysis.baseline import baseline
    from foveal.cli.show import print_metrics

    result = baseline(
        args.data,
        features=args.features,
        model=args.model,
        imgsz=args.imgsz,
        smote=args.smote,
        seed=args.seed,
        val_fraction=args.val_fraction,
        project=args.project,
        name=args.name,
        run=args.run,
        fmt=args.format,
        progress=args.progress,
    )
    print_metrics(result.metrics, title=f"baseline {args.features}+{args.model} on validation")
    out: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "metrics": result.metrics,
        "seconds": round(result.seconds, 2),
    }
    if result.comparison is not None:
        out["comparison"] = result.comparison
        _print_comparison(result.comparison, f"{args.features}+{args.model}")
    print(f"run: {result.run_dir}  ({result.seconds:.1f} s)")
    return out


def _print_comparison(table: dict[str, dict[str, dict[str, float | None]]], label: str) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"deep vs baseline ({label})")
    view.add_column("metric")
    for split in table:
        view.add_column(f"deep ({split})", justify="right")
        view.add_column(f"baseline ({split})", justify="right")
    keys = next(iter(table.values())).keys()
    for key in keys:
        cells = [_cell(table[split][key][who]) for split in table for who in ("deep", "baseline")]
        view.add_row(key, *cells)
    Console().print(view)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def add_parsers(commands: Any) -> None:
    """Register the command(s) on the top-level sub-parsers."""
    from foveal.analysis.baseline import FEATURES, MODELS

    p = commands.add_parser(
        "baseline",
        help="classical baseline (HOG/pixels + scikit-learn) scored with the CNN's metrics",
        description="Fit a classical classifier on a classification dataset and write a run folder "
        "(metrics.json, model.joblib, plots, report.html) comparable with a deep run.",
    )
    p.add_argument("--data", required=True, help="dataset folder or CSV file (single-label)")
    p.add_argument("--features", default="hog", help=f"{'|'.join(FEATURES)} (hog)")
    p.add_argument("--model", default="logreg", help=f"{'|'.join(MODELS)} (logreg)")
    p.add_argument("--smote", action="store_true", help="oversample the training features with SMOTE")
    p.add_argument("--imgsz", type=int, default=64, help="images are resized to this square size (64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the val split and the models (0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share when no val split (0.2)")
    p.add_argument("--format", default="auto", help="auto|imagefolder|csv")
    p.add_argument("--run", default=None, help="a deep run folder to compare with (writes comparisons/)")
    p.add_argument("--project", default="runs", help="parent folder of runs (runs/classify/...)")
    p.add_argument("--name", default=None, help="run name (default baseline-<features>-<model>)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.set_defaults(func=run_baseline)
