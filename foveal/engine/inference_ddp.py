"""Inference over several processes (``foveal val|predict --devices N --strategy ddp``).

Each pass (one model over one list of samples) is one launch. Lightning's ``ddp`` launcher re-runs
the command in every extra process; the first process hands those the pass itself, the task, model
(pickled), samples and options in a file named by ``FOVEAL_PASS``, so a command of several passes
(``val --tta`` comparing two, ``ensemble`` one per member and one for the ensemble) launches its
processes once per pass and each of them runs exactly that pass and exits (``run_handed_pass``). Under
``torchrun``/SLURM every process runs the whole command itself, pass after pass.

Each process runs the model on a disjoint, unpadded shard of the samples (``UnrepeatedDistributedSampler``:
indices ``rank::world``) and every process gathers every shard's kept outputs and predictions, so
metrics over the gathered outputs equal one process's; only the first process writes files.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from foveal.config import TrainConfig
from foveal.data.sample import Sample
from foveal.engine import distributed
from foveal.errors import ConfigError
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


def run_handed_pass() -> None:
    """In a process Lightning launched for a pass: run that pass and exit (whatever command or script
    this process re-ran to get here)."""
    path = distributed.handed_pass()
    if path is None:
        return
    job = torch.load(path, weights_only=False)
    _run(**job)
    sys.exit(0)


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
) -> tuple[dict[str, torch.Tensor], list[Any], list[Sample]]:
    """``run_model`` over ``devices`` x ``num_nodes`` processes: (kept outputs, predictions, the samples
    in the order of both), gathered in every process."""
    run_handed_pass()  # a launched process of the Python API re-ran the user's script up to here
    job = {"task": task, "model": model, "samples": list(samples), "batch": batch, "workers": workers,
           "device": device, "devices": devices, "strategy": strategy, "num_nodes": num_nodes,
           "keep": keep, "postprocess": postprocess}  # fmt: skip
    if "spawn" in strategy:
        raise ConfigError(
            f"--strategy {strategy}: spawned processes return nothing to the first one; share inference "
            "with --strategy ddp (train takes ddp_spawn)"
        )
    if distributed.launched_externally():
        return _run(**job)
    folder = Path(tempfile.mkdtemp(prefix="foveal-pass-"))
    try:
        torch.save(job, folder / "pass.pt")
        os.environ[distributed.PASS_ENV] = str(folder / "pass.pt")
        return _run(**job)
    finally:
        os.environ.pop(distributed.PASS_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _run(
    task: Task,
    model: nn.Module,
    samples: list[Sample],
    batch: int,
    workers: int | None,
    device: str,
    devices: int,
    strategy: str,
    num_nodes: int,
    keep: bool,
    postprocess: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], list[Any], list[Sample]]:
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
        trainer.validate(module, datamodule=TaskData(task, {"val": samples}, config), verbose=False)
    except Exception as err:
        if not distributed.peer_failure(err):
            raise
        raise distributed.stopped_error(err, "run the command again") from err
    finally:
        distributed.end_process_group()
    assert module.gathered is not None  # on_validation_epoch_end ran in this process
    world = trainer.world_size
    order = [i for rank in range(world) for i in range(rank, len(samples), world)]
    kept, predictions = module.gathered
    return kept, predictions, [samples[i] for i in order]
