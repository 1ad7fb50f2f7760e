"""``foveal data synth|preview|convert|check|eda|split|label-errors``."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.data.kinds import AUTO, task_help


def run_synth(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.data.synth_writers import write_synthetic

    out = write_synthetic(
        args.out,
        n=args.n,
        imgsz=args.imgsz,
        seed=args.seed,
        fmt=args.format,
        imbalance=args.imbalance,
        scene=args.scene,
        max_objects=args.objects,
    )
    unit = "frames" if args.format == "video" else "images"
    print(f"wrote {args.n} synthetic {args.scene} {args.format} {unit} to {out}")
    return {"out": str(out), "n": args.n, "format": args.format, "scene": args.scene}


def run_preview(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.data.preview import preview_dataset

    out = preview_dataset(args.data, args.out, aug=args.aug, imgsz=args.imgsz, n=args.n, seed=args.seed)
    print(f"augmentation preview: {out}")
    return {"out": str(out)}


def run_convert(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.data.convert import convert_dataset

    out, data = convert_dataset(args.src, args.to, args.out, fmt=args.format, on_bad_image=args.on_bad_image)
    summary = data.summary()
    images = ", ".join(f"{n} {split}" for split, n in summary["images"].items())
    print(f"converted {data.source} -> {args.to}: {images} images, {summary['objects']} objects, to {out}")
    return {
        "out": str(out),
        "from": data.source,
        "to": args.to,
        **{k: summary[k] for k in ("images", "objects", "classes")},
    }


def _print_check(report: Any, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = {k: v for k, v in report.counts.items() if v}
    if not counts:
        console.print(f"[green]clean[/green]: {report.n_images} images checked in {report.seconds:.1f} s")
        return
    table = Table(title=f"data check: {report.path} ({report.task}, {report.n_images} images)")
    table.add_column("problem")
    table.add_column("count", justify="right")
    for kind, count in counts.items():
        style = "bold red" if kind.startswith("leakage") else ""
        table.add_row(f"[{style}]{kind}[/{style}]" if style else kind, str(count))
    console.print(table)
    for kind in counts:
        found = [f for f in report.findings if f.kind == kind]
        console.print(f"[bold]{kind}[/bold] ({len(found)})", markup=True)
        for f in found[:limit]:
            console.print(f"  {f.detail}", markup=False, highlight=False)
        if len(found) > limit:
            console.print(f"  ... {len(found) - limit} more (see --json)", markup=False)
    modes = ", ".join(f"{m}: {n}" for m, n in sorted(report.modes.items()))
    console.print(f"image modes: {modes}; checked in {report.seconds:.1f} s", markup=False)


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.data.health import check_dataset

    report = check_dataset(
        args.path, task=args.task, fmt=args.format, hamming=args.hamming, progress=not args.json
    )
    result = report.to_dict()
    if not args.json:
        _print_check(report, args.limit)
    result["exit_code"] = 0 if report.clean else 1  # main() exits with it: 1 = problems found
    return result


def add_parsers(commands: Any) -> None:
    data = commands.add_parser("data", help="dataset tools").add_subparsers(
        dest="data_command", required=True, metavar="ACTION"
    )
    p = data.add_parser("synth", help="generate a synthetic dataset (shapes, or arrows: --scene)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--format",
        default="imagefolder",
        help="imagefolder|csv|coco|yolo|yolo-seg|yolo-pose|masks|regress|video (--n frames of moving shapes)",
    )
    p.add_argument("--objects", type=int, default=4, help="objects per scene at most (video: exactly)")
    p.add_argument("--imbalance", type=int, default=1, help="k: k:1 train imbalance")
    p.add_argument(
        "--scene", default="shapes", help="shapes | arrows (left/right/up/down: flips change the class)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_synth)
    p = data.add_parser("preview", help="a grid of augmented training samples")
    p.add_argument("--data", required=True)
    p.add_argument("--aug", default="light", help="none|light|medium|heavy")
    p.add_argument("--out", default="preview.png")
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--n", type=int, default=6, help="number of source images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_preview)
    p = data.add_parser("convert", help="convert a detection dataset between COCO, YOLO and VOC")
    p.add_argument("src", metavar="SRC", help="dataset folder (or COCO .json / YOLO .yaml file)")
    p.add_argument("--to", required=True, choices=("coco", "yolo", "voc"), help="output format")
    p.add_argument("--out", required=True, help="new or empty output folder")
    p.add_argument("--format", default="auto", help="input format: auto|coco|yolo|voc (default auto)")
    p.add_argument("--on-bad-image", default="error", help="error|skip: fail on bad input, or drop it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_convert)
    p = data.add_parser("check", help="dataset health check: bad images, label problems, duplicates, leakage")
    p.add_argument("path", metavar="PATH", help="dataset folder (or CSV / COCO .json / YOLO .yaml file)")
    p.add_argument("--task", default=AUTO, help=task_help())
    p.add_argument("--format", default="auto", help="input format for the task's reader (default auto)")
    p.add_argument("--hamming", type=int, default=6, help="max dHash distance of near duplicates (0-64)")
    p.add_argument("--limit", type=int, default=10, help="details shown per kind of problem")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_check)
    from foveal.cli import data_eda, data_label_errors, data_split

    data_eda.add_parser(data)
    data_split.add_parser(data)
    data_label_errors.add_parser(data)
