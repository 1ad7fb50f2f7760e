"""Instance segmentation (boxes + masks): ``--task instance``; metrics ``segm_*`` beside the box ones."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from foveal.data.sample import Sample
from foveal.tasks.detection.base import ObjectTask, Target, as_float, object_masks, require_objects


class InstanceTask(ObjectTask):
    """Boxes with one (H, W) mask each, evaluated at the model input size where they were predicted."""

    name = "instance"
    model_family = "instance"
    coco_iou_types = ("bbox", "segm")

    @classmethod
    def check_objects(cls, samples: list[Sample], source: Any) -> None:
        require_objects(samples, "segmentation", source, "instance masks (polygons or RLE)")

    def object_target(self, objects: list[dict[str, Any]], height: int, width: int) -> Target:
        return {"masks": torch.from_numpy(object_masks(objects, height, width))}

    def unview_objects(
        self, out: dict[str, Tensor], view: Any, viewed: tuple[int, int], size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Masks mapped back in the member's own layout ((N, H, W) or (N, 1, H, W))."""
        masks = as_float(out["masks"], "masks")
        back = view.invert_map(masks, size) if len(masks) else masks.new_zeros((0, 1, *size))
        return {**out, "masks": back[:, 0] if out["masks"].ndim == 3 else back}

    def keep_objects(
        self, out: dict[str, Tensor], target: Target, scale: tuple[float, float]
    ) -> dict[str, Tensor]:
        return {
            "pred_masks": (out["masks"] > 0.5).to(torch.uint8),
            "gt_masks": target["masks"].to(torch.uint8),
        }

    def object_metrics(self, preds: list[dict[str, Tensor]], gts: list[dict[str, Tensor]]) -> dict[str, Any]:
        from foveal.metrics.detection import detection_metrics

        imgsz = self.meta.imgsz
        at_input = [{**gt, "image_size": (imgsz, imgsz)} for gt in gts]
        segm = detection_metrics(preds, at_input, self.class_names, iou_type="segm")
        return {f"segm_{k}": v for k, v in segm.items()}
