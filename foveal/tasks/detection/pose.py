"""Keypoints (boxes + K keypoints each): ``--task pose``; metrics ``kpt_*`` beside the box ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from foveal.data.sample import Sample
from foveal.errors import ConfigError
from foveal.tasks.detection.base import ObjectMeta, ObjectTask, Target, require_objects

# Keypoint OKS sigma used when the dataset gives none (COCO's sigmas span 0.025-0.107; 0.05 is mid-range).
DEFAULT_KPT_SIGMA = 0.05


@dataclass(kw_only=True)
class PoseMeta(ObjectMeta):
    """The dataset's keypoints: names, skeleton pairs, left/right ``flip_idx`` and OKS sigmas."""

    keypoint_names: list[str]
    skeleton: list[list[int]]
    flip_idx: list[int] | None
    kpt_sigmas: list[float]


class PoseTask(ObjectTask):
    """Boxes with (K, 3) keypoints x, y, visibility (predictions: x, y, score)."""

    name = "pose"
    model_family = "pose"
    coco_iou_types = ("bbox", "keypoints")
    Meta = PoseMeta
    meta: PoseMeta

    @property
    def skeleton(self) -> list[list[int]] | None:
        return self.meta.skeleton

    @classmethod
    def check_objects(cls, samples: list[Sample], source: Any) -> None:
        require_objects(samples, "keypoints", source, "keypoints")

    @classmethod
    def meta_fields(cls, data: Any) -> dict[str, Any]:
        names = list(data.keypoint_names)
        return {
            "keypoint_names": names,
            "skeleton": [list(pair) for pair in data.skeleton],
            "flip_idx": data.flip_idx,
            "kpt_sigmas": [DEFAULT_KPT_SIGMA] * len(names),
        }

    def transform_options(self) -> dict[str, Any]:
        return {"flip_idx": self.meta.flip_idx, "has_keypoints": True}

    def model_options(self) -> dict[str, Any]:
        return {"num_keypoints": len(self.meta.keypoint_names)}

    def object_target(self, objects: list[dict[str, Any]], height: int, width: int) -> Target:
        k = len(self.meta.keypoint_names)
        points = np.zeros((len(objects), k, 3), dtype=np.float32)
        for i, o in enumerate(objects):
            if o.get("keypoints"):
                points[i] = np.asarray(o["keypoints"], dtype=np.float32).reshape(k, 3)
        return {"keypoints": torch.from_numpy(points)}

    def unview_objects(
        self, out: dict[str, Tensor], view: Any, viewed: tuple[int, int], size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """(N, K, 3) x, y, score of the viewed image -> the original; hflip re-orders by ``flip_idx``."""
        if view.vflip:
            raise ConfigError("--tta vflip has no keypoint order to restore for pose; use --tta hflip")
        kps = out["keypoints"].float().clone()
        kps[..., 0] *= size[1] / viewed[1]
        kps[..., 1] *= size[0] / viewed[0]
        if view.hflip:
            if self.meta.flip_idx is None:
                raise ConfigError(
                    "--tta hflip for pose needs the keypoints' flip_idx (left/right pairs) in the dataset "
                    "(YOLO data.yaml flip_idx, COCO category flip_idx); without it use no --tta"
                )
            kps[..., 0] = size[1] - kps[..., 0]
            kps = kps[:, self.meta.flip_idx]
        return {**out, "keypoints": kps}

    def keep_objects(
        self, out: dict[str, Tensor], target: Target, scale: tuple[float, float]
    ) -> dict[str, Tensor]:
        k_scale = torch.tensor([scale[0], scale[1], 1.0])
        return {
            "pred_keypoints": out["keypoints"].detach().cpu().float() * k_scale,
            "gt_keypoints": target["keypoints"].cpu().float() * k_scale,
        }

    def object_metrics(self, preds: list[dict[str, Tensor]], gts: list[dict[str, Tensor]]) -> dict[str, Any]:
        from foveal.metrics.detection import detection_metrics

        kpt = detection_metrics(
            preds, gts, self.class_names, iou_type="keypoints", kpt_sigmas=self.meta.kpt_sigmas
        )
        return {f"kpt_{k}": v for k, v in kpt.items()}
