"""``foveal tune``: hyper-parameter search over the training options (Optuna)."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.cli.train import S, add_train_options, options


def run_tune(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.analysis.tune import tune

    result = tune(**options(args))
    best = result.best
    if best is None:
        print(f"no trial completed ({result.counts}); study: {result.out}")
    else:
        std = f" +- {best['std']:.4f}" if best.get("std") is not None else ""
        params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        print(f"best {result.metric}: {best['value']:.4f}{std} (trial {best['number']}: {params})")
    if result.confirm:
        print(result.confirm["verdict"])
    for key in ("best", "trials", "report"):
        if key in result.files:
            print(f"{key}: {result.files[key]}")
    return result.to_dict()


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "tune",
        help="hyper-parameter search (Optuna): pruning, resumable and parallel studies, report",
        argument_default=S,
    )
    add_train_options(p)
    g = p.add_argument_group("search")
    g.add_argument("--space", help="YAML search space (default: the task's)")
    g.add_argument(
        "--trials", type=int, help="finished trials the study should hold, over all processes (20)"
    )
    g.add_argument("--timeout", type=float, help="seconds this process searches at most")
    g.add_argument("--metric", help="validation metric to optimise (default: the task's monitored one)")
    g.add_argument("--sampler", help="tpe | random | grid | cmaes (tpe)")
    g.add_argument("--pruner", help="median | hyperband | none (median)")
    g.add_argument("--storage", help="journal file or SQLAlchemy URL (default: STUDY/study.journal)")
    g.add_argument("--study", help="study name in the storage (default: the study folder's name)")
    g.add_argument("--folds", type=int, help="objective: the mean over K cross-validation folds")
    g.add_argument("--confirm", type=int, metavar="K", help="re-train the top configurations and the "
                   "default recipe over K seeds: mean +- std (0: off)")  # fmt: skip
    g.add_argument("--stale-after", type=float, help="seconds after which a silent RUNNING trial of "
                   "another machine counts as dead (21600)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_tune)
