"""``foveal report RUN``: (re)build a run's self-contained report.html."""

from __future__ import annotations

import argparse
from typing import Any


def run_report(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.report.html import write_report

    out = write_report(args.run)
    print(f"report: {out}")
    return {"report": str(out)}


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("report", help="rebuild a run's report.html (metrics, plots, comparisons)")
    p.add_argument("run", metavar="RUN", help="run folder (runs/<task>/<name>)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_report)
