"""Detection models in the registry: torchvision detectors behind the wrapper, the slim R-CNNs,
pretrained local weights and backbone freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from foveal.errors import ConfigError
from foveal.models.detection import TorchvisionDetector
from foveal.models.registry import build_model, default_model, list_models
from foveal.models.weights import load_pretrained, set_backbone_frozen

NUM_CLASSES = 3


def _targets(task: str, n: int = 2, size: int = 64) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(n):
        target = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([i % NUM_CLASSES])}
        if task == "instance":
            masks = torch.zeros((1, size, size), dtype=torch.uint8)
            masks[0, 6:40, 4:30] = 1
            target["masks"] = masks
        if task == "pose":
            target["keypoints"] = torch.tensor([[[5.0, 7.0, 2.0], [20.0, 30.0, 2.0], [0.0, 0.0, 0.0]]])
        out.append(target)
    return out


@pytest.mark.parametrize(
    "name, task",
    [
        ("tv:fasterrcnn_mobilenet_v3_large_320_fpn", "detect"),
        ("tv:retinanet_resnet50_fpn", "detect"),
        ("tv:fcos_resnet50_fpn", "detect"),
        ("tv:ssdlite320_mobilenet_v3_large", "detect"),
        ("fasterrcnn_resnet18", "detect"),
        ("maskrcnn_resnet18", "instance"),
        ("keypointrcnn_resnet18", "pose"),
    ],
)
def test_detectors_train_and_predict_with_zero_based_labels(name: str, task: str) -> None:
    torch.manual_seed(0)
    options = {"num_keypoints": 3} if task == "pose" else {}
    model = build_model(name, NUM_CLASSES, task=task, imgsz=64, **options)
    assert isinstance(model, TorchvisionDetector)
    images = torch.rand(2, 3, 64, 64)
    losses = model.train()(images, _targets(task))
    assert losses and all(torch.isfinite(v) for v in losses.values())
    if task == "instance":
        assert "loss_mask" in losses
    if task == "pose":
        assert "loss_keypoint" in losses
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    with torch.no_grad():
        outputs = model.eval()(images)
    assert len(outputs) == 2
    for out in outputs:
        n = len(out["boxes"])
        assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,)
        assert ((out["labels"] >= 0) & (out["labels"] < NUM_CLASSES)).all()
        if task == "instance":
            assert out["masks"].shape == (n, 64, 64)
        if task == "pose":
            assert out["keypoints"].shape == (n, 3, 3)


def test_registry_lists_detectors_per_task_and_defaults() -> None:
    detect = [n for n, _, _ in list_models(task="detect")]
    assert {"centernet", "fasterrcnn_resnet18", "tv:fasterrcnn_resnet50_fpn", "tv:ssd300_vgg16"} <= set(
        detect
    )
    assert not any("maskrcnn" in n or "keypointrcnn" in n for n in detect)
    assert {"maskrcnn_resnet18", "tv:maskrcnn_resnet50_fpn_v2"} <= {
        n for n, _, _ in list_models(task="instance")
    }
    assert {"keypointrcnn_resnet18", "tv:keypointrcnn_resnet50_fpn"} <= {
        n for n, _, _ in list_models(task="pose")
    }
    assert default_model("detect", 64) == "centernet"
    assert default_model("instance", 64) == "maskrcnn_resnet18"
    assert default_model("pose", 512) == "tv:keypointrcnn_resnet50_fpn"
    with pytest.raises(
        ConfigError, match="unknown detect model 'tv:fasterrcnn_resnet50'.*fasterrcnn_resnet50_fpn"
    ):
        build_model("tv:fasterrcnn_resnet50", 3, task="detect")
    with pytest.raises(ConfigError, match="does not take option.*colour"):
        build_model("fasterrcnn_resnet18", 3, task="detect", colour=1)
    with pytest.raises(ConfigError, match="does not take option.*colour"):
        build_model("tv:ssdlite320_mobilenet_v3_large", 3, task="detect", colour=1)
    model = build_model(
        "tv:fcos_resnet50_fpn", 3, task="detect", trainable_backbone_layers=5, score_thresh=0.3
    )
    assert model.model.score_thresh == 0.3


def test_plain_torchvision_weights_load_into_the_wrapper(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model("tv:fasterrcnn_mobilenet_v3_large_320_fpn", 5, task="detect", imgsz=64)
    path = tmp_path / "frcnn.pth"
    torch.save(source.model.state_dict(), path)  # a plain torchvision state dict: no "model." prefix
    target = build_model("tv:fasterrcnn_mobilenet_v3_large_320_fpn", NUM_CLASSES, task="detect", imgsz=64)
    report = load_pretrained(target, str(path), "tv:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert "model.backbone.body.0.0.weight" in report["loaded"]
    assert "model.roi_heads.box_predictor.cls_score.weight" in report["skipped"]  # 6 vs 4 outputs
    for name in report["loaded"]:
        assert torch.equal(target.state_dict()[name], source.state_dict()[name])


def test_freeze_backbone_keeps_heads_trainable() -> None:
    model = build_model("maskrcnn_resnet18", NUM_CLASSES, task="instance", imgsz=64)
    frozen = set_backbone_frozen(model, True)
    assert frozen == sum(p.numel() for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert all(p.requires_grad for p in model.model.rpn.parameters())
    assert set_backbone_frozen(model, False) == 0
    centernet = build_model("centernet", NUM_CLASSES, task="detect")
    set_backbone_frozen(centernet, True)
    assert not any(p.requires_grad for p in centernet.backbone.parameters())
    assert all(p.requires_grad for p in centernet.head.parameters())
