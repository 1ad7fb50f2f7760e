"""``foveal val`` and ``foveal predict``."""

from __future__ import annotations

import argparse
from typing import Any


def run_val(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.cli.show import print_metrics
    from foveal.engine.evaluation import evaluate
    from foveal.errors import ConfigError

    if args.predictions is not None:
        from foveal.engine.results_eval import evaluate_results

        if args.weights is not None:
            raise ConfigError(
                "pass either --weights (evaluate a model) or --predictions (a results file), not both"
            )
        metrics = evaluate_results(
            args.data, args.predictions, task=args.task or "detect", split=args.split, fmt=args.format
        )
        if not args.json:
            print_metrics(metrics, title=f"{args.predictions} on {args.data} ({args.split})")
        return metrics
    if args.weights is None:
        raise ConfigError("foveal val needs --weights CKPT (or --predictions RESULTS.json for detection)")
    metrics = evaluate(
        args.weights,
        args.data,
        split=args.split,
        task=args.task,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        fmt=args.format,
        on_bad_image=args.on_bad_image,
        plots=args.plots,
        errors=_errors_folder(args) if args.errors is not None else None,
    )
    if not args.json:
        print_metrics(metrics, title=f"{args.weights} on {args.data} ({args.split})")
        if "errors" in metrics:
            errors = metrics["errors"]
            print(f"error analysis: {errors.get('json')}, plots: {', '.join(errors['plots']) or 'none'}")
    if args.tta is not None:
        metrics["tta"] = _val_tta(args, metrics)
    return metrics


def _val_tta(args: argparse.Namespace, single: dict[str, Any]) -> dict[str, Any]:
    """Metrics with TTA beside the single pass; saved as the run's comparisons/tta.json."""
    from foveal.atomic import atomic_write_text
    from foveal.cli.show import print_metrics
    from foveal.engine.evaluation import evaluate
    from foveal.report.html import refresh_report, run_folder
    from foveal.serialize import dumps

    tta = evaluate(
        args.weights, args.data, split=args.split, task=args.task, batch=args.batch, workers=args.workers,
        device=args.device, fmt=args.format, on_bad_image=args.on_bad_image, tta=args.tta,
    )  # fmt: skip
    if not args.json:
        print_metrics(tta, title=f"with TTA ({args.tta}) on {args.data} ({args.split})")
    run = run_folder(args.weights)
    if run is not None:
        doc = {"tta": args.tta, "split": args.split, "data": str(args.data), "metrics": tta, "single": single}
        atomic_write_text(run / "comparisons" / "tta.json", dumps(doc, indent=1))
        refresh_report(run)
    return tta


def _errors_folder(args: argparse.Namespace) -> str:
    """``--errors DIR``; bare ``--errors``: the ``--plots`` folder, else a new ``runs/<task>/errors[-N]``."""
    if args.errors != "auto":
        return args.errors
    if args.plots is not None:
        return args.plots
    from foveal.engine.checkpoint import read_checkpoint
    from foveal.engine.rundir import new_run_dir

    task = read_checkpoint(args.weights)["foveal"]["meta"].get("task", "run")
    return str(new_run_dir(f"runs/{task}", "errors"))


def run_predict(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from foveal.engine.checkpoint import load
    from foveal.engine.evaluation import json_rows, predict, prediction_folder

    loaded = load(args.weights, task=args.task)
    out = prediction_folder(loaded) if args.out == "auto" else args.out
    if loaded.task.name == "classify":
        options: dict[str, Any] = {"topk": args.topk}
    elif loaded.task.name == "segment":
        options = {
            "instances": args.instances,
            "min_size": args.min_size,
            "fill_holes": args.fill_holes,
            "open_radius": args.open_radius,
            "close_radius": args.close_radius,
        }
    else:
        options = {"conf": args.conf, "iou": args.iou, "max_det": args.max_det}
    rows = predict(
        loaded,
        args.sources,
        out=out,
        tta=args.tta,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        on_bad_image=args.on_bad_image,
        render=args.render,
        **options,
    )
    if not args.json:
        table = Table(title=f"predictions ({len(rows)} images) in {out}")
        table.add_column("image")
        table.add_column("prediction")
        for row in rows[:50]:
            table.add_row(row["path"], row["summary"])
        Console().print(table)
        if len(rows) > 50:
            print(f"... {len(rows) - 50} more")
    return {"out": str(out), "predictions": json_rows(rows)}


def _common(p: argparse.ArgumentParser, weights_required: bool = True) -> None:
    p.add_argument("--weights", required=weights_required, help="checkpoint (.ckpt) or run folder")
    p.add_argument("--task", default=None, help="expected task; fails if the checkpoint is of another")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--on-bad-image", default="error", help="error | skip")
    p.add_argument("--json", action="store_true", help="print one JSON object/array on stdout")
    p.add_argument(
        "--tta",
        nargs="?",
        const="hflip",
        default=None,
        metavar="VIEWS",
        help="test-time augmentation: hflip (bare --tta), vflip, scale, comma-separated",
    )


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("val", help="evaluate a checkpoint on labelled data")
    _common(p, weights_required=False)
    p.add_argument("--data", required=True, help="dataset folder or CSV")
    p.add_argument(
        "--predictions", default=None, help="detect/instance/pose: evaluate this COCO results JSON instead"
    )
    p.add_argument("--split", default="val", help="val | test | train")
    p.add_argument("--format", default="auto")
    p.add_argument("--plots", default=None, help="folder for evaluation plots")
    p.add_argument(
        "--errors",
        nargs="?",
        const="auto",
        default=None,
        metavar="DIR",
        help="also write errors.json and error plots (top losses, false positives/negatives) into DIR "
        "(bare: the --plots folder, else a new runs/<task>/errors-N)",
    )
    p.set_defaults(func=run_val)
    p = commands.add_parser("predict", help="predict image files, folders or globs")
    _common(p)
    p.add_argument("sources", nargs="+", help="images, folders or glob patterns")
    p.add_argument(
        "--out", default="auto", help="folder for predictions.json/.csv (a new runs/<task>/predict-N)"
    )
    p.add_argument("--topk", type=int, default=5, help="classify: classes per image")
    p.add_argument("--render", action="store_true", help="also write overlay PNGs")
    p.add_argument("--instances", action="store_true", help="segment: count instances (watershed)")
    p.add_argument("--min-size", type=int, default=0, help="segment: drop components below N pixels")
    p.add_argument("--fill-holes", action="store_true", help="segment: fill enclosed holes")
    p.add_argument("--open-radius", type=int, default=0, help="segment: morphological opening radius")
    p.add_argument("--close-radius", type=int, default=0, help="segment: morphological closing radius")
    p.add_argument("--conf", type=float, default=0.25, help="detect: minimum score")
    p.add_argument("--iou", type=float, default=None, help="detect: extra class-aware NMS at this IoU")
    p.add_argument("--max-det", type=int, default=300, help="detect: detections per image at most")
    p.set_defaults(func=run_predict)
