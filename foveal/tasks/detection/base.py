"""The shared base of the object tasks (detect, instance, pose) on COCO / YOLO / VOC data.

Internally an image's objects are ``boxes`` (N, 4) float xyxy absolute pixels, ``labels`` (N,) int64
0-based class indices, ``iscrowd`` (N,), plus ``masks`` (N, H, W) uint8 (instance) and ``keypoints``
(N, K, 3) x, y, visibility (pose). Models follow torchvision's detection convention (see
``foveal.models.detection``). Metrics are COCO's (``foveal.metrics.detection``), computed on boxes and
keypoints scaled back to each image's original size; instance masks are evaluated at the model's
input size (``imgsz``), where they were predicted. What a family member adds (masks, keypoints) comes
through the hooks of :class:`ObjectTask` (``object_target``, ``keep_objects``, ``object_metrics``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from foveal.config import TrainConfig
from foveal.data.imageio import image_size, load_rgb
from foveal.data.sample import Sample
from foveal.data.splits import stratified_split
from foveal.errors import ConfigError, DataError
from foveal.models.graph import ExportGraph
from foveal.tasks.base import PredictOption, Task, TaskMeta
from foveal.tasks.detection.objects import (
    Detections,
    Target,
    as_float,
    coco_results,
    label_objects,
    object_masks,
    require_objects,
    resize_detections,
    split_kept,
)

__all__ = ["Detections", "ObjectMeta", "ObjectTask", "Target", "as_float", "object_masks", "require_objects"]


@dataclass(kw_only=True)
class ObjectMeta(TaskMeta):
    """``category_ids``: the dataset's category id of each class (for COCO results files)."""

    class_names: list[str]
    category_ids: list[Any]


class ObjectTask(Task):
    """What detect, instance and pose share: boxes, COCO metrics, boxes fusion / NMS merging,
    detections as predictions. Members add their outputs through the hooks in the last section."""

    monitor = "map"
    mode = "max"
    Meta = ObjectMeta
    count_unit = "objects"
    dataset_kind = "detect"
    headline_metrics = ("map50", "map", "ece")
    explain_kind = "objects"
    predict_options = (
        PredictOption("conf", float, 0.25, "detect: minimum score"),
        PredictOption("iou", float, None, "detect: extra class-aware NMS at this IoU"),
        PredictOption("max_det", int, 300, "detect: detections per image at most"),
    )
    meta: ObjectMeta

    def balance_labels(self, samples: Sequence[Sample]) -> list[list[int]]:
        """Object classes per image (repeat-factor style: an image is as rare as its rarest class)."""
        return [sorted({int(o["label"]) for o in s.objects or []}) for s in samples]

    @property
    def channels_last(self) -> bool:
        # torchvision's R-CNN heads .view() their feature maps, which fails on channels-last tensors
        return self.meta.model == "centernet"

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], ObjectMeta]:
        from foveal.data.det_loading import load_detection

        data = load_detection(config.data, config.format, config.on_bad_image)
        splits = {name: list(samples) for name, samples in data.splits.items()}
        if config.val is not None:
            val = load_detection(config.val, config.format, config.on_bad_image)
            splits["val"] = [s for part in val.splits.values() for s in part]
            label_objects(splits["val"], val.categories, data.classes, config.val)
        if "all" in splits:
            splits.setdefault("train", []).extend(splits.pop("all"))
        if not splits.get("train"):
            raise DataError(f"{config.data}: no training images found; check the dataset layout")
        if not splits.get("val"):
            # detection samples carry no image label, so this is a seeded random split
            splits["train"], splits["val"] = stratified_split(
                splits["train"], config.val_fraction, config.seed
            )
        for name, part in splits.items():
            if name != "val" or config.val is None:
                label_objects(part, data.categories, data.classes, config.data)
        if config.balance == "weights":
            raise ConfigError(
                "--balance weights is not supported for detection losses; use --balance oversample "
                "(images sampled by their rarest object class)"
            )
        cls.check_objects(splits["train"], config.data)
        meta = cls.Meta(
            **cls.Meta.common(config),
            class_names=list(data.classes),
            category_ids=[category["id"] for category in data.categories],
            **cls.meta_fields(data),
        )
        return splits, meta

    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        from foveal.data.det_loading import load_detection

        loaded = load_detection(data, fmt)
        splits = loaded.splits
        if not splits.get(split):
            present = [name for name, part in splits.items() if part]
            if present == ["all"] and split == "val":
                split = "all"
            else:
                raise DataError(
                    f"{data}: no '{split}' split found (present: {', '.join(present) or 'none'}); "
                    "choose --split from those"
                )
        samples = list(splits[split])
        label_objects(samples, loaded.categories, self.class_names, data)
        return samples

    def transforms(self, split: str) -> Callable:
        from foveal.data.det_transforms import DetectionTransform

        return DetectionTransform(
            split,
            self.meta.imgsz,
            self.meta.aug if split == "train" else None,
            mean=self.meta.mean,
            std=self.meta.std,
            **self.transform_options(),
        )

    def predict_input(self, image: Image.Image) -> Tensor:
        empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                 "iscrowd": torch.zeros(0, dtype=torch.int64)}  # fmt: skip
        return self.transforms("predict")(image, empty)[0]

    def target(self, sample: Sample, size: tuple[int, int]) -> Target:
        """``sample``'s objects as tensors for an image of ``size`` (width, height)."""
        objects = sample.objects or []
        width, height = size
        boxes = torch.tensor(
            [
                [o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2], o["bbox"][1] + o["bbox"][3]]
                for o in objects
            ],
            dtype=torch.float32,
        ).reshape(-1, 4)
        target: Target = {
            "boxes": boxes,
            "labels": torch.tensor([o["label"] for o in objects], dtype=torch.int64),
            "iscrowd": torch.tensor([int(o.get("iscrowd", 0)) for o in objects], dtype=torch.int64),
        }
        target.update(self.object_target(objects, height, width))
        return target

    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Target]:
        image = load_rgb(sample.path)
        image_tensor, target = transform(image, self.target(sample, image.size))
        target["orig_size"] = torch.tensor([image.size[1], image.size[0]])
        return image_tensor, target

    def collate(self, batch: Sequence[tuple[Tensor, Target]]) -> tuple[Tensor, list[Target]]:
        return torch.stack([image for image, _ in batch]), [target for _, target in batch]

    def batch_transform(self) -> Callable | None:
        from foveal.data.det_transforms import DetectionBatchMix

        aug = self.meta.aug
        if not aug.get("mosaic") and not aug.get("mixup"):
            return None
        return DetectionBatchMix(mosaic=aug.get("mosaic") or 0.0, mixup=aug.get("mixup") or 0.0)

    # -- model, loss, metrics -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from foveal.models.registry import build_model

        # detection builders take the training image size (R-CNNs resize inputs to it)
        options = {"imgsz": self.meta.imgsz, **self.model_options(), **self.meta.model_options}
        return build_model(self.meta.model, len(self.class_names), task=self.model_family, **options)

    def forward(self, model: nn.Module, images: Tensor, targets: Any = None) -> Any:
        if model.training:
            keys = ("boxes", "labels", "masks", "keypoints")
            return model(images, [{k: t[k] for k in keys if k in t} for t in targets])
        return model(images)

    def error_analysis(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        samples: Sequence[Sample],
        predictions: Sequence[Any],
        plots_dir: Path,
        n: int = 16,
    ) -> tuple[dict[str, Any], list[str]]:
        """False positive / negative counts by kind, the first rows of each, ``confused_pairs`` (with
        'background'); ``false_positives.png`` and ``false_negatives.png``."""
        from dataclasses import replace

        from foveal.metrics.errors import count_kinds, detection_errors, pair_rows
        from foveal.report.error_grids import detection_errors_grid

        # boxes to image pixels; masks are not needed here, and resizing them would cost time
        found = [
            self.finalize(replace(p, masks=None), image_size(s.path))
            for p, s in zip(predictions, samples, strict=True)
        ]
        false_pos, false_neg = detection_errors(samples, found, class_names=self.class_names)
        report = {
            "task": self.name,
            "iou": 0.5,
            "score": 0.3,
            "false_positives": len(false_pos),
            "false_negatives": len(false_neg),
            "false_positives_by_kind": count_kinds(false_pos),
            "false_negatives_by_kind": count_kinds(false_neg),
            "confused_pairs": pair_rows(metrics["confusion_matrix"], [*self.class_names, "background"]),
            "top_false_positives": false_pos[:50],
            "top_false_negatives": false_neg[:50],
        }
        plots = [
            str(detection_errors_grid(false_pos[:n], plots_dir / "false_positives.png", "False positives")),
            str(detection_errors_grid(false_neg[:n], plots_dir / "false_negatives.png", "False negatives")),
        ]
        return report, plots

    def temper(self, outputs: list[dict[str, Tensor]], temperature: float) -> list[dict[str, Tensor]]:
        """Scores tempered on a logit scale: sigmoid(logit(s) / T)."""
        return [
            {**out, "scores": torch.sigmoid(torch.logit(out["scores"].float(), eps=1e-6) / temperature)}
            for out in outputs
        ]

    def calibration_pairs(self, outputs: Any, targets: Any) -> tuple[Tensor, Tensor]:
        """Raw scores (>= 0.05) as logits (N, 1) and whether each is a true positive (N, 1): IoU >= 0.5
        with a box of its class (``foveal.metrics.detection.score_outcomes``)."""
        from foveal.metrics.detection import score_outcomes

        scores, hits = score_outcomes(*self.per_image(self.step_outputs(outputs, targets)))
        logits = torch.logit(torch.as_tensor(scores, dtype=torch.float64), eps=1e-6)
        return logits.reshape(-1, 1), torch.as_tensor(hits, dtype=torch.float64).reshape(-1, 1)

    @property
    def calibration_multilabel(self) -> bool:
        return True

    def unview(self, outputs: Any, view: Any, viewed: tuple[int, int], size: tuple[int, int]) -> Any:
        """Boxes (and what the member adds: ``unview_objects``) of a flipped / rescaled view back to
        the batch geometry."""
        return [
            self.unview_objects(
                {**out, "boxes": view.invert_boxes(out["boxes"], tuple(viewed), size)},
                view,
                tuple(viewed),
                size,
            )  # fmt: skip
            for out in outputs
        ]

    def merge(self, outputs: list[Any], weights: list[float], method: str = "mean") -> Any:
        """Per image over members and views: class-aware NMS at IoU 0.55 over all detections (scores
        scaled by the member's weight), each kept box with its own mask and keypoints."""
        from foveal.ops.boxes import batched_nms

        if method == "vote":
            raise ConfigError("--method vote is for classify/segment; detections merge by boxes fusion")
        merged = []
        top = max(weights)
        for per_image in zip(*outputs, strict=True):
            pooled = {
                key: torch.cat([as_float(o[key], key) if key != "labels" else o[key] for o in per_image])
                for key in per_image[0]
            }
            pooled["scores"] = torch.cat([o["scores"].float() * w / top for o, w in zip(per_image, weights)])
            if "masks" in pooled and per_image[0]["masks"].ndim == 3:  # the members' own mask layout
                pooled["masks"] = pooled["masks"][:, 0]
            keep = batched_nms(pooled["boxes"], pooled["scores"], pooled["labels"], 0.55)
            merged.append({key: value[keep] for key, value in pooled.items()})
        return merged

    def loss(self, outputs: Any, targets: Any, criterion: nn.Module | None) -> dict[str, Tensor]:
        """The model's own loss terms (detectors compute them in training mode)."""
        if not isinstance(outputs, dict):
            return {}  # eval mode: detections, no losses
        terms = {k: v for k, v in outputs.items() if k != "loss"}
        total = outputs["loss"] if "loss" in outputs else sum(terms.values())
        return {"loss": total, **terms}

    def step_outputs(self, outputs: list[dict[str, Tensor]], targets: list[Target]) -> dict[str, Tensor]:
        imgsz = self.meta.imgsz
        kept: dict[str, list[Tensor]] = {}

        def put(key: str, value: Tensor) -> None:
            kept.setdefault(key, []).append(value.detach().cpu())

        for out, target in zip(outputs, targets, strict=True):
            h, w = (int(v) for v in target["orig_size"])
            scale = torch.tensor([w / imgsz, h / imgsz, w / imgsz, h / imgsz])
            put("pred_count", torch.tensor([len(out["boxes"])]))
            put("pred_boxes", out["boxes"].detach().cpu().float() * scale)
            put("pred_scores", out["scores"].float())
            put("pred_labels", out["labels"].long())
            put("gt_count", torch.tensor([len(target["boxes"])]))
            put("gt_boxes", target["boxes"].cpu().float() * scale)
            put("gt_labels", target["labels"])
            put("gt_iscrowd", target["iscrowd"])
            put("orig_size", target["orig_size"][None])
            for key, value in self.keep_objects(out, target, (w / imgsz, h / imgsz)).items():
                put(key, value)
        return {key: torch.cat(parts) for key, parts in kept.items()}

    def per_image(self, kept: dict[str, Tensor]) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Split kept tensors back into per-image prediction and target dicts."""
        preds = split_kept(kept, "pred", kept["pred_count"].tolist())
        gts = split_kept(kept, "gt", kept["gt_count"].tolist())
        for gt, size in zip(gts, kept["orig_size"].tolist(), strict=True):
            gt["image_size"] = tuple(size)
        return preds, gts

    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        from foveal.metrics.detection import detection_confusion_matrix, detection_metrics, score_outcomes

        preds, gts = self.per_image(kept)
        metrics: dict[str, Any] = {"n": len(gts)}
        metrics.update(detection_metrics(preds, gts, self.class_names, iou_type="bbox"))
        metrics.update(self.object_metrics(preds, gts))
        matrix = detection_confusion_matrix(preds, gts, len(self.class_names))
        metrics["confusion_matrix"] = matrix.tolist()
        scores, hits = score_outcomes(preds, gts)  # ECE of scores >= 0.05 against "is a true positive"
        metrics["ece"] = None
        if len(scores):
            from foveal.metrics.calibration import expected_calibration_error

            metrics["ece"] = expected_calibration_error(scores[:, None], hits[:, None])
        return metrics

    def plots(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        out_dir: str,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Any] = (),
    ) -> list[str]:
        from foveal.metrics.detection import precision_recall_curves
        from foveal.report.det_plots import plot_detection_grid, plot_pr_curves
        from foveal.report.plots import plot_confusion_matrix

        out = Path(out_dir)
        preds, gts = self.per_image(kept)
        paths = [
            plot_pr_curves(precision_recall_curves(preds, gts, self.class_names), out / "pr_curves.png"),
            plot_confusion_matrix(
                metrics["confusion_matrix"], [*self.class_names, "background"], out / "confusion_matrix.png"
            ),
        ]
        if samples and predictions:
            shown = list(zip(samples, predictions))[:8]
            images, truths, found = [], [], []
            for sample, prediction in shown:
                image = load_rgb(sample.path)
                prediction = self.finalize(prediction, image.size)
                images.append(np.asarray(image))
                truth = self.target(sample, image.size)
                truths.append(self._as_detections(truth))
                found.append(prediction)
            paths.append(plot_detection_grid(images, truths, found, out / "examples.png", self.skeleton))
        return [str(p) for p in paths]

    def _as_detections(self, target: Target) -> Detections:
        n = len(target["boxes"])
        return Detections(
            target["boxes"].numpy(),
            np.ones(n, dtype=np.float32),
            target["labels"].numpy(),
            self.class_names,
            target["masks"].numpy().astype(bool) if "masks" in target else None,
            target["keypoints"].numpy() if "keypoints" in target else None,
        )

    # -- active learning ----------------------------------------------------------------------
    active_fixed_units = False  # another forward pass finds other boxes

    def active_probabilities(self, outputs: list[dict[str, Tensor]]) -> list[Tensor]:
        """Per image, (M, 2) [score, 1 - score] of its M boxes scoring at least the predict ``conf``
        default (0.25), or of its best box when none does; an image without boxes: (0, 2)."""
        conf = next(o.default for o in self.predict_options if o.name == "conf")
        found = []
        for out in outputs:
            scores = out["scores"].float().sort(descending=True).values
            kept = scores[scores >= conf] if len(scores) and scores[0] >= conf else scores[:1]
            found.append(torch.stack([kept, 1 - kept], dim=-1))
        return found

    # -- export -------------------------------------------------------------------------------
    def export_graph(self, model: nn.Module) -> ExportGraph:
        """The detector's own graph (``export_graph()`` of CenterNet and the torchvision detectors)."""
        if not hasattr(model, "export_graph"):
            raise ConfigError(
                f"{type(model).__name__} (model {self.meta.model}) has no export graph: foveal exports "
                "centernet and the torchvision detectors (tv:..., *rcnn_resnet18)"
            )
        return model.export_graph()

    def from_graph(self, outputs: list[dict[str, Tensor]], settings: Mapping[str, Any]) -> Any:
        """Per-image graphs (one row per object): the rows are the detections. Dense graphs ((B, k)
        scores of the top-k peaks): the detections scoring >= ``settings["conf"]``, NMS at
        ``nms_iou`` when set, at most ``max_det``."""
        if outputs and outputs[0]["scores"].ndim == 1:
            return [dict(part) for part in outputs]
        from foveal.models.centernet import select_detections

        dense = {key: torch.cat([part[key] for part in outputs]) for key in outputs[0]}
        return select_detections(dense, settings["conf"], settings["max_det"], settings.get("nms_iou"))

    def export_agreement(self, reference: Sequence[Any], candidate: Sequence[Any]) -> tuple[str, float]:
        """COCO box mAP of the export's detections scored against the eager model's as ground truth
        (instance: the lower of box and mask mAP); 1 when neither detects anything, 0 when only one
        does."""
        from foveal.metrics.detection import detection_metrics

        masks = "segm" in self.coco_iou_types

        def tensors(p: Detections, target: bool) -> dict[str, Tensor]:
            found = {"boxes": torch.as_tensor(p.boxes).reshape(-1, 4), "labels": torch.as_tensor(p.labels)}
            if not target:
                found["scores"] = torch.as_tensor(p.scores)
            if masks and p.masks is not None:
                found["masks"] = torch.as_tensor(p.masks)
            return found

        name = "box_and_mask_map" if masks else "box_map"
        n_ref, n_cand = sum(len(p.boxes) for p in reference), sum(len(p.boxes) for p in candidate)
        if n_ref == 0 or n_cand == 0:
            return name, 1.0 if n_ref == n_cand else 0.0
        preds = [tensors(p, False) for p in candidate]
        targets = [tensors(p, True) for p in reference]
        values = [detection_metrics(preds, targets, self.class_names)["map"]]
        if masks:
            values.append(detection_metrics(preds, targets, self.class_names, iou_type="segm")["map"])
        return name, float(min(v or 0.0 for v in values))

    # -- prediction ---------------------------------------------------------------------------
    def postprocess(
        self,
        outputs: list[dict[str, Tensor]],
        conf: float = 0.25,
        iou: float | None = None,
        max_det: int = 300,
        **options: Any,
    ) -> list[Detections]:
        """Per image: keep scores >= ``conf``, optionally class-aware NMS at ``iou``, at most ``max_det``."""
        from foveal.ops.boxes import batched_nms

        results = []
        for out in outputs:
            keep = torch.nonzero(out["scores"] >= conf).flatten()
            if iou is not None and len(keep):
                sub = batched_nms(out["boxes"][keep], out["scores"][keep], out["labels"][keep], iou)
                keep = keep[sub]
            keep = keep[torch.argsort(out["scores"][keep], descending=True)][:max_det]
            results.append(
                Detections(
                    out["boxes"][keep].float().cpu().numpy(),
                    out["scores"][keep].float().cpu().numpy(),
                    out["labels"][keep].cpu().numpy(),
                    self.class_names,
                    (out["masks"][keep] > 0.5).cpu().numpy() if "masks" in out else None,
                    out["keypoints"][keep].float().cpu().numpy() if "keypoints" in out else None,
                )
            )
        return results

    def finalize(self, prediction: Detections, size: tuple[int, int]) -> Detections:
        """Scale boxes, keypoints and masks from the model input size to an image of ``size`` (w, h)."""
        return resize_detections(prediction, self.meta.imgsz, size)

    def track_boxes(self, prediction: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return prediction.boxes, prediction.scores, prediction.labels

    def coco_results(self, row: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        """A prediction row as COCO results entries (``objects.coco_results``) with the training
        data's category ids."""
        ids = self.meta.category_ids or list(range(1, len(self.class_names) + 1))
        return coco_results(row, image_id, {name: ids[i] for i, name in enumerate(self.class_names)})

    def write_predictions(self, rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
        """``results.json``: every row's detections in COCO results format (image ids 1..N in order)."""
        from foveal.atomic import atomic_write_text
        from foveal.serialize import dumps

        results = [entry for i, row in enumerate(rows) for entry in self.coco_results(row, i + 1)]
        path = out_dir / "results.json"
        atomic_write_text(path, dumps(results))
        return [str(path)]

    def save_prediction(
        self, prediction: Detections, sample: Sample, out_dir: Path, stem: str, render: bool
    ) -> dict[str, Any]:
        from foveal.atomic import atomic_write

        path = out_dir / "overlays" / f"{stem}.png"
        overlay = self.render(load_rgb(sample.path), prediction)
        atomic_write(path, lambda handle: overlay.save(handle, format="PNG"))
        return {"overlay": str(path)}

    def render(self, image: Image.Image, prediction: Detections) -> Image.Image:
        from foveal.report.det_plots import draw_detections

        return draw_detections(np.asarray(image), prediction, self.skeleton)

    # -- what a family member adds ------------------------------------------------------------
    @property
    def skeleton(self) -> list[list[int]] | None:
        """Keypoint pairs to draw as lines (pose), else None."""
        return None

    @classmethod
    def check_objects(cls, samples: list[Sample], source: Any) -> None:
        """Fail when the training annotations lack what this task needs (masks, keypoints)."""

    @classmethod
    def meta_fields(cls, data: Any) -> dict[str, Any]:
        """Extra ``Meta`` fields from the loaded dataset (``DetectionData``)."""
        return {}

    def transform_options(self) -> dict[str, Any]:
        """Extra ``DetectionTransform`` options (keypoints and their flip order)."""
        return {}

    def model_options(self) -> dict[str, Any]:
        """Extra builder options (e.g. the number of keypoints); the user's ``model_options`` win."""
        return {}

    def object_target(self, objects: list[dict[str, Any]], height: int, width: int) -> Target:
        """Extra target tensors of an image's objects (masks (N, H, W), keypoints (N, K, 3))."""
        return {}

    def unview_objects(
        self, out: dict[str, Tensor], view: Any, viewed: tuple[int, int], size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Map the extra outputs of a TTA view back to the original geometry."""
        return out

    def keep_objects(
        self, out: dict[str, Tensor], target: Target, scale: tuple[float, float]
    ) -> dict[str, Tensor]:
        """Extra per-object tensors to keep for metrics (``pred_*``/``gt_*``), scaled by (sx, sy)
        from the model input to the original image where they are coordinates."""
        return {}

    def object_metrics(self, preds: list[dict[str, Tensor]], gts: list[dict[str, Tensor]]) -> dict[str, Any]:
        """Extra metrics (``segm_*``, ``kpt_*``) beside the box ones."""
        return {}
