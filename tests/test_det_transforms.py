"""Detection augmentation: boxes, masks and keypoints move with the image; mosaic and mixup."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from foveal.data.det_transforms import DetectionBatchMix, DetectionTransform, PairedFlip, mosaic
from foveal.data.synthetic import generate


def _sample(with_kp: bool = True) -> tuple[Image.Image, dict[str, torch.Tensor]]:
    image = Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8))
    masks = torch.zeros((2, 40, 60), dtype=torch.uint8)
    masks[0, 5:15, 10:30] = 1
    masks[1, 20:40, 40:60] = 1
    target = {
        "boxes": torch.tensor([[10.0, 5.0, 30.0, 15.0], [40.0, 20.0, 60.0, 40.0]]),
        "labels": torch.tensor([0, 2]),
        "iscrowd": torch.tensor([0, 0]),
        "masks": masks,
    }
    if with_kp:
        target["keypoints"] = torch.tensor(
            [[[10.0, 5.0, 2.0], [30.0, 15.0, 2.0]], [[41.0, 21.0, 2.0], [0.0, 0.0, 0.0]]]
        )
    return image, target


def test_eval_transform_resizes_boxes_masks_and_keypoints() -> None:
    image, target = _sample()
    out, t = DetectionTransform("val", 30)(image, target)
    assert out.shape == (3, 30, 30) and out.dtype == torch.float32
    sx, sy = 30 / 60, 30 / 40
    assert torch.allclose(t["boxes"], target["boxes"] * torch.tensor([sx, sy, sx, sy]))
    assert t["masks"].shape == (2, 30, 30) and t["masks"].dtype == torch.uint8
    assert torch.allclose(t["keypoints"][0, 1], torch.tensor([30 * sx, 15 * sy, 2.0]))
    assert t["keypoints"][1, 1].tolist() == [0.0, 0.0, 0.0]  # invisible stays invisible
    assert t["labels"].tolist() == [0, 2] and t["iscrowd"].dtype == torch.int64


def test_flip_mirrors_boxes_and_reorders_keypoints_with_flip_idx() -> None:
    image, target = _sample()
    from torchvision import tv_tensors

    wrapped = {
        "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(40, 60)),
        "labels": target["labels"],
        "keypoints": tv_tensors.KeyPoints(target["keypoints"][..., :2], canvas_size=(40, 60)),
        "visibility": target["keypoints"][..., 2],
    }
    _, flipped = PairedFlip(1.0, flip_idx=[1, 0])(tv_tensors.Image(torch.zeros(3, 40, 60)), wrapped)
    assert flipped["boxes"].tolist() == [[30.0, 5.0, 50.0, 15.0], [0.0, 20.0, 20.0, 40.0]]
    # keypoint 0 of object 0 was (10, 5); mirrored x = 60 - 10 = 50, and it moves to slot 1
    assert flipped["keypoints"][0, 1].tolist() == [50.0, 5.0]
    assert flipped["visibility"][1].tolist() == [0.0, 2.0]


def test_pose_is_not_flipped_without_flip_idx() -> None:
    transform = DetectionTransform("train", 64, {"preset": "none", "hflip": 1.0}, has_keypoints=True)
    assert not any(isinstance(op, PairedFlip) for op in transform.geometric)
    transform = DetectionTransform(
        "train", 64, {"preset": "none", "hflip": 1.0}, flip_idx=[1, 0], has_keypoints=True
    )
    assert any(isinstance(op, PairedFlip) for op in transform.geometric)


def test_train_crops_keep_boxes_inside_and_drop_vanished_objects() -> None:
    torch.manual_seed(0)
    transform = DetectionTransform("train", 32, {"preset": "medium", "random_resized_crop": 0.2})
    image, target = _sample()
    dropped = 0
    for _ in range(30):
        out, t = transform(image, target)
        boxes = t["boxes"]
        assert out.shape == (3, 32, 32)
        assert (boxes >= 0).all() and (boxes <= 32).all()
        assert ((boxes[:, 2] - boxes[:, 0]) >= 1).all() and ((boxes[:, 3] - boxes[:, 1]) >= 1).all()
        n = len(boxes)
        assert len(t["labels"]) == len(t["iscrowd"]) == len(t["masks"]) == len(t["keypoints"]) == n
        dropped += n < 2
    assert dropped > 0  # strong crops cut objects away


def test_mosaic_scales_objects_into_their_cells() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32)
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 32.0, 32.0]]),
            "labels": torch.tensor([i]),
            "iscrowd": torch.tensor([0]),
        }
        for i in range(4)
    ]
    canvas, merged = mosaic(images, targets, [0, 1, 2, 3])
    assert canvas.shape == (3, 32, 32)
    assert merged["labels"].tolist() == [0, 1, 2, 3]
    boxes = merged["boxes"]
    cx, cy = boxes[0, 2].item(), boxes[0, 3].item()  # the first cell ends at the centre
    assert 8 <= cx <= 24 and 8 <= cy <= 24
    assert boxes[3].tolist() == pytest.approx([cx, cy, 32.0, 32.0])
    # the top-left cell of the canvas is image 0 resized into it
    cell = torch.nn.functional.interpolate(images[0][None], size=(int(cy), int(cx)), mode="bilinear")[0]
    assert torch.allclose(canvas[:, : int(cy), : int(cx)], cell)


def test_batch_mix_applies_mixup_and_keeps_both_object_sets() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16)
    targets = [
        {
            "boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]),
            "labels": torch.tensor([0]),
            "iscrowd": torch.tensor([0]),
        },
        {
            "boxes": torch.tensor([[8.0, 8.0, 12.0, 12.0]]),
            "labels": torch.tensor([1]),
            "iscrowd": torch.tensor([0]),
        },
    ]
    mixed, out = DetectionBatchMix(mixup=1.0)(images, targets)
    changed = [i for i in range(2) if len(out[i]["boxes"]) == 2]
    assert changed
    i = changed[0]
    assert sorted(out[i]["labels"].tolist()) == [0, 1]
    assert not torch.allclose(mixed[i], images[i])
    unchanged_images, unchanged = DetectionBatchMix()(images, targets)
    assert unchanged_images is images and unchanged is targets


def test_shapes_scene_through_the_train_transform() -> None:
    scene = next(iter(generate(1, imgsz=64, seed=3)))
    boxes = torch.from_numpy(np.stack([o.box for o in scene.objects]))
    target = {
        "boxes": boxes,
        "labels": torch.tensor([o.cls for o in scene.objects]),
        "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
    }
    out, t = DetectionTransform("train", 64, "light")(Image.fromarray(scene.image), target)
    assert out.shape == (3, 64, 64) and torch.isfinite(out).all()
    assert len(t["boxes"]) <= len(boxes)
