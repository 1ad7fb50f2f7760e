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
    from foveal.video.predict import video_request

    frames = args.frames or args.track or args.stride != 1 or args.start != 0 or args.end is not None
    if video_request(args.sources, frames):
        return _run_predict_video(args, options)
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


def _run_predict_video(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    from foveal.errors import ConfigError
    from foveal.video.predict import predict_video

    if args.tta:
        raise ConfigError("--tta is not supported on videos; drop it")
    line = None
    if args.line is not None:
        try:
            line = [float(v) for v in args.line.split(",")]
        except ValueError:
            line = []
        if len(line) != 4:
            raise ConfigError(f"--line {args.line}: pass x1,y1,x2,y2 in frame pixels (e.g. 320,0,320,480)")
    summary = predict_video(
        args.weights,
        args.sources[0],
        out=args.out,
        task=args.task,
        batch=args.batch,
        device=args.device,
        stride=args.stride,
        start=args.start,
        end=args.end,
        fps=args.fps,
        track=args.track,
        line=line,
        video=args.video,
        on_bad_image=args.on_bad_image,
        project=args.project,
        name=args.name,
        progress=not args.json,
        threads=args.threads,
        **options,
    )
    if not args.json:
        print(
            f"{summary['frames_predicted']} frames of {summary['source']} predicted at "
            f"{summary['processing_fps']} frames/s; written to {summary['out']}"
        )
        counts = summary.get("counts")
        if counts:
            by_class = ", ".join(f"{n} {name}" for name, n in counts["tracks_by_class"].items()) or "none"
            crossed = counts["crossings"]
            print(
                f"tracks: {counts['tracks']} ({by_class}); line crossings: {crossed['positive']} positive, "
                f"{crossed['negative']} negative"
            )
    return summary


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
    p = commands.add_parser("predict", help="predict image files, folders, globs, or a video")
    _common(p)
    p.add_argument(
        "sources", nargs="+", help="images, folders or glob patterns; or one video or frame folder"
    )
    p.add_argument(
        "--out", default="auto", help="folder for predictions.json/.csv (default: a new PROJECT/NAME)"
    )
    p.add_argument("--project", default=None, help="parent folder of the predictions (default runs/<task>)")
    p.add_argument("--name", default=None, help="folder name of the predictions (default predict)")
    p.add_argument("--render", action="store_true", help="also write overlay PNGs")
    v = p.add_argument_group(
        "video (a video file, or a folder read as frames when --frames or any of these options is given)"
    )
    v.add_argument("--frames", action="store_true", help="read the folder as the frames of one video")
    v.add_argument("--stride", type=int, default=1, help="predict every k-th frame (1)")
    v.add_argument("--start", type=float, default=0.0, help="first second to predict (0)")
    v.add_argument("--end", type=float, default=None, help="stop at this second (default: the end)")
    v.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder (25)")
    v.add_argument("--track", action="store_true", help="track the predicted boxes (ByteTrack-style)")
    v.add_argument("--line", default=None, help="counting line x1,y1,x2,y2 (default: the vertical centre)")
    v.add_argument("--no-video", dest="video", action="store_false", help="skip the annotated video")
    p.defer(add_predict_options)
    p.set_defaults(func=run_predict)
