"""Object detection (boxes): ``--task detect``."""

from __future__ import annotations

from typing import Any

from foveal.errors import ConfigError
from foveal.tasks.detection.base import ObjectTask


class DetectTask(ObjectTask):
    """Boxes; TTA views and ensemble members merge by weighted boxes fusion."""

    name = "detect"
    model_family = "detect"
    coco_iou_types = ("bbox",)

    def merge(self, outputs: list[Any], weights: list[float], method: str = "mean") -> Any:
        """Per image over members and views: weighted boxes fusion (IoU 0.55, average confidence)."""
        from foveal.ops.boxes import weighted_boxes_fusion

        if method == "vote":
            raise ConfigError("--method vote is for classify/segment; detections merge by boxes fusion")
        merged = []
        for per_image in zip(*outputs, strict=True):
            boxes, scores, labels = weighted_boxes_fusion(
                [o["boxes"] for o in per_image],
                [o["scores"] for o in per_image],
                [o["labels"] for o in per_image],
                weights=weights,
                iou_threshold=0.55,
            )
            merged.append({"boxes": boxes, "scores": scores, "labels": labels})
        return merged
