"""The ``foveal`` command: parse, call the Python API, print. User errors exit 2 with one line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from foveal import __version__
from foveal.errors import FovealError
from foveal.serialize import dumps

if TYPE_CHECKING:
    from foveal.cli.parser import FovealParser


def build_parser() -> FovealParser:
    from foveal.cli import (
        active,
        baseline,
        calibrate,
        cv,
        data,
        demo,
        ensemble,
        evaluate,
        explain,
        export,
        gallery,
        models,
        report,
        train,
        tune,
    )
    from foveal.cli.parser import FovealParser

    parser = FovealParser(
        prog="foveal",
        description="Deep-learning computer vision: data, training, evaluation, understanding, deployment.",
    )
    parser.add_argument("--version", action="version", version=f"foveal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # the order of `foveal --help`: the workflow from training to understanding, then tools
    order = (
        train,
        cv,
        tune,
        evaluate,
        ensemble,
        calibrate,
        explain,
        active,
        baseline,
        export,
        report,
        data,
        gallery,
        models,
        demo,
    )
    for module in order:
        module.add_parsers(commands)
    return parser


def _worker(work: Any, command: str) -> int:
    """A process Lightning launched for a multi-process run or pass: it does ``work`` and prints
    nothing but its error."""
    setup_logging(False, quiet=True)
    try:
        with contextlib.redirect_stdout(_quiet_stream(True, False)):
            work()
        return 0
    except FovealError as err:
        print(f"foveal {command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def _quiet_stream(worker: bool, as_json: bool) -> Any:
    """Where a command's printing goes: nowhere in a DDP worker, stderr with --json, else stdout."""
    if worker:
        import os

        return open(os.devnull, "w")  # noqa: SIM115 (closed when the process ends)
    return sys.stderr if as_json else sys.stdout


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(
        show_time=False,
        show_path=False,
        markup=False,
        console=__import__("rich.console").console.Console(stderr=True),
    )
    logger = logging.getLogger("foveal")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning on cores that loader workers or another training
    # need (read when torch loads, so before any command imports it; OMP_WAIT_POLICY=ACTIVE undoes it).
    # On 2 cores: a lone run's epoch 0.82 -> 0.66 s, two concurrent runs' 4.9-30 s -> 1.75 s
    # (benchmarks/threads.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from foveal.engine.distributed import handed_pass, inherited_run

    if inherited_run() is not None:  # a DDP process launched for a run: it trains that run only
        from foveal.engine.fit import train

        return _worker(train, "train")
    if handed_pass() is not None:  # ... or for one inference pass of val/predict/ensemble: that pass
        from foveal.engine.inference_ddp import run_handed_pass

        return _worker(run_handed_pass, "val")
    parser = build_parser()
    args = parser.parse_args(argv)
    from foveal.engine.distributed import is_worker_process

    worker = is_worker_process()  # a DDP process other than the first prints nothing but its errors
    setup_logging(args.verbose, quiet=worker)
    stdout = sys.stdout
    as_json = getattr(args, "json", False)
    try:
        # With --json, stdout carries the one JSON object only: everything else goes to stderr.
        with contextlib.redirect_stdout(_quiet_stream(worker, as_json)):
            result = args.func(args)
        if as_json and not worker:
            stdout.write(dumps(result) + "\n")
        # a command may end with another code than 0 (e.g. `data check`: 1 when problems are found)
        return int(result.get("exit_code", 0)) if isinstance(result, dict) else 0
    except FovealError as err:
        if args.verbose:
            raise
        message = " ".join(str(err).split())
        print(f"foveal {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foveal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
