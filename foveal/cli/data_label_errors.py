"""``foveal data label-errors``: images whose labels look wrong, from out-of-fold predictions."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.cli.train import S, add_train_options, options

OWN = ("oof", "folds", "out", "rank", "conf")


def _print(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=escape(f"label errors: {len(result.issues)} of {result.n_images} images flagged"))
    for column in ("image", "given", "suggested", "score"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for row in result.issues[:15]:
        given, suggested = row.get("given", ""), row.get("suggested", "")
        if result.task == "detect":
            suggested = ", ".join(i["kind"] for i in row["issues"])
        elif result.task == "segment":
            given, suggested = f"quality {row['quality']:.3f}", f"{len(row['regions'])} region(s)"
        given, suggested = (", ".join(v) if isinstance(v, list) else str(v) for v in (given, suggested))
        table.add_row(escape(row["path"]), escape(given), escape(suggested), f"{row['score']:.3f}")
    console.print(table)
    for n in result.noise[:5]:
        label = f"{n['label']}: " if "label" in n else ""
        console.print(
            f"noise {label}{n['given']} -> {n['true']}: {n['rate']:.3f}", markup=False, highlight=False
        )
    console.print(
        f"written to {result.out} (label_errors.json/.csv, review.html, clean.json)",
        markup=False,
        highlight=False,
    )


def run_label_errors(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.analysis.label_errors import find_label_errors

    given = options(args, skip=("data_command", *OWN))
    if "format" in given:
        given["fmt"] = given.pop("format")
    result = find_label_errors(**given, **{k: getattr(args, k) for k in OWN})
    if not args.json:
        _print(result)
    return result.to_dict()


def add_parser(actions: Any) -> None:
    """Register the action on the ``foveal data`` sub-parsers."""
    p = actions.add_parser(
        "label-errors",
        help="find likely label errors from out-of-fold predictions (confident learning; boxes; masks)",
        argument_default=S,
    )
    add_train_options(p)
    p.add_argument(
        "--oof", default=None, help="oof.json of a foveal cv of --data (default: cross-validate here)"
    )
    p.add_argument("--folds", type=int, default=5, help="K folds when cross-validating here (5)")
    p.add_argument("--group-by", help="CSV column or file-name regex: groups never split (cross-validating)")
    p.add_argument("--parallel", type=int, metavar="K", help="folds trained at once (cross-validating)")
    p.add_argument("--out", default=None, help="output folder (default a new runs/<task>/label-errors)")
    p.add_argument(
        "--rank", default="self_confidence", help="classification score: self_confidence | normalized_margin"
    )
    p.add_argument("--conf", type=float, default=0.5, help="detection: the score of a confident prediction")
    p.add_argument("--json", action="store_true", default=False)
    p.set_defaults(func=run_label_errors)
