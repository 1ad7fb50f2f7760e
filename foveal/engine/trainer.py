"""Build the Lightning Trainer for a run: callbacks, loggers, devices, precision."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from foveal.config import TrainConfig
from foveal.engine.callbacks import AtomicCheckpointIO, BackboneFreezer, History
from foveal.errors import ConfigError
from foveal.tasks.base import Task


def quiet_lightning() -> None:
    """Silence Lightning's informational chatter (GPU/TPU availability, tips)."""
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning.pytorch.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def accelerator_for(device: str) -> str:
    """Map --device to a Lightning accelerator, failing clearly when CUDA is asked for but absent."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu or auto")
    return {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "mps": "mps"}[device]


def build_trainer(
    config: TrainConfig,
    task: Task,
    run_dir: Path,
    history: History,
    extra_callbacks: Sequence[L.Callback] = (),
    **overrides: Any,
) -> L.Trainer:
    """A Trainer that checkpoints best/last into ``run_dir/checkpoints`` and logs to ``run_dir/logs``.

    ``extra_callbacks`` join the run's own; ``overrides`` are further ``lightning.Trainer`` arguments
    (e.g. ``max_steps``, ``limit_val_batches``).
    """
    quiet_lightning()
    monitor = f"val/{task.monitor}"
    callbacks: list[L.Callback] = [
        # Two checkpoint callbacks: Lightning's save_last rewrites last.ckpt only when best.ckpt improves,
        # which would make --resume lose epochs; a monitor-free callback writes last.ckpt every epoch.
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode=task.mode,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
        LearningRateMonitor(logging_interval="epoch"),
        history,
    ]
    if config.freeze == "backbone":
        callbacks.append(BackboneFreezer(config.unfreeze_at))
    if config.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=task.mode, patience=config.patience))
    if config.progress:
        callbacks.append(RichProgressBar(leave=True))
    callbacks += extra_callbacks
    accelerator = accelerator_for(config.device)
    on_cuda = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    precision = "16-mixed" if config.amp and on_cuda else "32-true"
    return L.Trainer(
        default_root_dir=run_dir,
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=precision,
        gradient_clip_val=config.grad_clip,
        callbacks=callbacks,
        logger=[
            CSVLogger(run_dir, name="logs", version=""),
            TensorBoardLogger(run_dir, name="logs", version=""),
        ],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        deterministic=False,
        **overrides,
    )
