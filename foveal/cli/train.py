"""``foveal train`` and ``foveal lr-find``."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING
from pathlib import Path
from typing import Any, get_args, get_type_hints

from foveal.config import mapping

S = argparse.SUPPRESS


GROUPS = ("data", "model", "optimisation", "run")


def flag_arguments(f: dataclasses.Field, kind: Any) -> tuple[str, dict[str, Any]]:
    """The flag and ``add_argument`` keywords of TrainConfig field ``f`` (annotation ``kind``) from
    its metadata (``foveal.config.option``); the value reaches the config only when given."""
    meta = f.metadata
    kwargs: dict[str, Any] = {"dest": f.name, "default": S}
    kinds = [k for k in get_args(kind) if k is not type(None)] or [kind]
    if kind is bool:
        kwargs["action"] = "store_false" if f.default is True else "store_true"
        flag = meta.get("flag") or (f"--no-{f.name}" if f.default is True else f"--{f.name}")
    else:
        flag = meta.get("flag") or f"--{f.name}"
        if "parse" in meta:
            kwargs["type"] = meta["parse"]
        elif kinds == [dict]:
            kwargs["type"] = mapping
        elif len(kinds) == 1 and kinds[0] in (int, float):
            kwargs["type"] = kinds[0]
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
    shown = f.default not in (MISSING, None) and kind is not bool and meta.get("show_default", True)
    kwargs["help"] = meta["help"] + (f" ({f.default})" if shown else "")
    if meta.get("tasks"):  # the registered tasks, from the one registry
        from foveal.tasks import task_help

        kwargs["help"] += f": {task_help()}"
    return flag.replace("_", "-"), kwargs


def add_train_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Every TrainConfig field but the internal ones and ``skip`` as a flag (``flag_arguments``), in its
    group; only flags given on the command line reach the config."""
    from foveal.config import TrainConfig

    groups = {name: p.add_argument_group(name) for name in GROUPS}
    kinds = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("internal") or f.name in skip:
            continue
        flag, kwargs = flag_arguments(f, kinds[f.name])
        groups[f.metadata["group"]].add_argument(flag, **kwargs)
    groups["run"].add_argument("--config", default=S, help="YAML file of these options")


def options(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("command", "func", "verbose", "json", *skip)}


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.cli.show import print_metrics
    from foveal.engine.fit import train

    result = train(**options(args))
    print_metrics(result.metrics, title=f"best checkpoint on validation ({result.best.name})")
    print(f"run: {result.run_dir}")
    return {"run_dir": str(result.run_dir), "best": str(result.best), "metrics": result.metrics}


def run_lr_find(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.engine.lr_find import lr_find

    result = lr_find(**options(args))
    batch = result["effective_batch"]
    print(f"suggested learning rate: {result['suggestion']:.3g} for batch {batch}  (plot: {result['plot']})")
    return {"suggestion": result["suggestion"], "plot": result["plot"], "effective_batch": batch}


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("train", help="train a model", argument_default=S)
    add_train_options(p)
    p.add_argument("--resume", default=S, help="continue a run (folder or last.ckpt)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.set_defaults(func=run_train)
    p = commands.add_parser("lr-find", help="learning-rate range test: plot and suggestion")
    add_train_options(p)
    p.add_argument("--out", default=str(Path("lr_find.png")), help="plot file (lr_find.png)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_lr_find)
