"""Box-, mask- and keypoint-aware augmentation for detection, instance segmentation and pose.

A sample is ``(image, target)`` with target keys ``boxes`` (N, 4) xyxy absolute pixels, ``labels``
(N,) int64 0-based, ``iscrowd`` (N,) int64, and optionally ``masks`` (N, H, W) uint8 and
``keypoints`` (N, K, 3) float (x, y, visibility). Geometric transforms from the shared option table
(``foveal.data.transforms``: random_resized_crop, shift_scale_rotate, hflip, vflip) move boxes, masks
and keypoints with the image; boxes are clipped to the image and boxes left with a side under 1 px
are dropped together with their labels, masks and keypoints; keypoints that leave the image become
invisible (v = 0). A flip mirrors keypoint coordinates and, when the dataset gives a ``flip_idx``
(left/right permutation), reorders them; without one, pose data is not flipped (a mirrored "left
wrist" would be a right wrist). Photometric options act on the image only.

Batch-level options (:class:`DetectionBatchMix`): ``mosaic`` is the probability that an image is
replaced by a 2 x 2 mosaic of four batch images around a random centre (each image resized into its
cell, boxes and keypoints scaled with it; masks too); ``mixup`` is, for detection tasks, the
probability that an image is blended with another batch image at a ratio drawn from Beta(32, 32)
(as in YOLO training), keeping both images' objects. ``cutmix`` and ``auto_augment`` are
classification-only and ignored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from foveal.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resolve_aug, train_ops

Target = dict[str, Tensor]
PER_OBJECT = ("boxes", "labels", "iscrowd", "masks", "keypoints")
"""Target keys with one row per object; other keys (e.g. ``orig_size``) describe the image."""


class PairedFlip:
    """Flip image and target with probability ``p`` (``vertical`` for up-down), reordering keypoints by
    ``flip_idx`` (K,) when given. Operates on tv_tensors (image, boxes, masks, keypoints)."""

    def __init__(self, p: float, vertical: bool = False, flip_idx: Sequence[int] | None = None) -> None:
        self.p, self.vertical = p, vertical
        self.flip_idx = list(flip_idx) if flip_idx is not None else None

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if torch.rand(()) >= self.p:
            return image, target
        flip = F.vertical_flip if self.vertical else F.horizontal_flip
        image = flip(image)
        target = dict(target)
        for key in ("boxes", "masks", "keypoints"):
            if key in target:
                target[key] = flip(target[key])
        if "keypoints" in target:  # torchvision mirrors points as pixel indices (W - 1 - x); foveal's
            # coordinates are continuous like box edges (W - x), so shift back by one pixel
            shift = [0.0, 1.0] if self.vertical else [1.0, 0.0]
            points = target["keypoints"] + torch.tensor(shift)
            target["keypoints"] = tv_tensors.wrap(points, like=target["keypoints"])
        if self.flip_idx is not None and "keypoints" in target:
            target["keypoints"] = tv_tensors.wrap(
                target["keypoints"][:, self.flip_idx], like=target["keypoints"]
            )
            target["visibility"] = target["visibility"][:, self.flip_idx]
        return image, target


class DetectionTransform:
    """(PIL image, target) -> (float32 (3, imgsz, imgsz) normalised image, target at imgsz).

    ``split`` 'train' applies ``aug``; other splits only resize. Picklable (DataLoader workers)."""

    def __init__(
        self,
        split: str,
        imgsz: int,
        aug: str | dict | None = "light",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        flip_idx: Sequence[int] | None = None,
        has_keypoints: bool = False,
    ) -> None:
        self.imgsz = imgsz
        self.to_float = v2.ToDtype(torch.float32, scale=True)
        self.normalize = v2.Normalize(mean=list(mean), std=list(std))
        self.geometric: list[Any] = [v2.Resize((imgsz, imgsz), antialias=True)]
        self.photometric: list[Any] = []
        self.post: list[Any] = []
        if split == "train":
            cfg = dict(resolve_aug(aug))
            flips = []
            can_flip = not has_keypoints or flip_idx is not None
            if cfg["hflip"] and can_flip:
                flips.append(PairedFlip(cfg["hflip"], False, flip_idx))
            if cfg["vflip"] and can_flip:
                flips.append(PairedFlip(cfg["vflip"], True, flip_idx))
            cfg.update(hflip=0.0, vflip=0.0, auto_augment="none")
            early, self.photometric, self.post = train_ops(cfg, imgsz)
            self.geometric = [*early, *flips]
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_per_object)

    def __call__(self, image: Any, target: dict[str, Tensor]) -> tuple[Tensor, Target]:
        image = F.to_image(image)
        h, w = image.shape[-2:]
        wrapped: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w)),
            "labels": target["labels"],
            "iscrowd": target["iscrowd"],
        }
        if "masks" in target:
            wrapped["masks"] = tv_tensors.Mask(target["masks"])
        if "keypoints" in target:
            wrapped["keypoints"] = tv_tensors.KeyPoints(target["keypoints"][..., :2], canvas_size=(h, w))
            wrapped["visibility"] = target["keypoints"][..., 2].clone()
        for op in self.geometric:
            image, wrapped = op(image, wrapped)
        wrapped = v2.ClampBoundingBoxes()(wrapped)
        image, wrapped = self.sanitize(image, wrapped)
        image = self.to_float(image)
        for op in self.photometric:
            image = op(image)
        image = self.normalize(image)
        for op in self.post:
            image = op(image)
        return image.as_subclass(Tensor), _unwrap(wrapped, image.shape[-2:])


def _per_object(sample: Any) -> tuple[Tensor, ...]:
    """SanitizeBoundingBoxes' labels_getter: every per-object tensor that must be filtered with the boxes."""
    _, target = sample
    keys = ("labels", "iscrowd", "keypoints", "visibility")
    return tuple(target[k] for k in keys if k in target)


def _unwrap(target: dict[str, Any], size: Sequence[int]) -> Target:
    out: Target = {
        "boxes": target["boxes"].as_subclass(Tensor).float(),
        "labels": target["labels"].long(),
        "iscrowd": target["iscrowd"].long(),
    }
    if "masks" in target:
        out["masks"] = target["masks"].as_subclass(Tensor).to(torch.uint8)
    if "keypoints" in target:
        xy = target["keypoints"].as_subclass(Tensor).float()
        vis = target["visibility"].float()
        h, w = size
        inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w) & (xy[..., 1] >= 0) & (xy[..., 1] <= h)
        vis = torch.where(inside, vis, torch.zeros_like(vis))
        out["keypoints"] = torch.cat([xy * (vis[..., None] > 0), vis[..., None]], dim=-1)
    return out


class DetectionBatchMix:
    """Mosaic and mixup on a collated batch: images (B, 3, S, S), targets list of B dicts (see module doc).

    Each image is independently replaced by a mosaic with probability ``mosaic`` or blended with
    another image with probability ``mixup``. Randomness from torch's global RNG."""

    def __init__(self, mosaic: float = 0.0, mixup: float = 0.0) -> None:
        self.mosaic, self.mixup = float(mosaic), float(mixup)

    def __call__(self, images: Tensor, targets: list[Target]) -> tuple[Tensor, list[Target]]:
        n = images.shape[0]
        if n < 2 or (not self.mosaic and not self.mixup):
            return images, targets
        out_images, out_targets = images.clone(), list(targets)
        for i in range(n):
            if self.mosaic and torch.rand(()) < self.mosaic:
                picks = [i, *torch.randint(0, n, (3,)).tolist()]
                out_images[i], out_targets[i] = mosaic(images, targets, picks)
            elif self.mixup and torch.rand(()) < self.mixup:
                j = int(torch.randint(0, n, ()))
                if j != i:
                    ratio = float(torch.distributions.Beta(32.0, 32.0).sample())
                    out_images[i] = ratio * images[i] + (1 - ratio) * images[j]
                    out_targets[i] = {
                        k: torch.cat([v, targets[j][k]]) if k in PER_OBJECT else v
                        for k, v in targets[i].items()
                    }
        return out_images, out_targets


def mosaic(images: Tensor, targets: list[Target], picks: Sequence[int]) -> tuple[Tensor, Target]:
    """A 2 x 2 mosaic of ``images[picks]`` (4 indices) around a random centre in the middle half.

    Each image is resized into its cell (aspect changes with the cell), its objects scaled with it;
    boxes keeping a side under 1 px are dropped. Returns one (3, S, S) image and its target."""
    _, height, width = images.shape[1:]
    cx = int(torch.randint(width // 4, width - width // 4 + 1, ()))
    cy = int(torch.randint(height // 4, height - height // 4 + 1, ()))
    cells = [(0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height)]
    canvas = images.new_zeros(images.shape[1:])
    parts: list[Target] = []
    for index, (x0, y0, x1, y1) in zip(picks, cells, strict=True):
        cw, ch = x1 - x0, y1 - y0
        if cw < 1 or ch < 1:
            continue
        canvas[:, y0:y1, x0:x1] = torch.nn.functional.interpolate(
            images[index][None], size=(ch, cw), mode="bilinear", align_corners=False
        )[0]
        sx, sy = cw / width, ch / height
        target = targets[index]
        part = {k: v for k, v in target.items() if k in PER_OBJECT}
        scale = torch.tensor([sx, sy, sx, sy], device=target["boxes"].device)
        offset = torch.tensor([x0, y0, x0, y0], device=target["boxes"].device)
        part["boxes"] = target["boxes"] * scale + offset
        if "masks" in target:
            masks = torch.zeros((len(target["masks"]), height, width), dtype=torch.uint8)
            if len(target["masks"]):
                small = torch.nn.functional.interpolate(target["masks"][:, None].float(), size=(ch, cw))
                masks[:, y0:y1, x0:x1] = small[:, 0].to(torch.uint8)
            part["masks"] = masks
        if "keypoints" in target:
            kp = target["keypoints"].clone()
            kp[..., 0] = kp[..., 0] * sx + x0
            kp[..., 1] = kp[..., 1] * sy + y0
            kp[..., :2] *= kp[..., 2:] > 0
            part["keypoints"] = kp
        keep = ((part["boxes"][:, 2] - part["boxes"][:, 0]) >= 1) & (
            (part["boxes"][:, 3] - part["boxes"][:, 1]) >= 1
        )
        parts.append({k: v[keep] for k, v in part.items()})
    first = targets[picks[0]]
    merged = {k: torch.cat([p[k] for p in parts]) if k in PER_OBJECT else v for k, v in first.items()}
    return canvas, merged
