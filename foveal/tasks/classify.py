"""Image classification: binary, multiclass (softmax) and multilabel (sigmoid, per-label thresholds)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from foveal.config import TrainConfig
from foveal.data.imageio import load_rgb
from foveal.data.loading import load_classification
from foveal.data.sample import Sample
from foveal.data.transforms import batch_mixer, build_transforms
from foveal.errors import DataError, check_choice
from foveal.tasks.base import DemoRecipe, PredictOption, Task, TaskMeta


@dataclass
class ClassPrediction:
    """One image's classification: ``labels`` are the top-k names (multiclass) or every label over
    its threshold (multilabel), with ``scores`` their probabilities; ``probs`` has every class."""

    labels: list[str]
    scores: list[float]
    probs: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return ", ".join(f"{n} {s:.3f}" for n, s in zip(self.labels, self.scores)) or "(no label)"


@dataclass(kw_only=True)
class ClassifyMeta(TaskMeta):
    """``kind`` binary|multiclass|multilabel; ``thresholds`` per label (multilabel); the loss recipe."""

    class_names: list[str]
    kind: str
    thresholds: list[float] | None = None
    loss: str = "auto"
    label_smoothing: float = 0.0
    class_weights: list[float] | None = None
    focal_gamma: float = 2.0


class ClassifyTask(Task):
    name = "classify"
    monitor = "accuracy"
    mode = "max"
    Meta = ClassifyMeta
    model_family = "classify"
    dataset_kind = "classify"
    headline_metrics = ("accuracy", "f1_macro", "auroc", "ece")
    tune_space = MappingProxyType(
        {**Task.tune_space, "label_smoothing": {"type": "float", "low": 0.0, "high": 0.2}}
    )
    explain_kind = "vector"
    predict_options = (PredictOption("topk", int, 5, "classify: classes per image"),)
    demo = DemoRecipe("imagefolder", 4000, 12, "test/*/*.png", predict={"render": True})
    meta: ClassifyMeta

    @classmethod
    def demo_summary(
        cls, val: dict[str, Any], test: dict[str, Any], rows: list[dict[str, Any]], data: Path
    ) -> list[tuple[str, Any]]:
        correct = sum(Path(r["path"]).parent.name == r["labels"][0] for r in rows)  # ImageFolder labels
        return [
            ("val accuracy", val["accuracy"]),
            ("test accuracy", test["accuracy"]),
            ("val macro F1", val["f1_macro"]),
            (f"{len(rows)} test images right", f"{correct}/{len(rows)}"),
        ]

    @property
    def multilabel(self) -> bool:
        return self.meta.kind == "multilabel"

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], ClassifyMeta]:
        from foveal.losses.focal import LOSS_NAMES

        check_choice("classification loss", config.loss, ("auto", *LOSS_NAMES))
        data = load_classification(
            config.data,
            config.val,
            fmt=config.format,
            kind=config.kind,
            val_fraction=config.val_fraction,
            seed=config.seed,
        )
        if not data.split("train"):
            raise DataError(f"{config.data}: no training images found; add images to the train split")
        weights = None
        if config.balance == "weights":
            from foveal.data.balance import class_weights

            counts: Counter[int] = Counter()
            for sample in data.split("train"):
                counts.update(_labels_of(sample))
            per_class = [counts[i] for i in range(len(data.class_names))]
            weights = class_weights(per_class, config.balance_weights, config.balance_beta)
        meta = ClassifyMeta(
            **ClassifyMeta.common(config),
            kind=data.kind,
            class_names=data.class_names,
            thresholds=[0.5] * len(data.class_names) if data.kind == "multilabel" else None,
            loss=config.loss,
            label_smoothing=config.label_smoothing,
            class_weights=weights,
            focal_gamma=config.focal_gamma,
        )
        return data.splits, meta

    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        loaded = load_classification(data, fmt=fmt, class_names=self.class_names)
        if self.multilabel != (loaded.kind == "multilabel"):
            raise DataError(
                f"{data}: the model is {self.meta.kind} but the data is {loaded.kind}; "
                "evaluate on data labelled the same way"
            )
        samples = loaded.split(split)
        if not samples:
            present = [name for name, part in loaded.splits.items() if part]
            if split == "val" and present == ["train"]:
                return loaded.split("train")  # a flat folder: evaluate on all of it
            raise DataError(
                f"{data}: no '{split}' split found (present: {', '.join(present) or 'none'}); "
                f"choose --split from those"
            )
        return samples

    def balance_labels(self, samples: Sequence[Sample]) -> list[list[int]]:
        return [_labels_of(s) for s in samples]

    def target_summary(self, sample: Sample) -> str | list[str] | None:
        if sample.label is None:
            return None
        return (
            [self.class_names[i] for i in _labels_of(sample)]
            if self.multilabel
            else self.class_names[sample.label]
        )

    def transforms(self, split: str) -> Callable:
        aug = self.meta.aug if split == "train" else None
        return build_transforms(split, self.meta.imgsz, aug, mean=self.meta.mean, std=self.meta.std)

    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Tensor]:
        image = transform(load_rgb(sample.path))
        if self.multilabel:
            target = torch.zeros(len(self.class_names))
            if sample.label:
                target[list(sample.label)] = 1.0
            return image, target
        return image, torch.tensor(-1 if sample.label is None else sample.label, dtype=torch.long)

    def batch_transform(self) -> Callable | None:
        return batch_mixer(self.meta.aug, len(self.class_names), self.multilabel)

    # -- model, loss, metrics -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from foveal.models.registry import build_model

        return build_model(
            self.meta.model, len(self.class_names), task=self.model_family, **self.meta.model_options
        )

    def criterion(self) -> nn.Module:
        from foveal.losses.focal import build_classification_loss

        name = self.meta.loss
        if name == "auto":
            name = "bce" if self.multilabel else "ce"
        weights = self.meta.class_weights
        return build_classification_loss(
            name,
            multilabel=self.multilabel,
            label_smoothing=self.meta.label_smoothing,
            class_weights=None if weights is None else torch.tensor(weights),
            gamma=self.meta.focal_gamma,
        )

    def loss(self, outputs: Tensor, targets: Tensor, criterion: nn.Module | None) -> dict[str, Tensor]:
        return {"loss": criterion(outputs, targets)}

    def probabilities(self, logits: Tensor) -> Tensor:
        """(B, C) logits -> (B, C) probabilities (sigmoid for multilabel, else softmax)."""
        logits = logits.float()
        return logits.sigmoid() if self.multilabel else logits.softmax(dim=1)

    def step_outputs(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {
            "probs": self.probabilities(outputs).detach(),
            "logits": outputs.detach().float(),
            "targets": targets.detach(),
        }

    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        from foveal.metrics.classification import classification_metrics

        threshold = self.meta.thresholds if self.multilabel else 0.5
        metrics = classification_metrics(
            kept["probs"].cpu(),
            kept["targets"].cpu(),
            self.meta.kind,
            self.class_names,
            threshold=threshold,
        )
        # calibration: expected calibration error of the (temperature-scaled) probabilities
        from foveal.metrics.calibration import expected_calibration_error

        metrics["ece"] = round(expected_calibration_error(kept["probs"], kept["targets"]), 7)
        return metrics

    def plots(self, kept: dict[str, Tensor], metrics: dict[str, Any], out_dir: str, *_: Any) -> list[str]:
        from foveal.report.plots import plot_confusion_matrix, plot_pr, plot_roc

        out = Path(out_dir)
        probs, targets = kept["probs"].cpu().numpy(), kept["targets"].cpu().numpy()
        kind = self.meta.kind
        paths = [
            plot_roc(probs, targets, kind, self.class_names, out / "roc.png"),
            plot_pr(probs, targets, kind, self.class_names, out / "pr.png"),
        ]
        if not self.multilabel:
            paths.insert(
                0,
                plot_confusion_matrix(
                    metrics["confusion_matrix"], self.class_names, out / "confusion_matrix.png"
                ),
            )
        return [str(p) for p in paths]

    def error_analysis(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        samples: Sequence[Sample],
        predictions: Sequence[Any],
        plots_dir: Path,
        n: int = 16,
    ) -> tuple[dict[str, Any], list[str]]:
        """``top_losses`` and ``confused_pairs`` (single-label); ``top_losses.png``, ``reliability.png``."""
        from foveal.metrics.errors import pair_rows, top_losses
        from foveal.report.error_grids import top_losses_grid
        from foveal.report.plots import reliability_diagram

        threshold = (self.meta.thresholds or 0.5) if self.multilabel else 0.5
        rows = top_losses(samples, kept["probs"], kept["targets"], self.class_names, n, threshold)
        report: dict[str, Any] = {"task": self.name, "top_losses": rows, "confused_pairs": []}
        if not self.multilabel:
            report["confused_pairs"] = pair_rows(metrics["confusion_matrix"], self.class_names)
        plots = [
            str(top_losses_grid(rows, plots_dir / "top_losses.png")),
            str(reliability_diagram(kept["probs"], kept["targets"], plots_dir / "reliability.png")),
        ]
        return report, plots

    def explain_scores(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        return outputs, self.probabilities(outputs)

    # -- calibration, TTA and ensembles -------------------------------------------------------
    def temper(self, outputs: Tensor, temperature: float) -> Tensor:
        return outputs.float() / temperature

    def calibration_pairs(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return outputs.detach().double().cpu(), targets.detach().cpu()

    @property
    def calibration_multilabel(self) -> bool:
        return self.multilabel

    def unview(self, outputs: Tensor, view: Any, viewed: tuple[int, int], size: tuple[int, int]) -> Tensor:
        return outputs  # a class does not move with the image

    def merge(self, outputs: list[Tensor], weights: list[float], method: str = "mean") -> Tensor:
        """Weighted mean of the members' probabilities (``vote``: of their decisions), returned as logits
        that ``probabilities`` maps back to that mean."""
        probs = torch.stack([self.probabilities(o) for o in outputs])  # (M, B, C)
        if method == "vote":
            if self.multilabel:
                probs = (probs >= torch.tensor(self.meta.thresholds, device=probs.device)).float()
            else:
                probs = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float()
        w = torch.tensor(weights, dtype=probs.dtype, device=probs.device)
        mean = (w[:, None, None] * probs).sum(0) / w.sum()
        mean = mean.clamp(1e-7, 1 - 1e-7)
        return torch.logit(mean) if self.multilabel else mean.log()

    @property
    def single_label(self) -> bool:
        return not self.multilabel

    def single_label_probabilities(self, kept: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return kept["probs"], kept["targets"]

    def kept_from_probabilities(self, probs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {"probs": probs.float(), "logits": probs.clamp_min(1e-7).log().float(), "targets": targets}

    # -- prediction ---------------------------------------------------------------------------
    def active_probabilities(self, outputs: Tensor) -> list[Tensor]:
        """(B, C) logits -> per image (1, C) class probabilities; multilabel: (C, 2), each label a
        yes/no unit."""
        probs = self.probabilities(outputs)
        if self.multilabel:
            return list(torch.stack([probs, 1 - probs], dim=-1))
        return list(probs[:, None])

    def export_agreement(self, reference: Sequence[Any], candidate: Sequence[Any]) -> tuple[str, float]:
        """Top-1 agreement (multilabel: the same label set) of two models' predictions."""
        same = [
            (sorted(a.labels) == sorted(b.labels)) if self.multilabel else (a.labels[:1] == b.labels[:1])
            for a, b in zip(reference, candidate, strict=True)
        ]
        return ("labels_agreement" if self.multilabel else "top1_agreement"), sum(same) / max(1, len(same))

    def postprocess(self, outputs: Tensor, topk: int = 5, **options: Any) -> list[ClassPrediction]:
        probs = self.probabilities(outputs).cpu()
        names = self.class_names
        predictions = []
        for row in probs:
            if self.multilabel:
                order = [
                    i for i in row.argsort(descending=True).tolist() if row[i] >= self.meta.thresholds[i]
                ]
            else:
                order = row.argsort(descending=True)[: max(1, topk)].tolist()
            predictions.append(
                ClassPrediction(
                    [names[i] for i in order],
                    [float(row[i]) for i in order],
                    {n: float(p) for n, p in zip(names, row)},
                )
            )
        return predictions

    def render(self, image: Image.Image, prediction: ClassPrediction) -> Image.Image:
        scale = max(1, 256 // max(image.size))
        canvas = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)
        draw = ImageDraw.Draw(canvas)
        lines = [f"{n} {s:.2f}" for n, s in zip(prediction.labels[:3], prediction.scores[:3])] or ["(none)"]
        draw.rectangle((0, 0, canvas.width, 12 * len(lines) + 4), fill=(0, 0, 0))
        for i, line in enumerate(lines):
            draw.text((4, 2 + 12 * i), line, fill=(255, 255, 255))
        return canvas


def _labels_of(sample: Sample) -> list[int]:
    """The class indices of a sample: its label, or its labels (multilabel)."""
    if sample.label is None:
        return []
    return list(sample.label) if isinstance(sample.label, list) else [sample.label]
