"""CenterNet ("Objects as Points", Zhou et al. 2019): foveal's fast anchor-free detector for small images.

Each object is the peak of a per-class heatmap at its box centre, on a map of stride ``stride`` (4);
two more maps regress the box size and the sub-pixel offset of the centre at that cell. Decoding keeps
the 3x3 local maxima of the heatmap (no NMS needed) and the top-k scores over all classes.

Architecture: a small ResNet encoder (``foveal.models.small``'s 5x5 stem + max-pool and BasicBlocks,
widths ``width * (1, 2, 4, 8)`` at strides 4-32, exposed as ``.backbone``), then ``.head``: an FPN-like
top-down decoder (upsample x2, add a 1x1 lateral of the encoder map, 3x3 conv-BN-ReLU) down to
``stride``, and the heads (3x3 conv-ReLU-1x1 conv) ``heatmap`` (C), ``size`` (2) and ``offset`` (2),
plus ``keypoints`` (2K) with ``num_keypoints`` K > 0.

Map conventions (output cell (i, j) covers input pixels ``[j*stride, (j+1)*stride)`` horizontally):
- ``heatmap`` logits (B, C, h, w); the bias starts at -2.19 (prior 0.1, as the paper);
- ``size`` (B, 2, h, w): log of the box (w, h) in output cells, i.e. ``w = exp(size[0]) * stride``
  pixels (log-space keeps the regression scale-free and the size positive);
- ``offset`` (B, 2, h, w): the centre ``(cx, cy) / stride`` minus the cell's integer (j, i);
- ``keypoints`` (B, 2K, h, w): keypoint (x, y) minus the box centre, divided by ``stride``.
Boxes are xyxy absolute input pixels; labels 0-based class indices.

Loss (:func:`centernet_loss`): the paper's focal heatmap loss + 0.1 x L1 on the log sizes + 1 x L1 on
the offsets. Measured on 2,000 64 px shapes scenes (``benchmarks/centernet_shapes.py``, 6 epochs, 2
seeds): an L1 size weight of 1 (0.86 mAP50 vs 0.92) and an extra GIoU term of weight 1 (0.91 / 0.86
vs 0.92 / 0.87) both made it worse, so GIoU is off by default (``giou_weight``); decoder/head width 32
instead of 64 trained twice as fast per step but fell to 0.75. 10 epochs reach 0.94-0.96 mAP50.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.errors import ConfigError, DataError
from foveal.models.catalog import register, set_defaults
from foveal.models.graph import ExportGraph
from foveal.models.small import BasicBlock

STRIDES = (4, 8, 16)
ENCODER_STRIDE = 32  # inputs are padded (bottom/right) to a multiple of this
PRIOR_BIAS = -2.19  # -log((1 - 0.1) / 0.1): heatmap prior 0.1
_MAX_LOG_SIZE = 10.0  # exp() guard on the size map (e**10 cells is far beyond any image)
_EPS = 1e-4  # the heatmap sigmoid is clamped to [eps, 1 - eps] in the focal loss

Targets = Sequence[dict[str, Tensor]]


class Encoder(nn.Module):
    """Small ResNet encoder: (B, 3, H, W) -> maps at strides 4, 8, 16, 32 with ``width * (1, 2, 4, 8)``
    channels (H, W multiples of 32). Stem: 5x5 conv stride 2 + BN + ReLU + 3x3 max-pool stride 2."""

    def __init__(self, width: int, depth: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 5, 2, 2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        self.channels = [width * 2**i for i in range(4)]
        self.stages = nn.ModuleList()
        cin = width
        for i, cout in enumerate(self.channels):
            blocks = [
                BasicBlock(cin if j == 0 else cout, cout, 2 if i > 0 and j == 0 else 1) for j in range(depth)
            ]
            self.stages.append(nn.Sequential(*blocks))
            cin = cout

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


def _head(cin: int, hidden: int, cout: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(
        nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1)
    )
    nn.init.constant_(head[-1].bias, bias)
    return head


class CenterNetHead(nn.Module):
    """Decoder + heads: encoder maps (fine to coarse, strides 4-32) -> dict of (B, *, H/stride, W/stride)
    maps ``heatmap``, ``size``, ``offset`` (and ``keypoints``); see the module docstring."""

    def __init__(
        self, in_channels: Sequence[int], channels: int, stride: int, num_classes: int, num_keypoints: int = 0
    ) -> None:
        super().__init__()
        levels = len(in_channels) - STRIDES.index(stride)  # encoder maps at strides >= stride
        used = list(in_channels)[-levels:]
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels)) for c in used
        )
        self.smooth = nn.ModuleList(_conv_bn_relu(channels, channels) for _ in used)
        self.heatmap = _head(channels, channels, num_classes, PRIOR_BIAS)
        self.size = _head(channels, channels, 2)
        self.offset = _head(channels, channels, 2)
        self.keypoints = _head(channels, channels, 2 * num_keypoints) if num_keypoints else None

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        features = list(features)[-len(self.laterals) :]
        x = self.smooth[-1](self.laterals[-1](features[-1]))
        for lateral, smooth, skip in zip(self.laterals[-2::-1], self.smooth[-2::-1], features[-2::-1]):
            up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = smooth(up + lateral(skip))
        out = {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}
        if self.keypoints is not None:
            out["keypoints"] = self.keypoints(x)
        return out


class CenterNet(nn.Module):
    """CenterNet detector with torchvision's detection-model interface (see the module docstring).

    ``model(images, targets)`` in training mode returns the loss dict {"loss", "heatmap", "size",
    "offset" (, "giou", "keypoints")}; otherwise ``model(images)`` returns one dict per image:
    ``boxes`` (N, 4) float xyxy input pixels clipped to the image, ``scores`` (N,), ``labels`` (N,)
    int64, N <= ``max_det``, scores >= ``conf`` (and ``keypoints`` (N, K, 3) x, y, visibility 1 with
    ``num_keypoints``). ``images``: (B, 3, H, W) normalised floats of any H, W (padded internally at the
    bottom/right), or a list of (3, H_i, W_i). Targets per image: ``boxes`` (N, 4) float xyxy pixels,
    ``labels`` (N,) int64 0-based (``keypoints`` (N, K, 3) x, y, visibility with ``num_keypoints``).

    Keyword options: ``depth`` blocks per encoder stage; ``head_channels`` of the decoder and heads
    (default ``2 * width``); loss weights ``size_weight``, ``offset_weight``, ``giou_weight`` (see
    :func:`centernet_loss`); ``nms_iou`` for the optional NMS safety net of :func:`decode`.
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 32,
        stride: int = 4,
        max_det: int = 100,
        conf: float = 0.05,
        topk: int = 100,
        num_keypoints: int = 0,
        *,
        depth: int = 1,
        head_channels: int | None = None,
        size_weight: float = 0.1,
        offset_weight: float = 1.0,
        giou_weight: float = 0.0,
        nms_iou: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1 or width < 1 or depth < 1 or stride not in STRIDES or num_keypoints < 0:
            raise ConfigError(
                f"centernet needs num_classes >= 1, width >= 1, depth >= 1, stride in {STRIDES}, "
                f"num_keypoints >= 0; got {num_classes}, {width}, {depth}, {stride}, {num_keypoints}"
            )
        if max_det < 1 or topk < 1 or not 0.0 <= conf < 1.0:
            raise ConfigError(
                f"centernet needs max_det, topk >= 1, 0 <= conf < 1; got {max_det}, {topk}, {conf}"
            )
        self.num_classes, self.stride, self.num_keypoints = num_classes, stride, num_keypoints
        self.max_det, self.conf, self.topk, self.nms_iou = max_det, conf, topk, nms_iou
        self.loss_weights = {
            "size_weight": size_weight,
            "offset_weight": offset_weight,
            "giou_weight": giou_weight,
        }
        self.backbone = Encoder(width, depth)
        self.head = CenterNetHead(
            self.backbone.channels, head_channels or 2 * width, stride, num_classes, num_keypoints
        )
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def maps(self, images: Tensor) -> dict[str, Tensor]:
        """Raw output maps of (B, 3, H, W) images, padded at the bottom/right to a multiple of 32:
        (B, C | 2 | 2 | 2K, ceil32(H) / stride, ceil32(W) / stride)."""
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % ENCODER_STRIDE, -w % ENCODER_STRIDE
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        return self.head(self.backbone(images))

    def forward(
        self, images: Tensor | Sequence[Tensor], targets: Targets | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError(
                "CenterNet in training mode needs targets (list of dicts); call .eval() to detect"
            )
        batch, sizes = _batch(images)
        outputs = self.maps(batch)
        if self.training:
            if len(targets) != batch.shape[0]:
                raise ValueError(
                    f"got {len(targets)} targets for {batch.shape[0]} images; pass one per image"
                )
            h, w = outputs["heatmap"].shape[-2:]
            encoded = encode_targets(
                targets, self.num_classes, h, w, self.stride, self.num_keypoints, outputs["heatmap"].device
            )
            return centernet_loss(outputs, encoded, self.stride, **self.loss_weights)
        return decode(outputs, sizes, self.conf, self.max_det, self.topk, self.stride, self.nms_iou)

    def export_graph(self) -> ExportGraph:
        """The graph ``foveal export`` writes: the maps and :func:`decode_dense` (the top-k peaks per
        image, padding excluded); the score threshold, ``max_det`` and optional NMS run beside it."""
        outputs = ("boxes", "scores", "labels") + (("keypoints",) if self.num_keypoints else ())
        return ExportGraph(
            _DenseGraph(self),
            outputs,
            rows=True,
            settings={"conf": self.conf, "max_det": self.max_det, "nms_iou": self.nms_iou},
            decode="in the graph: heatmap peaks (3x3 max-pool), top-k and boxes in input pixels; beside "
            "it: scores >= conf (-1 marks padding), at most max_det per image, NMS only if nms_iou is set",
        )


def _batch(images: Tensor | Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
    """A (B, 3, H, W) batch (a list is zero-padded to its largest H, W) and each image's (H, W)."""
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (B, 3, H, W) or a list of (3, H, W), got {tuple(images.shape)}")
        return images, [tuple(images.shape[-2:])] * images.shape[0]
    sizes = [tuple(im.shape[-2:]) for im in images]
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    return torch.stack([F.pad(im, (0, w - im.shape[-1], 0, h - im.shape[-2])) for im in images]), sizes


def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float = 0.7) -> Tensor:
    """CornerNet's Gaussian radius (as in the CenterNet code) for boxes of (N,) ``height``, ``width``:
    the smallest of three corner-shift radii that keep IoU >= ``min_overlap``."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    b3, c3 = -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 16 * min_overlap * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def encode_targets(
    targets: Targets,
    num_classes: int,
    out_h: int,
    out_w: int,
    stride: int,
    num_keypoints: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Dense training targets of per-image ``boxes`` (N, 4) xyxy pixels / ``labels`` (N,) 0-based.

    Returns ``heatmap`` (B, C, h, w): per object a Gaussian of radius ``gaussian_radius`` (in cells,
    min overlap 0.7, sigma = diameter / 6) with peak 1 at its centre cell, max over objects;
    ``size`` (B, 2, h, w) log box (w, h) in cells, ``offset`` (B, 2, h, w), ``boxes`` (B, 4, h, w) the
    xyxy box and ``mask`` (B, h, w) 1.0, all at centre cells only (where centres share a cell the
    smallest box wins); with ``num_keypoints`` K also ``keypoints`` (B, 2K, h, w) and
    ``keypoint_mask`` (B, K, h, w) (visibility > 0) at centre cells. Boxes of zero width or height
    are left out; labels outside [0, C) raise DataError. The maps are on ``device`` (default: the
    targets' device).
    """
    if device is None:
        device = targets[0]["boxes"].device if len(targets) else torch.device("cpu")
    b, hw, k = len(targets), out_h * out_w, num_keypoints
    counts = [len(t["labels"]) for t in targets]
    boxes = torch.cat(
        [torch.zeros(0, 4, device=device)] + [t["boxes"].to(device).reshape(-1, 4) for t in targets]
    )
    labels = torch.cat(
        [torch.zeros(0, dtype=torch.long, device=device)] + [t["labels"].to(device) for t in targets]
    )
    image = torch.repeat_interleave(torch.arange(b, device=device), torch.tensor(counts, device=device))
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.max() if labels.max() >= num_classes else labels.min())
        raise DataError(
            f"detection label {bad} is outside [0, {num_classes}); labels must be 0-based class indices"
        )
    enc = {
        "heatmap": torch.zeros(b * num_classes, hw, device=device),
        "size": torch.zeros(2, b * hw, device=device),
        "offset": torch.zeros(2, b * hw, device=device),
        "boxes": torch.zeros(4, b * hw, device=device),
        "mask": torch.zeros(b * hw, device=device),
    }
    if k:
        enc["keypoints"] = torch.zeros(2 * k, b * hw, device=device)
        enc["keypoint_mask"] = torch.zeros(k, b * hw, device=device)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, labels, image = boxes[keep].float(), labels[keep].long(), image[keep]
    if len(boxes):
        centre = (boxes[:, :2] + boxes[:, 2:]) / (2 * stride)  # (N, 2) in cells
        cell_x = centre[:, 0].floor().clamp(0, out_w - 1)
        cell_y = centre[:, 1].floor().clamp(0, out_h - 1)
        wh = (boxes[:, 2:] - boxes[:, :2]) / stride
        radius = gaussian_radius(wh[:, 1], wh[:, 0]).floor().clamp(min=0)[:, None, None]  # (N, 1, 1)
        dx = torch.arange(out_w, device=device)[None, None, :] - cell_x[:, None, None]  # (N, 1, w)
        dy = torch.arange(out_h, device=device)[None, :, None] - cell_y[:, None, None]  # (N, h, 1)
        gauss = torch.exp(-(dx**2 + dy**2) / (2 * ((2 * radius + 1) / 6) ** 2))
        gauss = gauss * ((dx.abs() <= radius) & (dy.abs() <= radius))  # (N, h, w), 1 at the centre cell
        channel = (image * num_classes + labels)[:, None].expand(-1, hw)
        enc["heatmap"].scatter_reduce_(0, channel, gauss.reshape(-1, hw), "amax")
        cell = image * hw + (cell_y * out_w + cell_x).long()
        rank = torch.argsort(torch.argsort(wh.prod(1), descending=True)).float()  # smallest box: highest
        best = torch.full((b * hw,), -1.0, device=device).scatter_reduce_(0, cell, rank, "amax")
        win = best[cell] == rank
        enc["mask"][cell[win]] = 1.0
        enc["size"][:, cell[win]] = wh[win].log().T
        enc["offset"][:, cell[win]] = (centre - torch.stack([cell_x, cell_y], 1))[win].T
        enc["boxes"][:, cell[win]] = boxes[win].T
        if k:
            kps = [t.get("keypoints", torch.zeros(len(t["labels"]), k, 3)) for t in targets]
            kps = torch.cat([p.to(device, torch.float32).reshape(-1, k, 3) for p in kps])[keep][win]
            rel = (kps[..., :2] - centre[win, None, :] * stride) / stride  # (N, K, 2)
            enc["keypoints"][:, cell[win]] = rel.reshape(len(rel), -1).T
            enc["keypoint_mask"][:, cell[win]] = (kps[..., 2] > 0).float().T
    shapes = {"heatmap": (b, num_classes), "mask": (b,)}
    return {
        key: (
            v.reshape(*shapes[key], out_h, out_w)
            if key in shapes
            else v.reshape(-1, b, out_h, out_w).transpose(0, 1).contiguous()
        )
        for key, v in enc.items()
    }


def focal_heatmap_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """The paper's penalty-reduced pixel-wise focal loss of (B, C, h, w) ``logits`` against the Gaussian
    ``target`` heatmap, summed and divided by the number of peaks (target == 1; at least 1)."""
    p = logits.float().sigmoid().clamp(_EPS, 1 - _EPS)
    pos = target.eq(1).float()
    pos_loss = torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = torch.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def _pred_boxes(size: Tensor, offset: Tensor, stride: int) -> Tensor:
    """xyxy pixel boxes (B, 4, h, w) from log-size and offset maps (B, 2, h, w)."""
    h, w = size.shape[-2:]
    ys = torch.arange(h, device=size.device, dtype=size.dtype)[:, None].expand(h, w)
    xs = torch.arange(w, device=size.device, dtype=size.dtype)[None, :].expand(h, w)
    centre = (torch.stack([xs, ys]) + offset) * stride
    half = size.clamp(max=_MAX_LOG_SIZE).exp() * (stride / 2)
    return torch.cat([centre - half, centre + half], 1)


def centernet_loss(
    outputs: dict[str, Tensor],
    encoded: dict[str, Tensor],
    stride: int = 4,
    size_weight: float = 0.1,
    offset_weight: float = 1.0,
    giou_weight: float = 0.0,
) -> dict[str, Tensor]:
    """CenterNet loss of the raw output maps against :func:`encode_targets`' maps.

    ``heatmap``: :func:`focal_heatmap_loss` (alpha 2, beta 4); ``size`` and ``offset``: L1 at centre
    cells (size in log-cells) summed over (w, h) and divided by the number of objects; ``giou`` (only
    when ``giou_weight`` > 0; off by default as it did not speed up training, see the module docstring):
    ``torchvision.ops.generalized_box_iou_loss`` of the decoded boxes at centre cells. ``loss`` =
    heatmap + size_weight * size + offset_weight * offset + giou_weight * giou (+ keypoint L1 with
    weight 1, normalised by visible keypoints). Finite with zero objects.
    """
    mask = encoded["mask"][:, None]
    num = mask.sum().clamp(min=1)
    losses = {"heatmap": focal_heatmap_loss(outputs["heatmap"], encoded["heatmap"])}
    for key in ("size", "offset"):
        losses[key] = ((outputs[key].float() - encoded[key]).abs() * mask).sum() / num
    total = losses["heatmap"] + size_weight * losses["size"] + offset_weight * losses["offset"]
    if giou_weight > 0:
        from torchvision.ops import generalized_box_iou_loss

        cells = encoded["mask"].bool()
        pred = _pred_boxes(outputs["size"].float(), outputs["offset"].float(), stride)
        pred, target = pred.permute(0, 2, 3, 1)[cells], encoded["boxes"].permute(0, 2, 3, 1)[cells]
        losses["giou"] = generalized_box_iou_loss(pred, target, reduction="sum") / num
        total = total + giou_weight * losses["giou"]
    if "keypoints" in outputs and "keypoints" in encoded:
        vis = encoded["keypoint_mask"].repeat_interleave(2, dim=1)
        diff = (outputs["keypoints"].float() - encoded["keypoints"]).abs() * vis
        losses["keypoints"] = diff.sum() / encoded["keypoint_mask"].sum().clamp(min=1)
        total = total + losses["keypoints"]
    return {"loss": total, **losses}


def decode(
    outputs: dict[str, Tensor],
    image_size: tuple[int, int] | Sequence[tuple[int, int]],
    conf: float = 0.05,
    max_det: int = 100,
    topk: int = 100,
    stride: int = 4,
    nms_iou: float | None = None,
) -> list[dict[str, Tensor]]:
    """Detections from raw output maps: :func:`decode_dense`, then :func:`select_detections`.

    ``image_size``: (H, W) of every image, or one (H, W) per image; boxes are clipped to it. Returns
    per image ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,) >= ``conf`` (descending), ``labels`` (N,)
    int64, N <= ``max_det`` (and ``keypoints`` (N, K, 3) x, y, 1). ``nms_iou``: also run
    ``torchvision.ops.batched_nms`` at that IoU (a safety net against duplicate peaks; off by default).
    """
    b = outputs["heatmap"].shape[0]
    per_image = isinstance(image_size[0], Sequence)
    sizes = [tuple(s) for s in image_size] if per_image else [tuple(image_size)] * b
    hw = torch.tensor(sizes, dtype=torch.float32, device=outputs["heatmap"].device)
    return select_detections(decode_dense(outputs, hw, topk, stride), conf, max_det, nms_iou)


def decode_dense(
    outputs: dict[str, Tensor], sizes: Tensor, topk: int = 100, stride: int = 4
) -> dict[str, Tensor]:
    """The ``topk`` best peaks of raw output maps, a fixed number per image (what the exported graph
    computes): sigmoid heatmap, 3x3 max-pool local maxima (the paper's NMS-free decoding), boxes
    ``(cell + offset) * stride +- size / 2`` clipped to each image's ``sizes`` (B, 2) float (H, W).

    Returns ``boxes`` (B, k, 4) xyxy pixels, ``scores`` (B, k) descending (-1: a peak in the padding
    beyond the image), ``labels`` (B, k) int64 (and ``keypoints`` (B, k, K, 3) x, y, 1)."""
    heat = outputs["heatmap"].detach().float().sigmoid()
    b, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    scores, index = peaks.reshape(b, -1).topk(min(topk, c * h * w))
    # floor division and subtraction, not %: the ONNX exporter cannot convert a remainder by a
    # symbolic size (--dynamic)
    labels = torch.div(index, h * w, rounding_mode="floor")
    cell = index - labels * (h * w)
    boxes = _pred_boxes(outputs["size"].detach().float(), outputs["offset"].detach().float(), stride)
    boxes = boxes.reshape(b, 4, -1).gather(2, cell[:, None].expand(-1, 4, -1)).transpose(1, 2)  # (B, k, 4)
    dense = {"labels": labels}
    if "keypoints" in outputs:
        rel = outputs["keypoints"].detach().float().reshape(b, outputs["keypoints"].shape[1], -1)
        rel = rel.gather(2, cell[:, None].expand(-1, rel.shape[1], -1)).transpose(1, 2)  # (B, k, 2K)
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        xy = centre[:, :, None] + rel.reshape(b, rel.shape[1], -1, 2) * stride
        dense["keypoints"] = torch.cat([xy, torch.ones_like(xy[..., :1])], -1)  # (B, k, K, 3)
    img_h, img_w = sizes[:, 0:1], sizes[:, 1:2]  # (B, 1)
    row = torch.div(cell, w, rounding_mode="floor")
    cell_x, cell_y = (cell - row * w) * stride, row * stride  # (B, k) top-left pixel of each cell
    inside = (cell_x < img_w) & (cell_y < img_h)  # not in the padding
    dense["scores"] = torch.where(inside, scores, torch.full_like(scores, -1.0))
    zero = torch.zeros_like(boxes[..., 0])
    dense["boxes"] = torch.stack(
        [
            torch.minimum(torch.maximum(boxes[..., 0], zero), img_w),
            torch.minimum(torch.maximum(boxes[..., 1], zero), img_h),
            torch.minimum(torch.maximum(boxes[..., 2], zero), img_w),
            torch.minimum(torch.maximum(boxes[..., 3], zero), img_h),
        ],
        -1,
    )
    return dense


def select_detections(
    dense: dict[str, Tensor], conf: float, max_det: int, nms_iou: float | None = None
) -> list[dict[str, Tensor]]:
    """Per image of :func:`decode_dense`'s (B, k, ...) tensors, the detections scoring >= ``conf``
    (after an optional class-aware NMS at ``nms_iou``), at most ``max_det``."""
    results = []
    for n in range(dense["scores"].shape[0]):
        keep = dense["scores"][n] >= max(conf, 0.0)
        det = {key: dense[key][n, keep] for key in ("boxes", "scores", "labels", "keypoints") if key in dense}
        if nms_iou is not None:
            from foveal.ops.boxes import batched_nms

            order = batched_nms(det["boxes"], det["scores"], det["labels"], nms_iou)
            det = {k: v[order] for k, v in det.items()}
        results.append({k: v[:max_det] for k, v in det.items()})
    return results


class _DenseGraph(nn.Module):
    """CenterNet's exported graph: images -> decode_dense's boxes, scores, labels (, keypoints)."""

    def __init__(self, model: CenterNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        maps = self.model.maps(images)
        h, w = images.shape[-2:]
        sizes = torch.stack(
            [torch.ones_like(images[:, 0, 0, 0]) * h, torch.ones_like(images[:, 0, 0, 0]) * w], 1
        )
        dense = decode_dense(maps, sizes.float(), self.model.topk, self.model.stride)
        keys = (
            ("boxes", "scores", "labels", "keypoints")
            if "keypoints" in dense
            else ("boxes", "scores", "labels")
        )
        return tuple(dense[k] for k in keys)


@register("centernet", "pose", "CenterNet with keypoint offsets regressed from each centre; fast on CPU")
@register(
    "centernet", "detect", "CenterNet (objects as points): small ResNet + FPN decoder, stride 4; fast on CPU"
)
def centernet(num_classes: int, imgsz: int | None = None, **kwargs) -> nn.Module:
    """``CenterNet(num_classes, **kwargs)``; ``imgsz`` (which foveal's detect task passes to every
    detector) is ignored: the model is fully convolutional and takes any input size as it is."""
    return CenterNet(num_classes, **kwargs)


set_defaults("detect", [(128, "centernet"), (None, "tv:fasterrcnn_mobilenet_v3_large_fpn")])
