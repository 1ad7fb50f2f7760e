"""``foveal train`` and ``foveal lr-find``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

S = argparse.SUPPRESS


def _int_or_auto(value: str) -> int | str:
    return value if value == "auto" else int(value)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag; only flags given on the command line reach the config."""
    data = p.add_argument_group("data")
    data.add_argument("--task", default=S, help="classify (default) | segment | detect | instance | pose")
    data.add_argument("--data", default=S, help="dataset folder or CSV file")
    data.add_argument("--val", default=S, help="separate validation folder or CSV")
    data.add_argument("--format", default=S, help="auto|imagefolder|csv|masks|coco|yolo|voc")
    data.add_argument("--kind", default=S, help="auto|binary|multiclass|multilabel")
    data.add_argument("--val-fraction", type=float, default=S, help="held-out share when no val split (0.2)")
    data.add_argument("--on-bad-image", default=S, help="error (default) | skip: skip unreadable images")
    data.add_argument("--imgsz", type=int, default=S, help="input size in pixels (64)")
    data.add_argument("--aug", default=S, help="augmentation preset none|light|medium|heavy (light)")
    data.add_argument("--workers", type=int, default=S, help="data loader processes")
    model = p.add_argument_group("model")
    model.add_argument("--model", default=S, help="registry name, e.g. smallresnet, tv:resnet18, timm:...")
    model.add_argument("--pretrained", default=S, help="weights file (foveal/torchvision/timm) or 'hub'")
    model.add_argument("--freeze", default=S, help="'backbone': train the head only")
    model.add_argument("--unfreeze-at", type=int, default=S, help="epoch at which the backbone is released")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=S)
    opt.add_argument("--batch", type=int, default=S)
    opt.add_argument("--lr", default=S, help="learning rate, or 'auto' for the range test")
    opt.add_argument("--optimizer", default=S, help="sgd|rmsprop|adam|adamw|radam (adamw)")
    opt.add_argument("--weight-decay", type=float, default=S)
    opt.add_argument("--momentum", type=float, default=S)
    opt.add_argument("--nesterov", action="store_true", default=S)
    opt.add_argument("--lookahead", action="store_true", default=S)
    opt.add_argument("--scheduler", default=S, help="none|step|cosine|onecycle|cyclic (cosine)")
    opt.add_argument("--warmup-epochs", type=float, default=S)
    opt.add_argument("--step-size", type=int, default=S, help="epochs between step decays")
    opt.add_argument("--gamma", type=float, default=S, help="step decay factor")
    opt.add_argument("--loss", default=S, help="auto|ce|bce|focal")
    opt.add_argument("--label-smoothing", type=float, default=S)
    opt.add_argument(
        "--balance", default=S, help="class imbalance: none|oversample|undersample|weights (none)"
    )
    opt.add_argument("--balance-weights", default=S, help="--balance weights scheme: inverse|effective")
    opt.add_argument("--balance-beta", type=float, default=S, help="effective-number beta (0.999)")
    opt.add_argument("--focal-gamma", type=float, default=S)
    opt.add_argument("--patience", type=int, default=S, help="early stopping patience in epochs")
    opt.add_argument("--grad-clip", type=float, default=S)
    opt.add_argument("--amp", action="store_true", default=S, help="mixed precision (CUDA)")
    opt.add_argument("--ema", action="store_true", default=S, help="exponential moving average of weights")
    opt.add_argument("--ema-decay", type=float, default=S)
    opt.add_argument("--seed", type=int, default=S)
    run = p.add_argument_group("run")
    run.add_argument("--device", default=S, help="auto|cpu|cuda|mps")
    run.add_argument("--devices", type=_int_or_auto, default=S)
    run.add_argument("--num-nodes", type=int, default=S)
    run.add_argument("--strategy", default=S, help="Lightning strategy, e.g. ddp, fsdp")
    run.add_argument("--project", default=S, help="parent folder of runs (runs/<task>)")
    run.add_argument("--name", default=S, help="run name (default: the model name)")
    run.add_argument("--config", default=S, help="YAML file of these options")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=S)


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
    print(f"suggested learning rate: {result['suggestion']:.3g}  (plot: {result['plot']})")
    return {"suggestion": result["suggestion"], "plot": result["plot"]}


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
