"""``foveal val`` and ``foveal predict``."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.cli.parser import add_process_flags, tasks_help


def run_val(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.cli.show import print_metrics
    from foveal.errors import ConfigError

    if args.predictions is not None:
        from foveal.engine.results_eval import evaluate_results

        if args.weights is not None:
            raise ConfigError(
                "pass either --weights (evaluate a model) or --predictions (a results file), not both"
            )
        metrics = evaluate_results(
            args.data, args.predictions, task=args.task, split=args.split, fmt=args.format
        )
        if not args.json:
            print_metrics(metrics, title=f"{args.predictions} on {args.data} ({args.split})")
        return metrics
    if args.weights is None:
        raise ConfigError("foveal val needs --weights CKPT (or --predictions RESULTS.json for detection)")
    from foveal.engine.evaluation import evaluate

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
        errors=args.errors,
        project=args.project,
        name=args.name,
        compare_tta=args.tta,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        threads=args.threads,
    )
    if not args.json:
        print_metrics(metrics, title=f"{args.weights} on {args.data} ({args.split})")
        if "errors" in metrics:
            errors = metrics["errors"]
            print(f"error analysis: {errors.get('json')}, plots: {', '.join(errors['plots']) or 'none'}")
        if "tta" in metrics:
            print_metrics(metrics["tta"], title=f"with TTA ({args.tta}) on {args.data} ({args.split})")
    return metrics


def run_predict(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from foveal.engine.evaluation import json_rows, predict, registered_predict_options

    options = {name: getattr(args, name) for name in registered_predict_options() if hasattr(args, name)}
    rows = predict(
        args.weights,
        args.sources,
        out=args.out,
        task=args.task,
        tta=args.tta,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        on_bad_image=args.on_bad_image,
        render=args.render,
        project=args.project,
        name=args.name,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        threads=args.threads,
        **options,
    )
    if not args.json:
        table = Table(title=f"predictions ({len(rows)} images) in {rows.out}")
        table.add_column("image")
        table.add_column("prediction")
        for row in rows[:50]:
            table.add_row(row["path"], row["summary"])
        Console().print(table)
        if len(rows) > 50:
            print(f"... {len(rows) - 50} more")
    return {"out": str(rows.out), "predictions": json_rows(rows)}


def add_predict_options(p: argparse.ArgumentParser) -> None:
    """Every registered task's post-processing options (``Task.predict_options``) as flags; only
    the flags given reach ``predict``, which checks them against the checkpoint's task. Deferred
    (``FovealParser.defer``): the task modules import torch."""
    from foveal.engine.evaluation import predict_flag, registered_predict_options

    group = p.add_argument_group("post-processing (the checkpoint's task's options)")
    for option in registered_predict_options().values():
        kwargs: dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS, "help": option.help}
        flag = predict_flag(option.name)
        if option.type is bool:
            kwargs["action"] = "store_false" if option.default is True else "store_true"
            flag = predict_flag(f"no_{option.name}") if option.default is True else flag
        else:
            kwargs["type"] = option.type
            kwargs["help"] += "" if option.default is None else f" ({option.default})"
        group.add_argument(flag, **kwargs)


def _common(p: argparse.ArgumentParser, weights_required: bool = True) -> None:
    p.add_argument(
        "--weights",
        required=weights_required,
        help="checkpoint (.ckpt), run folder, or a file from foveal export (.onnx, .ts)",
    )
    p.add_argument("--threads", type=int, default=None, help=".onnx/.ts: the runtime's CPU threads")
    p.add_argument(
        "--task", default=None, help=tasks_help("expected task (fails if the checkpoint is of another)")
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    add_process_flags(p)
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
        "--predictions",
        default=None,
        help="evaluate this COCO results JSON instead (a task with COCO metrics; default detect)",
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
        "(bare: PROJECT/NAME when given, else the --plots folder, else a new runs/<task>/errors-N)",
    )
    p.add_argument("--project", default=None, help="bare --errors: parent folder (default runs/<task>)")
    p.add_argument("--name", default=None, help="bare --errors: folder name (default errors)")
    p.set_defaults(func=run_val)
    p = commands.add_parser("predict", help="predict image files, folders or globs")
    _common(p)
    p.add_argument("sources", nargs="+", help="images, folders or glob patterns")
    p.add_argument(
        "--out", default="auto", help="folder for predictions.json/.csv (default: a new PROJECT/NAME)"
    )
    p.add_argument("--project", default=None, help="parent folder of the predictions (default runs/<task>)")
    p.add_argument("--name", default=None, help="folder name of the predictions (default predict)")
    p.add_argument("--render", action="store_true", help="also write overlay PNGs")
    p.defer(add_predict_options)
    p.set_defaults(func=run_predict)
