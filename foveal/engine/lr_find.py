"""Learning-rate range test through Lightning's tuner, with the loss-vs-lr plot."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from foveal.config import TrainConfig

log = logging.getLogger("foveal")


def find_lr(
    module: Any,
    train_loader: DataLoader,
    plot_path: Path,
    cfg: TrainConfig,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
) -> dict[str, Any]:
    """Run the range test on ``module`` (weights are restored afterwards), in this process. A run of
    several DDP processes steps on their mean gradient over ``batch`` x processes images: the test
    accumulates that many batches per step, so its suggestion is for the effective batch.

    Returns {"suggestion": lr, "lrs": [...], "losses": [...], "plot": path}.
    """
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    from foveal.engine.distributed import processes
    from foveal.engine.trainer import accelerator_for, quiet_lightning
    from foveal.report.plots import plot_lr_find

    quiet_lightning()
    accumulate = processes(cfg)
    if accumulate > 1:
        log.info("range test in one process at the effective batch %d (%d processes x --batch %d), "
                 "accumulating %d batches per step", accumulate * cfg.batch, accumulate, cfg.batch,
                 accumulate)  # fmt: skip
    steps = max(10, min(steps, len(train_loader) * 5 // accumulate))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            default_root_dir=tmp,
            accelerator=accelerator_for(cfg.device),
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            max_epochs=1,
            accumulate_grad_batches=accumulate,
        )
        result = Tuner(trainer).lr_find(
            module,
            train_dataloaders=train_loader,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=steps,
            attr_name="lr",
            update_attr=False,
        )
    lrs = [float(x) for x in result.results["lr"]]
    losses = [float(x) for x in result.results["loss"]]
    suggestion = result.suggestion()
    suggestion = float(suggestion) if suggestion is not None else float(module.lr)
    plot = plot_lr_find(lrs, losses, suggestion, plot_path)
    return {"suggestion": suggestion, "lrs": lrs, "losses": losses, "plot": str(plot),
            "effective_batch": cfg.batch * accumulate}  # fmt: skip


def lr_find(
    task: str | None = None,
    data: str | None = None,
    *,
    out: str | Path = "lr_find.png",
    config: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``foveal lr-find``: the range test on a fresh model for the given data/options; writes ``out``."""
    import lightning as L

    from foveal.engine.loaders import make_loader
    from foveal.engine.setup import build_module, prepare_run, resolve_config
    from foveal.errors import ConfigError

    cfg = resolve_config(config, task=task, data=data, **options)
    if cfg.data is None:
        raise ConfigError("no data given; pass --data PATH")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task_obj, splits, cfg = prepare_run(cfg)
    from foveal.engine.distributed import check_distributed

    check_distributed(cfg)
    module = build_module(task_obj, cfg)
    loader = make_loader(task_obj, splits["train"], "train", cfg.batch, cfg.workers, cfg.seed)
    return find_lr(module, loader, Path(out), cfg)
