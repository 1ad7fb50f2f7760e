"""A task written only against the contract, as a later module would be: denoising with no labels,
an image as the target, and its own training step (two models, two optimisers, GAN-style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from foveal.config import TrainConfig
from foveal.data.imageio import load_rgb
from foveal.data.sample import Sample
from foveal.data.transforms import build_transforms
from foveal.tasks.base import Task, TaskMeta


@dataclass
class Restored:
    """One image's denoised version (a (3, H, W) array is left out of JSON) and its mean."""

    mean: float

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def summary(self) -> str:
        return f"mean {self.mean:.3f}"


@dataclass(kw_only=True)
class DenoiseMeta(TaskMeta):
    noise: float = 0.2


def _net(out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, out, 3, padding=1))


class DenoiseTask(Task):
    name = "denoise"
    monitor = "psnr"
    Meta = DenoiseMeta
    model_family = "classify"  # unused: build_model makes its own two networks
    dataset_kind = "classify"
    default_aug = "none"
    manual_optimization = True
    meta: DenoiseMeta

    @property
    def class_names(self) -> list[str]:
        return ["image"]

    @classmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], DenoiseMeta]:
        from foveal.data.loading import load_classification

        data = load_classification(config.data, seed=config.seed)  # labels are not used: images only
        splits = {name: [Sample(s.path) for s in part] for name, part in data.splits.items()}
        return splits, DenoiseMeta(**DenoiseMeta.common(config))

    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        return self.load_data(TrainConfig(task=self.name, data=data))[0][split]

    def transforms(self, split: str) -> Callable:
        return build_transforms("val", self.meta.imgsz, None, mean=(0.0,) * 3, std=(1.0,) * 3)

    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Tensor]:
        clean = transform(load_rgb(sample.path))
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(hash(sample.path) % 2**31))
        return clean + self.meta.noise * noise, clean  # the target is an image

    def build_model(self) -> nn.Module:
        return nn.ModuleDict({"generator": _net(3), "critic": _net(1)})

    def forward(self, model: nn.Module, images: Tensor, targets: Any = None) -> Tensor:
        return images + model["generator"](images)

    def loss(self, outputs: Tensor, targets: Tensor, criterion: nn.Module | None) -> dict[str, Tensor]:
        return {"loss": nn.functional.mse_loss(outputs, targets)}

    def training_step(self, module: Any, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        noisy, clean = batch
        opt_g, opt_c = module.optimizers()
        nets = module.model
        fake = self.forward(nets, noisy)
        critic = (
            nn.functional.softplus(nets["critic"](fake.detach())).mean()
            + nn.functional.softplus(-nets["critic"](clean)).mean()
        )
        opt_c.zero_grad()
        module.manual_backward(critic)
        opt_c.step()
        generator = (
            nn.functional.mse_loss(fake, clean) + 0.01 * nn.functional.softplus(-nets["critic"](fake)).mean()
        )
        opt_g.zero_grad()
        module.manual_backward(generator)
        opt_g.step()
        module.log("train/loss", generator, on_step=False, on_epoch=True, batch_size=len(noisy))
        return generator

    def configure_optimizers(self, module: Any) -> Any:
        return [
            torch.optim.Adam(module.model["generator"].parameters(), lr=1e-3),
            torch.optim.Adam(module.model["critic"].parameters(), lr=1e-3),
        ]

    def step_outputs(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {"mse": ((outputs - targets) ** 2).mean(dim=(1, 2, 3)).detach()}

    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        return {
            "psnr": float((-10 * torch.log10(kept["mse"].clamp_min(1e-10))).mean()),
            "n": len(kept["mse"]),
        }

    def postprocess(self, outputs: Tensor, **options: Any) -> list[Restored]:
        return [Restored(float(o.mean())) for o in outputs]

    def render(self, image: Image.Image, prediction: Restored) -> Image.Image:
        return image
