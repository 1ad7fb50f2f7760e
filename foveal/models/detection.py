"""torchvision detectors (Faster R-CNN, RetinaNet, SSD, FCOS, Mask R-CNN, Keypoint R-CNN) behind one wrapper.

Every detection model in foveal follows torchvision's convention: ``model(images, targets)`` in
training mode returns a dict of loss terms; in eval mode ``model(images)`` returns one dict per image
with ``boxes`` (N, 4) float xyxy in input pixels, ``scores`` (N,), ``labels`` (N,) int64 0-based class
indices, and for instance/pose models ``masks`` (N, H, W) float probabilities and ``keypoints``
(N, K, 3) (x, y, visibility). Targets per image: ``boxes`` (N, 4) xyxy, ``labels`` (N,) 0-based,
``masks`` (N, H, W) uint8 and ``keypoints`` (N, K, 3) where the task has them.

torchvision counts class 0 as background; :class:`TorchvisionDetector` shifts labels by one on the
way in and out, so the rest of foveal only sees 0-based foreground classes. Images arrive normalised
by foveal's transforms, so the model's own normalisation is set to identity, and its resizing to the
training image size (``min_size = max_size = imgsz``; SSD keeps its fixed 300/320 input).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from foveal.errors import ConfigError
from foveal.models.catalog import register, set_defaults
from foveal.models.graph import ExportGraph

# torchvision detection builders by foveal task (name prefixes).
TV_FAMILIES = {
    "detect": ("fasterrcnn", "retinanet", "ssd", "fcos"),
    "instance": ("maskrcnn",),
    "pose": ("keypointrcnn",),
}


def tv_detection_names(task: str) -> list[str]:
    """torchvision's detection builders suited to ``task`` (detect, instance or pose)."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models.detection)
    return sorted(n for n in names if n.startswith(TV_FAMILIES.get(task, ())))


class TorchvisionDetector(nn.Module):
    """A torchvision detection model with 0-based labels, (N, H, W) masks; ``.backbone`` and ``.head``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def backbone(self) -> nn.Module:
        """The feature extractor (with FPN where the model has one)."""
        return self.model.backbone

    @property
    def head(self) -> nn.Module:
        """The class-count-specific layers: R-CNN box/mask/keypoint predictors, or the dense head."""
        return self.model.roi_heads if hasattr(self.model, "roi_heads") else self.model.head

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        if self.training:
            if targets is None:
                raise ValueError("a detection model in training mode needs targets")
            shifted = [{**t, "labels": t["labels"] + 1} for t in targets]
            return self.model(list(images), shifted)
        outputs = self.model(list(images))
        for out in outputs:
            out["labels"] = out["labels"] - 1
            if "masks" in out:
                out["masks"] = out["masks"][:, 0]
        return outputs

    def export_graph(self) -> ExportGraph:
        """The graph ``foveal export`` writes: the whole torchvision model on one image (its transform,
        RPN, box decoding and NMS inside), outputs with 0-based labels and (N, H, W) masks. Exported
        with the TorchScript-based ONNX exporter (its data-dependent shapes defeat ``torch.export``)."""
        self.eval()
        with torch.no_grad():
            keys = tuple(self.model([torch.zeros(3, 64, 64)])[0])
        return ExportGraph(
            _OneImage(self.model, list(keys)),
            keys,
            # torchvision pastes masks into the image with an ONNX-only loop whose resampling differs
            # at mask borders (measured up to 0.13 in probability); the masks' agreement is their mAP
            onnx_atol={"masks": 0.25} if "masks" in keys else {},
            per_image=True,
            exporter="torchscript",
            rows=True,
            script=True,
            decode="in the graph: the model's own box decoding, score threshold and NMS "
            "(box_score_thresh, box_nms_thresh, box_detections_per_img); one image per call",
        )


class _OneImage(nn.Module):
    """A torchvision detector on a (1, 3, H, W) batch -> its detections' tensors in ``keys`` order."""

    def __init__(self, model: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, images: Tensor) -> list[Tensor]:
        # a block, not a ternary: TorchScript compiles only the branch of is_scripting() it takes
        if torch.jit.is_scripting():  # noqa: SIM108
            found = self.model([images[0]])[1][0]
        else:
            found = self.model([images[0]])[0]
        outputs: list[Tensor] = []
        for key in self.keys:
            value = found[key]
            if key == "labels":
                value = value - 1
            elif key == "masks":
                value = value[:, 0]
            outputs.append(value)
        return outputs


def build_tv_detection(
    name: str, num_classes: int, imgsz: int | None = None, **kwargs: Any
) -> TorchvisionDetector:
    """torchvision detection model ``name`` with random weights (backbone too: nothing downloads).

    ``num_classes``: foreground classes. ``imgsz``: the training image size the model keeps inputs at.
    ``kwargs`` go to the builder (e.g. ``num_keypoints`` for Keypoint R-CNN, ``trainable_backbone_layers``,
    ``box_detections_per_img``)."""
    import torchvision

    options: dict[str, Any] = {
        "weights": None,
        "weights_backbone": None,
        "num_classes": num_classes + 1,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
    }
    if imgsz is not None and not name.startswith("ssd"):
        options.update(min_size=imgsz, max_size=imgsz)
    options.update(kwargs)
    try:
        model = torchvision.models.get_model(name, **options)
    except TypeError as err:
        raise ConfigError(f"model 'tv:{name}' does not take these options: {err}") from err
    _check_options(type(model), kwargs, f"tv:{name}", torchvision.models.get_model_builder(name))
    return TorchvisionDetector(model)


# Options torchvision detectors pass on to GeneralizedRCNNTransform through **kwargs.
_TRANSFORM_OPTIONS = {"size_divisible", "fixed_size"}


def _check_options(model_cls: type, options: dict[str, Any], name: str, builder: Any = None) -> None:
    """Raise ConfigError for options neither the builder nor the model class knows (torchvision
    swallows unknown ones silently)."""
    import inspect

    known = set(inspect.signature(model_cls.__init__).parameters) | _TRANSFORM_OPTIONS
    if builder is not None:
        known |= set(inspect.signature(builder).parameters)
    for base in model_cls.__mro__[1:]:  # MaskRCNN/KeypointRCNN pass the rest on to FasterRCNN
        if base.__module__.startswith("torchvision.models.detection") and "__init__" in vars(base):
            known |= set(inspect.signature(base.__init__).parameters)
    unknown = sorted(set(options) - known - {"num_classes", "weights", "weights_backbone", "progress"})
    if unknown:
        raise ConfigError(
            f"model '{name}' does not take option(s) {', '.join(unknown)}; see its torchvision class"
        )


# Anchor sizes per FPN level (strides 4-64) for the small-image R-CNNs: one octave below torchvision's
# (32-512), so 64-256 px images with objects of 8-128 px get anchors that fit.
SMALL_ANCHORS = ((16,), (32,), (64,), (128,), (256,))
SMALL_FPN_CHANNELS = 128  # torchvision: 256
SMALL_HEAD_CHANNELS = 64  # mask / keypoint head convolutions; torchvision: 256 / 512


def _small_rcnn(kind: str, num_classes: int, imgsz: int | None, **kwargs: Any) -> TorchvisionDetector:
    """An R-CNN of torchvision's design, slimmed for CPU training on small images (random weights).

    ResNet-18 with a 128-channel FPN, anchors one octave smaller than torchvision's, a 256-wide box
    head (torchvision: 1024) sampling 128 RoIs per image (512), 64-channel mask / keypoint heads and
    fewer proposals. One training step on 8 images of 32 px takes ~0.5 s on 2 CPU cores where the
    ResNet-50 models take ~13 s. ``kind``: 'faster', 'mask' or 'keypoint' (``num_keypoints``
    required); ``kwargs`` go to the torchvision class (e.g. ``box_detections_per_img``)."""
    import torchvision
    from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    resnet = torchvision.models.resnet18(weights=None)
    backbone = BackboneWithFPN(
        resnet,
        return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
        in_channels_list=[64, 128, 256, 512],
        out_channels=SMALL_FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(SMALL_ANCHORS, ((0.5, 1.0, 2.0),) * len(SMALL_ANCHORS))
    size = imgsz or 320
    c, h = SMALL_FPN_CHANNELS, SMALL_HEAD_CHANNELS
    options: dict[str, Any] = {
        "rpn_anchor_generator": anchors,
        "min_size": size,
        "max_size": size,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "rpn_pre_nms_top_n_train": 600,
        "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 150,
        "box_batch_size_per_image": 128,
        "box_detections_per_img": 50,
        "box_head": TwoMLPHead(c * 7 * 7, 256),
        "box_predictor": FastRCNNPredictor(256, num_classes + 1),
    }
    if kind == "mask":
        options.update(
            mask_head=MaskRCNNHeads(c, [h, h], 1), mask_predictor=MaskRCNNPredictor(h, h, num_classes + 1)
        )
    if kind == "keypoint":
        k = kwargs.pop("num_keypoints")
        options.update(
            keypoint_head=KeypointRCNNHeads(c, [h] * 4), keypoint_predictor=KeypointRCNNPredictor(h, k)
        )
    options.update(kwargs)
    model_cls = {"faster": FasterRCNN, "mask": MaskRCNN, "keypoint": KeypointRCNN}[kind]
    _check_options(model_cls, kwargs, f"{kind}rcnn_resnet18")
    try:
        return TorchvisionDetector(model_cls(backbone, None, **options))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{kind} R-CNN does not take these options: {err}") from err


@register(
    "fasterrcnn_resnet18", "detect", "Faster R-CNN, ResNet-18 FPN, small anchors: two-stage, small images"
)
def fasterrcnn_resnet18(num_classes: int, imgsz: int | None = None, **kwargs: Any) -> TorchvisionDetector:
    return _small_rcnn("faster", num_classes, imgsz, **kwargs)


@register(
    "maskrcnn_resnet18", "instance", "Mask R-CNN, ResNet-18 FPN, small anchors: CPU default for instance"
)
def maskrcnn_resnet18(num_classes: int, imgsz: int | None = None, **kwargs: Any) -> TorchvisionDetector:
    return _small_rcnn("mask", num_classes, imgsz, **kwargs)


@register(
    "keypointrcnn_resnet18", "pose", "Keypoint R-CNN, ResNet-18 FPN, small anchors: CPU default for pose"
)
def keypointrcnn_resnet18(
    num_classes: int, imgsz: int | None = None, num_keypoints: int = 17, **kwargs: Any
) -> TorchvisionDetector:
    return _small_rcnn("keypoint", num_classes, imgsz, num_keypoints=num_keypoints, **kwargs)


set_defaults("instance", [(256, "maskrcnn_resnet18"), (None, "tv:maskrcnn_resnet50_fpn")])
set_defaults("pose", [(256, "keypointrcnn_resnet18"), (None, "tv:keypointrcnn_resnet50_fpn")])
