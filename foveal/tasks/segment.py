"""Semantic segmentation: binary (one foreground class, sigmoid) or multiclass (softmax) class maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import tv_tensors

from foveal.config import TrainConfig
from foveal.data.imageio import image_size, load_rgb
from foveal.data.sample import Sample
from foveal.data.transforms import build_transforms
from foveal.errors import ConfigError, DataError
from foveal.tasks.base import DemoRecipe, PredictOption, Task, TaskMeta, resolved_aug


@dataclass
class MaskPrediction:
    """One image's segmentation: ``mask`` (H, W) uint8 class indices at the image's size, pixel
    ``areas`` per class name, and ``instances`` per class name when instance counting was asked for."""

    mask: np.ndarray
    class_names: list[str]
    instances: dict[str, int] | None = None
    areas: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = np.bincount(self.mask.ravel(), minlength=len(self.class_names))
        self.areas = {name: int(counts[i]) for i, name in enumerate(self.class_names)}

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"mask": self.mask, "areas": self.areas}
        if self.instances is not None:
            row["instances"] = self.instances
        return row

    def summary(self) -> str:
        parts = [f"{n} {a} px" for n, a in self.areas.items() if a and n != self.class_names[0]]
        if self.instances:
            parts.append("instances: " + ", ".join(f"{n} {c}" for n, c in self.instances.items()))
        return ", ".join(parts) or "(background only)"


@dataclass(kw_only=True)
class SegmentMeta(TaskMeta):
    """``kind`` binary|multiclass; ``spec`` the dataset's mask encoding (``MaskSpec.to_dict``)."""

    class_names: list[str]
    kind: str
    ignore_index: int
    spec: dict[str, Any]
    loss: str = "ce+dice"
    class_weights: list[float] | None = None


class SegmentTask(Task):
    name = "segment"
    monitor = "miou"
    mode = "max"
    Meta = SegmentMeta
    model_family = "segment"
    dataset_kind = "segment"
    headline_metrics = ("miou", "dice", "pixel_accuracy", "ece")
    explain_kind = "map"
    predict_options = (
        PredictOption("instances", bool, False, "segment: count instances (watershed)"),
        PredictOption("min_size", int, 0, "segment: drop components below N pixels"),
        PredictOption("fill_holes", bool, False, "segment: fill enclosed holes"),
        PredictOption("open_radius", int, 0, "segment: morphological opening radius"),
        PredictOption("close_radius", int, 0, "segment: morphological closing radius"),
    )
    # the U-Net underfits this data in a 3-minute budget: no augmentation, more and larger steps
    # (batch 32, lr 5e-3) reach the bar in 7 epochs where the defaults need ~12 (benchmarks/README.md)
    demo = DemoRecipe("masks", 1500, 7, "test/images/*.png", {"batch": 32, "aug": "none", "lr": 5e-3},
                      {"instances": True})  # fmt: skip
    meta: SegmentMeta

    @classmethod
    def demo_summary(
        cls, val: dict[str, Any], test: dict[str, Any], rows: list[dict[str, Any]], data: Path
    ) -> list[tuple[str, Any]]:
        return [
            ("val mIoU", val["miou"]),
            ("test mIoU", test["miou"]),
            ("val mean Dice", val["dice"]),
            ("val pixel accuracy", val["pixel_accuracy"]),
        ]

    @property
    def binary(self) -> bool:
        return self.meta.kind == "binary"

    @property
    def ignore_index(self) -> int:
        return self.meta.ignore_index

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], SegmentMeta]:
        from foveal.data.seg_loading import load_segmentation

        aug = resolved_aug(config)
        if aug["auto_augment"] != "none":
            raise ConfigError(
                f"aug auto_augment={aug['auto_augment']} cannot transform masks; set "
                "auto_augment: none for --task segment"
            )
        if aug["mixup"] or aug["cutmix"]:
            raise ConfigError(
                "MixUp/CutMix mix labels, not masks; set mixup: 0 and cutmix: 0 for --task segment"
            )
        splits, spec = load_segmentation(
            config.data,
            config.val,
            fmt=config.format,
            val_fraction=config.val_fraction,
            seed=config.seed,
            on_bad_image=config.on_bad_image,
        )
        from foveal.data.seg_loading import check_masks

        splits = {name: check_masks(part, spec, config.on_bad_image) for name, part in splits.items()}
        n = len(spec.class_names)
        if config.kind not in ("auto", "binary", "multiclass"):
            raise ConfigError(
                f"--kind {config.kind} is not a segmentation kind; use auto, binary or multiclass"
            )
        if config.kind == "binary" and n != 2:
            raise DataError(
                f"{config.data}: --kind binary needs background + one class, found {n}: {spec.class_names}"
            )
        kind = config.kind if config.kind != "auto" else ("binary" if n == 2 else "multiclass")
        weights = None
        if config.balance == "weights":
            from foveal.data.balance import class_weights

            pixels = _pixel_counts(splits["train"], spec)
            weights = class_weights(pixels, config.balance_weights, config.balance_beta)
        meta = SegmentMeta(
            **SegmentMeta.common(config),
            kind=kind,
            class_names=list(spec.class_names),
            ignore_index=spec.ignore_index,
            spec=spec.to_dict(),
            loss="ce+dice" if config.loss == "auto" else config.loss,
            class_weights=weights,
        )
        return splits, meta

    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        from foveal.data.seg_loading import load_segmentation

        splits, _ = load_segmentation(data, fmt=fmt, class_spec=self.mask_spec, split_off_val=False)
        if splits.get(split):
            return splits[split]
        present = [name for name, part in splits.items() if part]
        if present == ["all"] and split == "val":
            return splits["all"]
        raise DataError(
            f"{data}: no '{split}' split found (present: {', '.join(present) or 'none'}); "
            "choose --split from those"
        )

    def balance_labels(self, samples: Sequence[Sample]) -> list[list[int]]:
        """Classes present in each mask (background left out when another class is present)."""
        from foveal.data.seg_loading import decode_target

        spec, ignore = self.mask_spec, self.ignore_index

        def present(sample: Sample) -> list[int]:
            values = [int(v) for v in np.unique(decode_target(sample, spec)) if v != ignore]
            return [v for v in values if v != 0] or values

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(present, samples))

    @property
    def mask_spec(self) -> Any:
        """The dataset's mask encoding (``foveal.data.formats.masks.MaskSpec``)."""
        from foveal.data.formats.masks import MaskSpec

        if not hasattr(self, "_mask_spec"):
            self._mask_spec = MaskSpec.from_dict(self.meta.spec)
        return self._mask_spec

    def transforms(self, split: str) -> Callable:
        aug = self.meta.aug if split == "train" else None
        return build_transforms(split, self.meta.imgsz, aug, mean=self.meta.mean, std=self.meta.std)

    def target(self, sample: Sample, size: tuple[int, int]) -> np.ndarray:
        """The (H, W) int64 class map of ``sample`` (all ignore_index when it has no annotation)."""
        from foveal.data.seg_loading import decode_target

        if sample.mask is None and sample.objects is None:
            return np.full((size[1], size[0]), self.ignore_index, dtype=np.int64)
        return decode_target(sample, self.mask_spec, size)

    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Tensor]:
        image = load_rgb(sample.path)
        # uint8 masks (classes < 255 = ignore_index) resize ~100x faster in v2 than int64 ones
        mask = tv_tensors.Mask(torch.from_numpy(self.target(sample, image.size).astype(np.uint8)))
        image, mask = transform(image, mask)
        return image, mask.as_subclass(Tensor).long()

    # -- model, loss, metrics -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from foveal.models.registry import build_model

        outputs = 1 if self.binary else len(self.class_names)
        return build_model(self.meta.model, outputs, task=self.model_family, **self.meta.model_options)

    def criterion(self) -> nn.Module:
        from foveal.losses.segmentation import build_segmentation_loss

        return build_segmentation_loss(
            self.meta.loss,
            binary=self.binary,
            num_classes=len(self.class_names),
            ignore_index=self.ignore_index,
            class_weights=self.meta.class_weights,
        )

    def loss(self, outputs: Tensor, targets: Tensor, criterion: nn.Module | None) -> dict[str, Tensor]:
        return criterion(outputs, targets)

    def class_map(self, logits: Tensor) -> Tensor:
        """(B, C, H, W) logits -> (B, H, W) int64 class indices."""
        if self.binary:
            return (logits[:, 0] > 0).long()
        return logits.argmax(dim=1)

    def error_analysis(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        samples: Sequence[Sample],
        predictions: Sequence[Any],
        plots_dir: Path,
        n: int = 16,
    ) -> tuple[dict[str, Any], list[str]]:
        """``confused_pairs`` of pixels and the ``worst_images`` by per-image mIoU (``worst_images.png``:
        image | target | prediction)."""
        from foveal.metrics.errors import pair_rows, worst_segmentations
        from foveal.report.error_grids import worst_segmentations_grid

        maps = [self.finalize(p, image_size(s.path)).mask for p, s in zip(predictions, samples, strict=True)]
        worst = worst_segmentations(samples, maps, self.mask_spec, n)
        report = {
            "task": self.name,
            "confused_pairs": pair_rows(metrics["confusion_matrix"], self.class_names),
            "worst_images": [{k: v for k, v in row.items() if k != "maps"} for row in worst],
        }
        plots = (
            [str(worst_segmentations_grid(worst, self.colours(), plots_dir / "worst_images.png"))]
            if worst
            else []
        )
        return report, plots

    def explain_maps(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Binary maps as two classes: logits [-z, z], probabilities [1 - sigmoid(z), sigmoid(z)]."""
        if self.binary:
            p = outputs[:, :1].sigmoid()
            return torch.cat([-outputs[:, :1], outputs[:, :1]], 1), torch.cat([1 - p, p], 1)
        return outputs, outputs.softmax(1)

    # -- calibration, TTA and ensembles -------------------------------------------------------
    def temper(self, outputs: Tensor, temperature: float) -> Tensor:
        return outputs.float() / temperature  # binary: z / T, i.e. the two-class [0, z] / T

    def calibration_pairs(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Every labelled pixel's raw class logits (P, K) and target class (P,)."""
        logits, targets = self.class_logits(outputs.detach()).cpu(), targets.cpu()
        labelled = targets != self.ignore_index
        return logits[labelled].double(), targets[labelled]

    def unview(self, outputs: Tensor, view: Any, viewed: tuple[int, int], size: tuple[int, int]) -> Tensor:
        return view.invert_map(outputs, size)

    def merge(self, outputs: list[Tensor], weights: list[float], method: str = "mean") -> Tensor:
        """Per-pixel weighted mean of the members' probabilities (``vote``: of their class maps), as
        logits whose ``class_map`` is the merged decision."""
        if method == "vote":
            n = 2 if self.binary else len(self.class_names)
            one_hot = torch.nn.functional.one_hot
            probs = torch.stack([one_hot(self.class_map(o), n).permute(0, 3, 1, 2).float() for o in outputs])
            if self.binary:
                probs = probs[:, :, 1:]
        else:
            to_probs = (lambda o: o.float().sigmoid()) if self.binary else (lambda o: o.float().softmax(1))
            probs = torch.stack([to_probs(o) for o in outputs])
        w = torch.tensor(weights, dtype=probs.dtype, device=probs.device)
        mean = ((w[:, None, None, None, None] * probs).sum(0) / w.sum()).clamp(1e-7, 1 - 1e-7)
        return torch.logit(mean) if self.binary else mean.log()

    def step_outputs(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        from foveal.metrics.segmentation import confusion_matrix

        matrix = confusion_matrix(
            self.class_map(outputs.detach()), targets, len(self.class_names), self.ignore_index
        )
        return {
            "confusion": matrix[None],
            "calibration": self.confidence_bins(outputs.detach(), targets)[None],
        }

    def class_logits(self, logits: Tensor) -> Tensor:
        """(B, C, H, W) logits -> (B, H, W, K) per-pixel class logits; binary maps become two classes
        [0, z] (softmax of which is sigmoid(z))."""
        logits = logits.float()
        if self.binary:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits.permute(0, 2, 3, 1)

    def confidence_bins(self, logits: Tensor, targets: Tensor, n_bins: int = 15) -> Tensor:
        """(3, n_bins) sums over labelled pixels per equal-width top-label confidence bin: pixel count,
        correct pixels, confidence; ``compute_metrics`` turns them into the pixel ECE."""
        probs = self.class_logits(logits).softmax(-1)
        valid = targets != self.ignore_index
        confidence, predicted = probs[valid].max(-1)
        correct = (predicted == targets[valid]).float()
        edges = torch.linspace(0.0, 1.0, n_bins + 1, device=confidence.device)
        index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
        bins = torch.zeros(3, n_bins, device=confidence.device)
        for row, values in enumerate((torch.ones_like(confidence), correct, confidence)):
            bins[row].index_add_(0, index, values)
        return bins.cpu()

    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        from foveal.metrics.segmentation import segmentation_metrics

        metrics = segmentation_metrics(kept["confusion"].sum(dim=0), self.class_names)
        if "calibration" in kept:  # pixel ECE: |accuracy - confidence| per bin, weighted by pixels
            count, correct, confidence = kept["calibration"].double().sum(dim=0)
            metrics["ece"] = float((correct - confidence).abs().sum() / count.sum().clamp(min=1))
        return metrics

    def plots(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        out_dir: str,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Any] = (),
    ) -> list[str]:
        from foveal.report.plots import plot_confusion_matrix
        from foveal.report.seg_plots import plot_per_class_iou, plot_segmentation_grid

        out = Path(out_dir)
        paths = [
            plot_per_class_iou(metrics, out / "per_class_iou.png"),
            plot_confusion_matrix(
                metrics["confusion_matrix"], self.class_names, out / "confusion_matrix.png"
            ),
        ]
        if samples and predictions:
            images, targets, masks = [], [], []
            for sample, prediction in list(zip(samples, predictions))[:8]:
                image = load_rgb(sample.path)
                size = prediction.mask.shape[::-1]
                target = Image.fromarray(self.target(sample, image.size).astype(np.int32)).resize(
                    size, Image.NEAREST
                )
                images.append(np.asarray(image.resize(size, Image.BILINEAR)))
                targets.append(np.asarray(target).astype(np.int64))
                masks.append(prediction.mask)
            paths.append(
                plot_segmentation_grid(
                    images,
                    targets,
                    masks,
                    self.class_names,
                    out / "examples.png",
                    ignore_index=self.ignore_index,
                )
            )
        return [str(p) for p in paths]

    def active_probabilities(self, outputs: Tensor) -> list[Tensor]:
        """(B, C, H, W) logits -> per image (H * W, K) pixel class probabilities (binary: K = 2)."""
        probs = self.class_logits(outputs).softmax(dim=-1)
        return list(probs.flatten(1, 2))

    def export_agreement(self, reference: Sequence[Any], candidate: Sequence[Any]) -> tuple[str, float]:
        """Mean over classes (present in either) of the IoU between the two models' class masks."""
        ref = np.concatenate([p.mask.ravel() for p in reference])
        cand = np.concatenate([p.mask.ravel() for p in candidate])
        k = len(self.class_names)
        inter = np.bincount(ref[ref == cand], minlength=k)
        union = np.bincount(ref, minlength=k) + np.bincount(cand, minlength=k) - inter
        present = union > 0
        return "mask_miou", float((inter[present] / union[present]).mean()) if present.any() else 1.0

    # -- prediction ---------------------------------------------------------------------------
    def postprocess(
        self,
        outputs: Tensor,
        instances: bool = False,
        min_size: int = 0,
        fill_holes: bool = False,
        open_radius: int = 0,
        close_radius: int = 0,
        **options: Any,
    ) -> list[MaskPrediction]:
        from foveal.ops.morphology import postprocess_mask

        masks = self.class_map(outputs).cpu().numpy().astype(np.uint8)
        predictions = []
        for mask in masks:
            if min_size or fill_holes or open_radius or close_radius:
                mask = postprocess_mask(
                    mask,
                    open_radius=open_radius,
                    close_radius=close_radius,
                    fill=fill_holes,
                    min_size=min_size,
                ).astype(np.uint8)
            counts = self._count_instances(mask) if instances else None
            predictions.append(MaskPrediction(mask, self.class_names, counts))
        return predictions

    def _count_instances(self, mask: np.ndarray) -> dict[str, int]:
        from foveal.ops.instances import count_instances

        counts = count_instances(mask, len(self.class_names), method="watershed")
        return {self.class_names[c]: int(n) for c, n in counts.items() if c != 0}

    def finalize(self, prediction: MaskPrediction, size: tuple[int, int]) -> MaskPrediction:
        if prediction.mask.shape[::-1] == size:
            return prediction
        mask = np.asarray(Image.fromarray(prediction.mask).resize(size, Image.NEAREST))
        return MaskPrediction(mask, prediction.class_names, prediction.instances)

    def colours(self) -> list[tuple[int, int, int]]:
        from foveal.report.seg_plots import class_colours

        spec_colours = self.meta.spec.get("colours")
        return [tuple(c) for c in spec_colours] if spec_colours else class_colours(len(self.class_names))

    def save_prediction(
        self, prediction: MaskPrediction, sample: Sample, out_dir: Path, stem: str, render: bool
    ) -> dict[str, str]:
        from foveal.atomic import atomic_write

        mask_path, overlay_path = out_dir / "masks" / f"{stem}.png", out_dir / "overlays" / f"{stem}.png"
        mask_image = Image.fromarray(prediction.mask, mode="L")
        atomic_write(mask_path, lambda handle: mask_image.save(handle, format="PNG"))
        overlay = self.render(load_rgb(sample.path), prediction)
        atomic_write(overlay_path, lambda handle: overlay.save(handle, format="PNG"))
        return {"mask_png": str(mask_path), "overlay": str(overlay_path)}

    def render(self, image: Image.Image, prediction: MaskPrediction) -> Image.Image:
        from foveal.report.seg_plots import overlay

        return Image.fromarray(overlay(np.asarray(image), prediction.mask, self.colours()))


def _pixel_counts(samples: Sequence[Sample], spec: Any) -> list[int]:
    """Labelled pixels per class over ``samples`` (ignored pixels left out), for loss weights."""
    from foveal.data.seg_loading import decode_target

    n = len(spec.class_names)

    def count(sample: Sample) -> np.ndarray:
        target = decode_target(sample, spec)
        return np.bincount(target[target < n].ravel(), minlength=n)[:n]

    with ThreadPoolExecutor(max_workers=2) as pool:
        return [int(v) for v in sum(pool.map(count, samples), np.zeros(n, dtype=np.int64))]
