"""Image regression: one or several numeric targets per image (``--task regress``).

Data: a CSV with ``path``, an optional ``split`` and one numeric column per target (or a folder with
such a sidecar CSV; ``foveal.data.reg_loading``). The model (any classification backbone with one
output per target) predicts standardised targets, ``(y - mean) / std`` with the training split's
statistics, which the checkpoint stores; predictions and metrics are in the targets' own units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from foveal.config import TrainConfig
from foveal.data.imageio import load_rgb
from foveal.data.sample import Sample
from foveal.data.transforms import build_transforms
from foveal.errors import ConfigError, DataError, check_choice
from foveal.tasks.base import Task, TaskMeta

LOSSES = ("mse", "l1", "huber", "smooth_l1")
METRICS = ("mae", "mse", "rmse", "r2", "mape")


@dataclass
class ValuePrediction:
    """One image's predicted ``values`` by target name, in the targets' units."""

    values: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values)}

    def summary(self) -> str:
        return ", ".join(f"{name} {value:.4g}" for name, value in self.values.items())


@dataclass(kw_only=True)
class RegressMeta(TaskMeta):
    """``target_names`` in model-output order; the training split's ``target_mean``/``target_std``."""

    target_names: list[str]
    target_mean: list[float]
    target_std: list[float]
    loss: str = "mse"


class RegressTask(Task):
    name = "regress"
    monitor = "r2"
    mode = "max"
    Meta = RegressMeta
    model_family = "classify"  # any classification backbone, one output per target
    dataset_kind = "regress"
    headline_metrics = ("r2", "mae", "rmse", "mape")
    # medium and heavy mix images (mosaic, MixUp), which regression refuses
    tune_space = MappingProxyType(
        {**Task.tune_space, "aug": ["auto", "none", "light"], "loss": ["mse", "l1", "huber"]}
    )
    explain_kind = "vector"
    default_aug = "none"  # crops and rescales change sizes, flips change angles: opt in with --aug
    meta: RegressMeta

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.target_names)

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], RegressMeta]:
        from foveal.data.reg_loading import load_regression, target_matrix

        loss = "mse" if config.loss == "auto" else config.loss
        check_choice("regression loss", loss, LOSSES)
        if config.balance != "none":
            raise ConfigError(
                f"--balance {config.balance} needs classes; use --balance none for --task regress"
            )
        data = load_regression(
            config.data, config.val, fmt=config.format, val_fraction=config.val_fraction, seed=config.seed
        )
        if not data.split("train"):
            raise DataError(f"{config.data}: no training images found; add rows with split 'train'")
        values = target_matrix(data.split("train")).astype(np.float64)
        std = values.std(axis=0)
        meta = RegressMeta(
            **RegressMeta.common(config),
            target_names=list(data.target_names),
            target_mean=[float(v) for v in values.mean(axis=0)],
            target_std=[float(v) if v > 1e-12 else 1.0 for v in std],  # a constant target: unscaled
            loss=loss,
        )
        aug = meta.aug or {}
        if aug.get("mixup") or aug.get("cutmix") or aug.get("mosaic"):
            raise ConfigError("MixUp/CutMix/mosaic mix images, not targets; set them to 0 for --task regress")
        return {name: part for name, part in data.splits.items() if part}, meta

    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        from foveal.data.reg_loading import load_regression

        loaded = load_regression(data, fmt=fmt, target_names=self.class_names, split_off_val=False)
        if loaded.split(split):
            return loaded.split(split)
        present = [name for name, part in loaded.splits.items() if part]
        if present == ["all"] and split == "val":
            return loaded.split("all")  # no split column: evaluate on all of it
        raise DataError(
            f"{data}: no '{split}' split found (present: {', '.join(present) or 'none'}); "
            "choose --split from those"
        )

    def target_summary(self, sample: Sample) -> dict[str, float] | None:
        return None if sample.values is None else dict(zip(self.class_names, sample.values, strict=True))

    def transforms(self, split: str) -> Callable:
        aug = self.meta.aug if split == "train" else None
        return build_transforms(split, self.meta.imgsz, aug, mean=self.meta.mean, std=self.meta.std)

    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Tensor]:
        image = transform(load_rgb(sample.path))
        if sample.values is None:  # prediction: no target
            return image, torch.full((len(self.class_names),), float("nan"))
        # float64, so metrics see the targets exactly (the loss casts to the outputs' float32)
        return image, self._standardise(torch.tensor(sample.values, dtype=torch.float64))

    def _standardise(self, values: Tensor) -> Tensor:
        mean, std = self._stats(values)
        return (values - mean) / std

    def values(self, outputs: Tensor) -> Tensor:
        """(B, T) model outputs -> (B, T) float64 predictions in the targets' units."""
        mean, std = self._stats(outputs, torch.float64)
        return outputs.detach().double() * std + mean

    def _stats(self, like: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        dtype = dtype or like.dtype
        mean = torch.tensor(self.meta.target_mean, dtype=dtype, device=like.device)
        return mean, torch.tensor(self.meta.target_std, dtype=dtype, device=like.device)

    # -- model, loss, metrics -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from foveal.models.registry import build_model

        names = self.class_names
        return build_model(self.meta.model, len(names), task=self.model_family, **self.meta.model_options)

    def criterion(self) -> nn.Module:
        return {"mse": nn.MSELoss, "l1": nn.L1Loss, "huber": nn.HuberLoss, "smooth_l1": nn.SmoothL1Loss}[
            self.meta.loss
        ]()

    def loss(self, outputs: Tensor, targets: Tensor, criterion: nn.Module | None) -> dict[str, Tensor]:
        return {"loss": criterion(outputs.float(), targets.float())}

    def step_outputs(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {"preds": self.values(outputs), "targets": self.values(targets)}

    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        """scikit-learn's MAE, MSE, RMSE, R² and MAPE per target (``per_target``) and their mean over
        the targets at the top level; ``r2`` is monitored."""
        from sklearn import metrics as skm

        true, pred = kept["targets"].cpu().double().numpy(), kept["preds"].cpu().double().numpy()
        if len(true) < 2:
            raise DataError(f"regression metrics need at least 2 labelled images, got {len(true)}")
        per = {
            "mae": skm.mean_absolute_error(true, pred, multioutput="raw_values"),
            "mse": skm.mean_squared_error(true, pred, multioutput="raw_values"),
            "r2": skm.r2_score(true, pred, multioutput="raw_values"),
            "mape": skm.mean_absolute_percentage_error(true, pred, multioutput="raw_values"),
        }
        per["rmse"] = np.sqrt(per["mse"])
        metrics: dict[str, Any] = {"n": len(true)}
        metrics.update({key: float(np.mean(per[key])) for key in METRICS})
        metrics["per_target"] = {
            name: {key: float(per[key][t]) for key in METRICS} for t, name in enumerate(self.class_names)
        }
        return metrics

    def plots(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        out_dir: str,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Any] = (),
    ) -> list[str]:
        from foveal.report.reg_plots import plot_predicted_vs_true, plot_residuals

        out = Path(out_dir)
        true, pred = kept["targets"].numpy(), kept["preds"].numpy()
        return [
            str(plot_predicted_vs_true(pred, true, self.class_names, out / "predicted_vs_true.png")),
            str(plot_residuals(pred, true, self.class_names, out / "residuals.png")),
        ]

    def error_analysis(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        samples: Sequence[Sample],
        predictions: Sequence[Any],
        plots_dir: Path,
        n: int = 16,
    ) -> tuple[dict[str, Any], list[str]]:
        """The ``n`` images of largest residual (summed over targets in units of each target's std),
        largest first; ``largest_residuals.png``."""
        from foveal.report.error_grids import WRONG, image_grid

        true, pred = kept["targets"].numpy(), kept["preds"].numpy()
        score = (np.abs(pred - true) / np.asarray(self.meta.target_std)).sum(axis=1)
        order = np.argsort(-score, kind="stable")[: max(0, n)]
        names = self.class_names
        rows = [
            {
                "index": int(i),
                "path": samples[i].path,
                "score": round(float(score[i]), 6),
                "target": {name: float(true[i, t]) for t, name in enumerate(names)},
                "prediction": {name: float(pred[i, t]) for t, name in enumerate(names)},
            }
            for i in order.tolist()
        ]
        titles = [
            "\n".join(f"{name} {r['target'][name]:.3g} → {r['prediction'][name]:.3g}" for name in names[:3])
            for r in rows
        ]
        images = [np.asarray(load_rgb(r["path"])) for r in rows]
        grid = image_grid(
            images, titles, [WRONG] * len(rows), plots_dir / "largest_residuals.png", "Largest residuals"
        )
        return {"task": self.name, "largest_residuals": rows}, [str(grid)]

    # -- TTA and ensembles --------------------------------------------------------------------
    def explain_scores(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        return outputs, outputs

    def unview(self, outputs: Tensor, view: Any, viewed: tuple[int, int], size: tuple[int, int]) -> Tensor:
        return outputs  # the targets are taken not to move with a flip (use no --tta for angles)

    def merge(self, outputs: list[Tensor], weights: list[float], method: str = "mean") -> Tensor:
        """The weighted mean of the members' (standardised) outputs."""
        if method == "vote":
            raise ConfigError("--method vote needs classes; regression members merge by their mean")
        stacked = torch.stack([o.float() for o in outputs])
        w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device)
        return (w[:, None, None] * stacked).sum(0) / w.sum()

    def export_agreement(self, reference: Sequence[Any], candidate: Sequence[Any]) -> tuple[str, float]:
        """The fraction of predicted values within 1e-3 x (1 + |value|) of the eager model's."""
        close = [
            abs(a.values[name] - b.values[name]) <= 1e-3 * (1 + abs(a.values[name]))
            for a, b in zip(reference, candidate, strict=True)
            for name in a.values
        ]
        return "values_close", sum(close) / max(1, len(close))

    # -- prediction ---------------------------------------------------------------------------
    def postprocess(self, outputs: Tensor, **options: Any) -> list[ValuePrediction]:
        names = self.class_names
        return [
            ValuePrediction({name: float(v) for name, v in zip(names, row, strict=True)})
            for row in self.values(outputs).cpu().tolist()
        ]

    def table_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A column per target in predictions.csv."""
        values = row.get("values", {})
        return {**{k: v for k, v in row.items() if k != "values"}, **values}

    def render(self, image: Image.Image, prediction: ValuePrediction) -> Image.Image:
        scale = max(1, 256 // max(image.size))
        canvas = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)
        draw = ImageDraw.Draw(canvas)
        lines = [f"{name} {value:.4g}" for name, value in list(prediction.values.items())[:4]]
        draw.rectangle((0, 0, canvas.width, 12 * len(lines) + 4), fill=(0, 0, 0))
        for i, line in enumerate(lines):
            draw.text((4, 2 + 12 * i), line, fill=(255, 255, 255))
        return canvas
