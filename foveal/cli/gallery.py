"""``foveal gallery PATH [--predictions FILE] --out gallery.html``: an HTML contact sheet of a dataset."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.data.kinds import AUTO, task_help


def run_gallery(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.report.gallery import write_gallery

    result = write_gallery(
        args.path,
        args.out,
        task=args.task,
        fmt=args.format,
        predictions=args.predictions,
        sample=args.sample,
        size=args.size,
        seed=args.seed,
        classes=args.classes,
        split=args.split,
        mistakes_only=args.mistakes_only,
    )
    mistakes = f", {result.mistakes} mistake(s)" if result.predictions else ""
    unmatched = f"; {result.unmatched} prediction(s) matched no image" if result.unmatched else ""
    print(f"gallery of {result.images} {result.task} image(s){mistakes}: {result.out}{unmatched}")
    return result.to_dict()


def add_parsers(commands: Any) -> None:
    """Register the command on the top-level sub-parsers."""
    p = commands.add_parser(
        "gallery", help="an HTML contact sheet of a dataset, with predictions and mistakes when given"
    )
    p.add_argument("path", metavar="PATH", help="dataset folder (or CSV / COCO .json / YOLO .yaml file)")
    p.add_argument("--out", required=True, help="the HTML file to write (e.g. gallery.html)")
    p.add_argument(
        "--predictions", help="predictions.json of `foveal predict`/`val`, or a COCO results.json (detect)"
    )
    p.add_argument("--task", default=AUTO, help=task_help())
    p.add_argument("--format", default="auto", help="input format for the task's reader (default auto)")
    p.add_argument("--sample", type=int, help="a seeded random subset of N images (stratified by class)")
    p.add_argument("--size", type=int, default=128, help="thumbnail size in px, longest side (default 128)")
    p.add_argument("--split", help="only this split (train, val, test or all)")
    p.add_argument("--classes", help="only images with one of these classes, comma-separated: a,b")
    p.add_argument("--mistakes-only", action="store_true", help="only wrongly predicted images")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_gallery)
