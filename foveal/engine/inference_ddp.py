"""Inference over several processes (``foveal val|predict --devices N --strategy ddp``).

Lightning starts the processes (its ``ddp`` launcher re-runs the same command in each, so every
process reaches this point with the same arguments); each runs the model on a disjoint, unpadded shard
of the samples (``UnrepeatedDistributedSampler``: indices ``rank::world``) and the first process
gathers every shard's kept outputs and predictions. Metrics over the gathered outputs equal one
process's; the other processes get None and stop there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from foveal.config import TrainConfig
from foveal.data.sample import Sample
from foveal.engine import distributed
from foveal.tasks.base import Task


class _Inference(L.LightningModule):
    """Forward, ``step_outputs`` (when ``keep``) and ``postprocess`` of every validation batch."""

    def __init__(self, task: Task, model: nn.Module, keep: bool, options: dict[str, Any]) -> None:
        super().__init__()
        self.task, self.net, self.keep, self.options = task, model, keep, options
        self.parts: list[dict[str, torch.Tensor]] = []
        self.predictions: list[Any] = []
        self.gathered: tuple[dict[str, torch.Tensor], list[Any]] | None = None

    def validation_step(self, batch: tuple[torch.Tensor, Any], batch_idx: int) -> None:
        images, targets = batch
        outputs = self.task.forward(self.net, images)
        if self.keep:
            self.parts.append({k: v.cpu() for k, v in self.task.step_outputs(outputs, targets).items()})
        self.predictions.extend(self.task.postprocess(outputs, **self.options))

    def on_validation_epoch_end(self) -> None:
        import torch.distributed as dist

        from foveal.engine.module import gather_kept

        parts = self.parts
        kept = {key: torch.cat([p[key] for p in parts]) for key in parts[0]} if parts else {}
        world = self.trainer.world_size
        shards: list[list[Any] | None] = [None] * world
        dist.all_gather_object(shards, self.predictions)
        self.gathered = (gather_kept(kept, world) if self.keep else {}, [p for s in shards for p in s or []])


def run_model_distributed(
    task: Task,
    model: nn.Module,
    samples: Sequence[Sample],
    *,
    batch: int,
    workers: int | None,
    device: str,
    devices: int,
    strategy: str,
    num_nodes: int = 1,
    keep: bool = True,
    **postprocess: Any,
) -> tuple[dict[str, torch.Tensor], list[Any], list[Sample]] | None:
    """``run_model`` over ``devices`` x ``num_nodes`` processes: (kept outputs, predictions, the samples
    in the order of both) in the first process, None in the others."""
    from foveal.engine.data_module import TaskData
    from foveal.engine.trainer import accelerator_for, quiet_lightning

    config = TrainConfig(task=task.name, device=device, devices=devices, strategy=strategy,
                         num_nodes=num_nodes, batch=batch, workers=workers)  # fmt: skip
    distributed.check_distributed(config)
    distributed.report_dead_processes("run the command again")
    quiet_lightning()
    module = _Inference(task, model, keep, postprocess)
    trainer = L.Trainer(
        accelerator=accelerator_for(device),
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    try:
        trainer.validate(module, datamodule=TaskData(task, {"val": list(samples)}, config), verbose=False)
    except Exception as err:
        if not distributed.peer_failure(err):
            raise
        raise distributed.stopped_error(err, "run the command again") from err
    finally:
        distributed.end_process_group()
    if not trainer.is_global_zero or module.gathered is None:
        return None
    world = trainer.world_size
    order = [i for rank in range(world) for i in range(rank, len(samples), world)]
    kept, predictions = module.gathered
    return kept, predictions, [samples[i] for i in order]
