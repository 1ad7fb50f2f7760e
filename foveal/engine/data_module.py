"""The training and validation loaders of a run, built in each training process once Lightning knows
its rank: with several processes every one trains on its shard (``DistributedSampler``, reshuffled each
epoch) and validates on a disjoint, unpadded shard, so the gathered validation outputs hold every image
exactly once and the metrics equal a single process's."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from torch.utils.data import DataLoader, Sampler

from foveal.config import TrainConfig
from foveal.data.sample import Sample
from foveal.engine.loaders import make_loader
from foveal.errors import ConfigError
from foveal.tasks.base import Task


class TaskData(L.LightningDataModule):
    """``train``/``val`` samples of ``task``; ``train_sampler(samples)`` (single process only) is the
    class-balancing sampler of ``--balance``, or None."""

    def __init__(
        self,
        task: Task,
        splits: dict[str, list[Sample]],
        config: TrainConfig,
        train_sampler: Callable[[], Sampler[int] | None] = lambda: None,
    ) -> None:
        super().__init__()
        self.task, self.splits, self.config, self.train_sampler = task, splits, config, train_sampler

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        cfg, samples = self.config, self.splits["train"]
        world, rank = self._world()
        if world == 1:
            sampler = self.train_sampler()
        else:
            if cfg.balance in ("oversample", "undersample"):
                raise ConfigError(
                    f"--balance {cfg.balance} draws from the whole training set in one process; with "
                    f"{world} processes use --balance weights, or train on one device"
                )
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(samples, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
        return make_loader(self.task, samples, "train", cfg.batch, cfg.workers, cfg.seed, sampler)

    def val_dataloader(self) -> DataLoader:
        cfg, samples = self.config, self.splits.get("val", [])
        world, rank = self._world()
        sampler = None
        if world > 1:
            if len(samples) < world:
                raise ConfigError(
                    f"the validation split has {len(samples)} images, fewer than the {world} training "
                    "processes; add validation images or use fewer --devices"
                )
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(samples, num_replicas=world, rank=rank, shuffle=False)
        return make_loader(self.task, samples, "val", cfg.batch, cfg.workers, sampler=sampler)
