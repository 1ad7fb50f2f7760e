"""Engine callbacks: epoch history, backbone unfreezing, atomic checkpoint writes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from foveal.atomic import atomic_write, atomic_write_text
from foveal.serialize import dumps


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place, so a killed run
    never leaves a half-written ``best.ckpt``/``last.ckpt``; loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_write(path, lambda handle: torch.save(checkpoint, handle))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class History(L.Callback):
    """One row per epoch of every logged scalar (train/*, val/*, lr), kept in ``path`` (JSON) so a
    resumed run continues its history."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = json.loads(path.read_text()) if path.is_file() else []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("lr-"):  # LearningRateMonitor's copies for the loggers; "lr" is below
                continue
            number = float(value)
            if math.isfinite(number):
                row[key] = number
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        if trainer.is_global_zero:
            atomic_write_text(self.path, dumps(self.rows, indent=1))


class BackboneFreezer(L.Callback):
    """Keeps the backbone frozen (weights and BatchNorm statistics) until ``unfreeze_at`` epoch."""

    def __init__(self, unfreeze_at: int | None) -> None:
        self.unfreeze_at = unfreeze_at

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from foveal.models.weights import set_backbone_frozen

        set_backbone_frozen(pl_module.model, self._frozen(trainer.current_epoch))

    def _frozen(self, epoch: int) -> bool:
        return self.unfreeze_at is None or epoch < self.unfreeze_at

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from foveal.models.weights import freeze_bn_stats, set_backbone_frozen

        if self.unfreeze_at is not None and trainer.current_epoch == self.unfreeze_at:
            set_backbone_frozen(pl_module.model, False)
            pl_module.model.train()  # BatchNorm layers held in eval mode resume updating their statistics
        if self._frozen(trainer.current_epoch):
            freeze_bn_stats(pl_module.model)


class EpochHook(L.Callback):
    """After each validation epoch, ``hook(epoch, metrics)`` in the first process (``metrics``: the
    logged val/* scalars without the prefix); True stops the run. The decision is broadcast, so every
    process of a multi-process run (each has this callback, the others with ``hook`` None) stops at
    the same epoch. ``stopped_at``: the epoch it stopped after, else None."""

    def __init__(self, hook: Any = None) -> None:
        self.hook = hook
        self.stopped_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        stop = False
        if trainer.is_global_zero and self.hook is not None:
            metrics = {
                key.removeprefix("val/"): float(value)
                for key, value in trainer.callback_metrics.items()
                if key.startswith("val/") and torch.as_tensor(value).numel() == 1
            }
            stop = bool(self.hook(trainer.current_epoch, metrics))
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            self.stopped_at = trainer.current_epoch
            trainer.should_stop = True
