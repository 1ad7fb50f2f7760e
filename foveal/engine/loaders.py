"""DataLoaders over task samples: lazy decoding in workers, the task's collate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from foveal.data.sample import Sample
from foveal.tasks.base import Task


class TaskDataset(Dataset):
    """Samples decoded and transformed on access by ``task.item``."""

    def __init__(self, task: Task, samples: Sequence[Sample], transform: Callable) -> None:
        self.task, self.samples, self.transform = task, list(samples), transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        return self.task.item(self.samples[index], self.transform)


def default_workers(processes: int | None = None) -> int:
    """Loader processes: one per spare core of this process's share of the cores, at most 4 (0 when the
    share is one core). ``processes``: those sharing the cores (default: the run's thread budget,
    ``foveal.engine.threads``)."""
    from foveal.engine.threads import available_cores, budgeted_processes

    processes = budgeted_processes() if processes is None else max(1, processes)
    return max(0, min(4, available_cores() // processes - 1))


def make_loader(
    task: Task,
    samples: Sequence[Sample],
    split: str,
    batch: int,
    workers: int | None = None,
    seed: int = 0,
    sampler: Sampler[int] | None = None,
) -> DataLoader:
    """A loader for ``split`` ('train' shuffles, or draws with ``sampler``, drops a last batch of one and
    augments)."""
    workers = default_workers() if workers is None else workers
    dataset = TaskDataset(task, samples, task.transforms(split))
    training = split == "train"
    generator = torch.Generator().manual_seed(seed) if training else None
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=training and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=task.collate,
        drop_last=training and (len(sampler) if sampler is not None else len(dataset)) % batch == 1,
        persistent_workers=workers > 0 and training,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
    )
