"""``foveal data eda PATH --out report.html``: dataset statistics as one self-contained HTML page."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.data.kinds import AUTO, task_help


def run_eda(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.report.eda_html import eda_dataset

    report = eda_dataset(
        args.path,
        task=args.task,
        fmt=args.format,
        hamming=args.hamming,
        samples_per_class=args.samples_per_class,
        progress=not args.json,
        out=args.out,
    )
    ratio = "n/a" if report.imbalance_ratio is None else f"{report.imbalance_ratio:.2f}"
    problems = sum(report.check["counts"].values())
    print(
        f"{report.n_images} images ({report.task}, {report.fmt}), {len(report.class_names)} classes, "
        f"imbalance ratio {ratio}, {problems} data check finding(s); read in {report.seconds:.1f} s"
    )
    print(f"normalisation: {report.normalisation}")
    print(f"EDA report: {report.out}")
    return report.to_dict()


def add_parser(actions: Any) -> None:
    """Register the action on the ``foveal data`` sub-parsers."""
    p = actions.add_parser("eda", help="exploratory data analysis: statistics, plots and samples as HTML")
    p.add_argument("path", metavar="PATH", help="dataset folder (or CSV / COCO .json / YOLO .yaml file)")
    p.add_argument("--out", default="eda.html", help="HTML report to write (default eda.html)")
    p.add_argument("--task", default=AUTO, help=task_help())
    p.add_argument("--format", default="auto", help="input format for the task's reader (default auto)")
    p.add_argument("--samples-per-class", type=int, default=8, help="thumbnails per class (default 8)")
    p.add_argument("--hamming", type=int, default=6, help="max dHash distance of near duplicates (0-64)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_eda)
