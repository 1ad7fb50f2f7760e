"""The Task contract: what every task (classify, segment, detect, ...) provides.

The engine, CLI, evaluation and export only talk to tasks through this interface, so a new task
is a new module implementing it. State that predicting needs (class names, input size,
normalisation, model name) lives in ``meta``, a dict of plain values stored in checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor, nn

from foveal.config import TrainConfig
from foveal.data.imageio import load_rgb
from foveal.data.sample import Sample


class Task(ABC):
    """One computer-vision task.

    ``monitor`` names the validation metric that selects the best checkpoint; ``mode`` says
    whether larger ('max') or smaller ('min') is better.
    """

    name: ClassVar[str]
    monitor: ClassVar[str]
    mode: ClassVar[str] = "max"

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    @property
    def channels_last(self) -> bool:
        """Whether the engine may store the model channels-last (faster convolutions on CPU and GPU)."""
        return True

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
        """Read the dataset: samples per split and the task meta (classes, kind, ...)."""

    @abstractmethod
    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        """Read one split of ``data`` against this task's classes (for val/evaluate)."""

    @abstractmethod
    def transforms(self, split: str) -> Callable:
        """The transform for 'train', 'val', 'test' or 'predict'."""

    @abstractmethod
    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Any]:
        """Decode ``sample`` and return (image tensor (3,H,W), encoded target)."""

    def balance_labels(self, samples: Sequence[Sample]) -> list[list[int]]:
        """The class indices each sample carries, for ``--balance oversample|undersample``."""
        from foveal.errors import ConfigError

        raise ConfigError(f"--balance is not supported for --task {self.name}; use --balance none")

    def unview(self, outputs: Any, view: Any, viewed: tuple[int, int], size: tuple[int, int]) -> Any:
        """Map ``forward`` outputs of a TTA view (``foveal.engine.merge.View``) of the (H, W) = ``size``
        batch, which the model saw at ``viewed`` (h, w), back to the original geometry."""
        from foveal.errors import ConfigError

        raise ConfigError(f"--tta is not supported for --task {self.name}")

    def merge(self, outputs: list[Any], weights: list[float], method: str = "mean") -> Any:
        """Merge several ``forward`` outputs of one batch (TTA views, ensemble members) into one."""
        from foveal.errors import ConfigError

        raise ConfigError(f"--tta and ensembles are not supported for --task {self.name}")

    def collate(self, batch: Sequence[tuple[Tensor, Any]]) -> tuple[Tensor, Any]:
        """Stack a list of items into a batch."""
        return torch.utils.data.default_collate(batch)

    def batch_transform(self) -> Callable[[Tensor, Any], tuple[Tensor, Any]] | None:
        """An optional batch-level augmentation (e.g. MixUp/CutMix) for training."""
        return None

    # -- model, loss, metrics -----------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model for this task's meta."""

    def forward(self, model: nn.Module, images: Tensor, targets: Any = None) -> Any:
        """Run ``model`` on a (B, 3, H, W) batch. Models that compute their losses themselves in
        training mode (torchvision detectors) also get ``targets``; the default ignores them."""
        return model(images)

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> dict[str, Tensor]:
        """Loss terms; key 'loss' is the total that is minimised (validation may return no 'loss')."""

    @abstractmethod
    def step_outputs(self, outputs: Any, targets: Any) -> dict[str, Tensor]:
        """Per-batch tensors to keep for epoch-level metrics (concatenated along dim 0)."""

    @abstractmethod
    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        """Exact metrics over a whole split from the concatenated ``step_outputs``."""

    def plots(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        out_dir: str,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Any] = (),
    ) -> list[str]:
        """Write the task's evaluation plots (PNG) into ``out_dir``; return their paths.

        ``samples`` and their ``predictions`` (from ``postprocess``) allow example grids.
        """
        return []

    # -- prediction ---------------------------------------------------------------------------
    @abstractmethod
    def postprocess(self, outputs: Any, **options: Any) -> list[Any]:
        """Raw model outputs for a batch -> one JSON-serialisable prediction per image."""

    def finalize(self, prediction: Any, sample: Sample) -> Any:
        """Map a prediction made at model input size back to ``sample``'s image (e.g. resize a mask)."""
        return prediction

    def write_predictions(self, rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
        """Write task-specific files over all predicted images (e.g. a COCO results file); return paths."""
        return []

    def save_prediction(
        self, prediction: Any, sample: Sample, out_dir: Path, stem: str, render: bool
    ) -> dict:
        """Write per-image prediction files into ``out_dir`` (an overlay when ``render``); return
        {column: file path} entries for the predictions table."""
        if not render:
            return {}
        path = out_dir / "overlays" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.render(load_rgb(sample.path), prediction).save(path)
        return {"overlay": str(path)}

    @abstractmethod
    def render(self, image: Image.Image, prediction: Any) -> Image.Image:
        """An overlay of ``prediction`` on ``image`` for people to look at."""
