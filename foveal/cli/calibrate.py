"""``foveal calibrate``: fit a classifier's temperature on labelled data and store it in the checkpoint."""

from __future__ import annotations

import argparse
from typing import Any


def run_calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.analysis.calibration import calibrate

    result = calibrate(
        args.weights,
        args.data,
        split=args.split,
        out=args.out,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        fmt=args.format,
        on_bad_image=args.on_bad_image,
        n_bins=args.bins,
    )
    if not args.json:
        print(f"temperature T = {result.temperature:.4f} (fitted on {result.n} '{result.split}' images)")
        print(f"ECE  {result.ece_before:.4f} -> {result.ece_after:.4f}")
        print(f"NLL  {result.nll_before:.4f} -> {result.nll_after:.4f}")
        print(f"checkpoint updated: {result.checkpoint} (original kept as {result.backup})")
        print(f"reliability diagrams and calibration.json in {result.out_dir}")
    return result.to_dict()


def add_parsers(commands: Any) -> None:
    """Register ``foveal calibrate`` on the top-level sub-parsers."""
    p = commands.add_parser(
        "calibrate", help="fit a classifier's temperature (calibrated probabilities) on labelled data"
    )
    p.add_argument("--weights", required=True, help="classification checkpoint (.ckpt) or run folder")
    p.add_argument("--data", required=True, help="labelled dataset folder or CSV to fit on")
    p.add_argument("--split", default="val", help="split to fit on: val | test | train")
    p.add_argument(
        "--out", default=None, help="folder for calibration.json and plots (default <run>/calibration)"
    )
    p.add_argument("--bins", type=int, default=15, help="confidence bins of the ECE and diagrams")
    p.add_argument("--format", default="auto")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--on-bad-image", default="error", help="error | skip")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run_calibrate)
