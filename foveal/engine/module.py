"""The LightningModule that trains any Task: the task supplies model, loss and metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from foveal.config import TrainConfig
from foveal.errors import DivergedError
from foveal.tasks.base import Task

# A non-finite loss is looked for every this many batches (and the first): NaN weights stay NaN, so it
# is caught within that many steps without a device sync on every one.
DIVERGENCE_CHECK_STEPS = 8


class TaskModule(L.LightningModule):
    """Trains ``task.build_model()`` with ``task.loss`` of ``task.criterion()`` (a submodule here, so
    its buffers, e.g. class weights, move with the model); validation metrics via
    ``task.compute_metrics``. A task with ``manual_optimization`` owns its training step.

    With EMA on, an exponential moving average of the weights (``self.ema``) is validated and
    saved in checkpoints next to the raw weights.
    """

    def __init__(self, task: Task, config: TrainConfig, model: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.task = task
        self.config = config
        self.model = model if model is not None else task.build_model()
        self.criterion = task.criterion()
        self.automatic_optimization = not task.manual_optimization
        # channels_last: ~20% faster convolutions on CPU, and the layout tensor cores want on GPU
        if task.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema = None
        if config.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
        self.batch_transform = task.batch_transform()
        self._kept: list[dict[str, Tensor]] = []
        self.val_metrics: dict[str, Any] = {}
        self.val_kept: dict[str, Tensor] = {}
        self.lr = config.lr if isinstance(config.lr, float) else 1e-3

    def forward(self, images: Tensor) -> Any:
        return self.model(images)

    def eval_model(self) -> torch.nn.Module:
        """The weights to validate and predict with: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def training_step(self, batch: tuple[Tensor, Any], batch_idx: int) -> Tensor | None:
        if self.task.manual_optimization:
            return self.task.training_step(self, batch, batch_idx)
        images, targets = batch
        images = images.contiguous(memory_format=torch.channels_last)
        if self.batch_transform is not None:
            images, targets = self.batch_transform(images, targets)
        losses = self.task.loss(self.task.forward(self.model, images, targets), targets, self.criterion)
        loss = losses["loss"].detach()
        if batch_idx % DIVERGENCE_CHECK_STEPS == 0 and not torch.isfinite(loss):
            raise DivergedError(
                f"the training loss became {float(loss)} at epoch {self.current_epoch}, batch {batch_idx}: "
                f"lower --lr (now {self.lr:g}) or add --grad-clip 1.0"
            )
        for key, value in losses.items():
            self.log(
                f"train/{key}",
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=key == "loss",
                batch_size=images.shape[0],
                sync_dist=True,  # the epoch mean over every process's batches
            )
        return losses["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_validation_epoch_start(self) -> None:
        """With several processes, every one validates the weights the checkpoint will hold: BatchNorm
        statistics drift per process after DDP's last buffer broadcast, so rank 0's are sent again."""
        if self.trainer.world_size > 1:
            import torch.distributed as dist

            for buffer in self.eval_model().buffers():
                dist.broadcast(buffer, src=0)

    def validation_step(self, batch: tuple[Tensor, Any], batch_idx: int) -> None:
        images, targets = batch
        images = images.contiguous(memory_format=torch.channels_last)
        outputs = self.task.forward(self.eval_model(), images, targets)
        losses = self.task.loss(outputs, targets, self.criterion)
        if "loss" in losses:  # detectors in eval mode return detections, not losses
            self.log(
                "val/loss",
                losses["loss"],
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                batch_size=images.shape[0],
                sync_dist=True,
            )
        self._kept.append(self.task.step_outputs(outputs, targets))

    def on_validation_epoch_end(self) -> None:
        """Metrics over the whole validation split: each process's outputs of its disjoint shard are
        gathered (every process takes part, even with an empty shard), so all compute the same."""
        kept = (
            {key: torch.cat([part[key] for part in self._kept]) for key in self._kept[0]}
            if self._kept
            else {}
        )
        self._kept.clear()
        if self.trainer.world_size > 1:
            kept = gather_kept(kept, self.trainer.world_size)
        if not kept:
            return
        self.val_kept = kept
        self.val_metrics = self.task.compute_metrics(kept)
        for key, value in self.val_metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "n":
                # equal on every process (computed from the gathered outputs): the reduction is a no-op
                # that keeps Lightning's epoch-level bookkeeping (early stopping, checkpoints) in step
                self.log(f"val/{key}", float(value), prog_bar=key == self.task.monitor, sync_dist=True)

    def configure_optimizers(self) -> Any:
        from foveal.engine.optim import build_optimizer, build_scheduler

        own = self.task.configure_optimizers(self)
        if own is not None:
            return own
        cfg = self.config
        optimizer = build_optimizer(
            self.model.parameters(),
            cfg.optimizer,
            lr=self.lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            lookahead=cfg.lookahead,
        )
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = build_scheduler(
            optimizer,
            cfg.scheduler,
            epochs=epochs,
            steps_per_epoch=max(1, steps // epochs),
            warmup_epochs=min(cfg.warmup_epochs, epochs / 2),
            step_size=cfg.step_size,
            gamma=cfg.gamma,
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["foveal"] = {
            "meta": self.task.meta.to_dict(),
            "config": self.config.to_dict(),
            "weights": "ema" if self.ema is not None else "model",
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the loss module was part of the LightningModule lack its buffers:
        take them from this module (they are derived from the task meta), so resuming still works."""
        state = checkpoint.get("state_dict", {})
        for key, value in self.state_dict().items():
            if key.startswith("criterion.") and key not in state:
                state[key] = value


def gather_kept(kept: dict[str, Tensor], world_size: int) -> dict[str, Tensor]:
    """Every rank's kept tensors, concatenated in rank order. Objects, not tensors, are gathered, so
    per-rank lengths may differ (detections per image vary) and a rank may have kept nothing."""
    import torch.distributed as dist

    parts: list[dict[str, Tensor] | None] = [None] * world_size
    dist.all_gather_object(parts, {key: value.cpu() for key, value in kept.items()})
    full = [part for part in parts if part]
    return {key: torch.cat([part[key] for part in full]) for key in full[0]} if full else {}
