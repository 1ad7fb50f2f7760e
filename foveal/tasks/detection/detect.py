"""Object detection (boxes): ``--task detect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foveal.errors import ConfigError
from foveal.tasks.base import DemoRecipe
from foveal.tasks.detection.base import ObjectTask


class DetectTask(ObjectTask):
    """Boxes; TTA views and ensemble members merge by weighted boxes fusion."""

    name = "detect"
    model_family = "detect"
    demo = DemoRecipe("coco", 2000, 10, "images/test/*.png", {"batch": 32})

    @classmethod
    def demo_summary(
        cls, val: dict[str, Any], test: dict[str, Any], rows: list[dict[str, Any]], data: Path
    ) -> list[tuple[str, Any]]:
        return [
            ("val mAP50", val["map50"]),
            ("val mAP@[.5:.95]", val["map"]),
            ("test mAP50", test["map50"]),
            (f"{len(rows)} test images: found / true objects",
             f"{sum(len(r['boxes']) for r in rows)}/{_true_objects(data, rows)}"),
        ]  # fmt: skip

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


def _true_objects(data: Path, rows: list[dict[str, Any]]) -> int:
    """Ground-truth objects in the predicted test images of the demo's COCO data."""
    doc = json.loads((data / "annotations" / "instances_test.json").read_text())
    names = {Path(row["path"]).name for row in rows}
    ids = {image["id"] for image in doc["images"] if image["file_name"] in names}
    return sum(ann["image_id"] in ids for ann in doc["annotations"])
