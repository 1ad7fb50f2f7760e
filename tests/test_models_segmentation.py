"""Segmentation models in the registry: own U-Net and GCN, smp and torchvision builders, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from foveal.data.synthetic import generate
from foveal.errors import ConfigError
from foveal.models.registry import build_model, default_model, list_models
from foveal.models.segmentation import (
    SMP_ARCHS,
    BoundaryRefinement,
    GCNBlock,
    PadToMultiple,
)

SIZES = [(50, 70), (64, 64)]


def _check_logits(model: nn.Module, num_classes: int, size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size)
    for mode in (True, False):
        out = model.train(mode)(x)
        assert type(out) is torch.Tensor and out.shape == (2, num_classes, *size)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name, num_classes",
    [
        ("unet", 1),
        ("unet", 5),
        ("gcn", 5),
        ("smp:unet", 1),
        *[(f"smp:{arch}", 5) for arch in SMP_ARCHS],
        ("smp:fpn:mobilenet_v2", 5),
        ("tv:lraspp_mobilenet_v3_large", 1),
        ("tv:deeplabv3_mobilenet_v3_large", 5),
    ],
)
def test_models_give_logits_at_any_size(name: str, num_classes: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes, task="segment")
    assert isinstance(model, PadToMultiple)
    for size in SIZES if name in ("unet", "smp:unet") else SIZES[:1]:
        _check_logits(model, num_classes, size)


def test_wrapper_exposes_model_head_and_backbone() -> None:
    import segmentation_models_pytorch as smp
    import torchvision

    cases = {
        "unet": (nn.Conv2d, 16, "head", "encoder"),
        "gcn": (nn.Module, 32, "head", "backbone"),
        "smp:Unet": (smp.Unet, 32, "segmentation_head", "encoder"),
        "smp:deeplabv3plus:resnet34": (smp.DeepLabV3Plus, 16, "segmentation_head", "encoder"),
        "smp:pan": (smp.PAN, 128, "segmentation_head", "encoder"),
        "tv:deeplabv3_mobilenet_v3_large": (
            torchvision.models.segmentation.DeepLabV3,
            16,
            "classifier",
            "backbone",
        ),
        "tv:lraspp_mobilenet_v3_large": (
            torchvision.models.segmentation.LRASPP,
            16,
            "classifier",
            "backbone",
        ),
    }
    for name, (kind, multiple, head, backbone) in cases.items():
        model = build_model(name, 3, task="segment")
        assert model.multiple == multiple, name
        assert model.head is model.model.get_submodule(head)
        assert model.backbone is model.model.get_submodule(backbone)
        if name.startswith(("smp", "tv")):
            assert isinstance(model.model, kind), name
        head_params = {id(p) for p in model.head.parameters()}
        backbone_params = {id(p) for p in model.backbone.parameters()}
        assert head_params and backbone_params and not head_params & backbone_params
    resnet34 = build_model("smp:deeplabv3plus:resnet34", 3, task="segment").backbone
    assert len(resnet34.layer1) == 3  # resnet34, not the default resnet18
    assert build_model("unet", 4, task="segment").head.out_channels == 4


def test_pad_to_multiple_crops_back_exactly() -> None:
    seen = []
    conv = nn.Conv2d(3, 2, 1)
    conv.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    model = PadToMultiple(conv, 32, head="", backbone="")
    x = torch.rand(1, 3, 50, 70)
    torch.testing.assert_close(model(x), conv(x))  # a pointwise model is not changed by the padding
    assert seen[0] == (64, 96)
    assert model(torch.rand(1, 3, 10, 33)).shape == (1, 2, 10, 33)  # pad > size: zero padding
    assert seen[-1] == (32, 64)
    model(torch.rand(1, 3, 64, 32))
    assert seen[-1] == (64, 32)  # multiples pass through unpadded
    tv = PadToMultiple(_DictOut(), 8, head="", backbone="")
    assert type(tv(torch.rand(1, 3, 12, 12))) is torch.Tensor


class _DictOut(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": x, "aux": x}


def test_list_models_segment() -> None:
    import torchvision

    rows = list_models(task="segment")
    names = [n for n, _, _ in rows]
    assert all(t == "segment" for _, t, _ in rows)
    assert names[:2] == ["gcn", "unet"]  # own names first
    tv = sorted(torchvision.models.list_models(module=torchvision.models.segmentation))
    assert [n for n in names if n.startswith("tv:")] == [f"tv:{n}" for n in tv]
    assert [n for n in names if n.startswith("smp:")] == [f"smp:{a}" for a in SMP_ARCHS]
    assert not any(n.startswith("timm:") or n == "tv:resnet18" for n in names)
    combos = [n for n, _, _ in list_models(pattern="smp:fpn:res*")]
    assert "smp:fpn:resnet34" in combos and all(n.startswith("smp:fpn:res") for n in combos)
    assert "tv:deeplabv3_resnet50" in [n for n, _, _ in list_models(pattern="deeplab*")]
    assert "tv:fcn_resnet50" not in [n for n, _, _ in list_models(task="classify")]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("smp:unett", "smp:unet"),
        ("smp:unet:resnet19", "smp:unet:resnet18"),
        ("tv:deeplabv3_resnet5", "tv:deeplabv3_resnet50"),
        ("unett", "unet"),
        ("tv:resnet18", "tv:fcn_resnet50"),
    ],
)
def test_unknown_names_suggest_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match="did you mean") as info:
        build_model(name, 3, task="segment")
    assert suggestion in str(info.value) and name in str(info.value)


def test_names_of_other_tasks_and_bad_options() -> None:
    assert build_model("smp:UNET", 2, task="segment").model.segmentation_head[0].out_channels == 2
    with pytest.raises(ConfigError, match="classify"):
        build_model("timm:resnet18", 3, task="segment")
    with pytest.raises(ConfigError, match="segment"):
        build_model("smp:unet", 3)
    with pytest.raises(ConfigError, match="segment model"):
        build_model("unet", 3)
    with pytest.raises(ConfigError, match="decoder_channels"):
        build_model("smp:unet", 3, task="segment", decoder_channel=(8,))
    with pytest.raises(ConfigError, match="colour"):
        build_model("tv:lraspp_mobilenet_v3_large", 3, task="segment", colour=1)
    with pytest.raises(ConfigError, match="colour"):
        build_model("unet", 3, task="segment", colour=1)
    with pytest.raises(ConfigError, match="upsample"):
        build_model("unet", 3, task="segment", upsample="nearest")
    with pytest.raises(ConfigError, match="resnet34"):
        build_model("gcn", 3, task="segment", backbone="resnet35")
    with pytest.raises(ConfigError, match="kernel_size"):
        build_model("gcn", 3, task="segment", kernel_size=4)


def test_smp_options_and_timm_encoders() -> None:
    model = build_model("smp:unet", 3, task="segment", encoder_depth=3, decoder_channels=(32, 16, 8))
    assert model.multiple == 8
    _check_logits(model, 3, (20, 30))
    _check_logits(build_model("smp:fpn:tu-resnet10t", 2, task="segment"), 2, (40, 40))


def test_unet_options() -> None:
    model = build_model("unet", 3, task="segment", width=4, depth=2, upsample="transpose")
    assert model.multiple == 4 and model.model.encoder[-1][1][0].out_channels == 16
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules()) == 2
    _check_logits(model, 3, (18, 22))


def test_gcn_backbone_and_options() -> None:
    model = build_model("gcn", 5, task="segment", backbone="resnet34", kernel_size=(7, 5, 3, 3))
    assert len(model.backbone.layer1) == 3  # resnet34 blocks
    assert [g.left[0].kernel_size for g in model.head.gcn] == [(7, 1), (5, 1), (3, 1), (3, 1)]
    assert [g.left[0].in_channels for g in model.head.gcn] == [64, 128, 256, 512]
    assert isinstance(model.head.classifier, nn.Identity)  # paper: the score maps are the logits
    _check_logits(model, 5, (50, 70))
    wide = build_model("gcn", 1, task="segment", channels=16)
    assert wide.head.gcn[0].left[0].out_channels == 16 and wide.head.classifier.out_channels == 1
    _check_logits(wide, 1, (40, 40))


def test_gcn_block_is_a_large_separable_kernel_and_br_is_residual() -> None:
    block = GCNBlock(1, 1, 7)
    for conv in block.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.ones_(conv.weight)
            nn.init.zeros_(conv.bias)
    x = torch.zeros(1, 1, 15, 15)
    x[..., 7, 7] = 1.0
    expected = torch.zeros(1, 1, 15, 15)
    expected[..., 4:11, 4:11] = 2.0  # both branches spread the impulse over a 7x7 square
    torch.testing.assert_close(block(x), expected)
    br = BoundaryRefinement(3)
    nn.init.zeros_(br.residual[2].weight)
    nn.init.zeros_(br.residual[2].bias)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(br(x), x)


def test_default_model_segment() -> None:
    assert default_model("segment", 64) == "unet"
    assert default_model("segment", 128) == "unet"
    assert default_model("segment", 256) == "smp:unet:resnet18"


def test_unet_overfits_a_batch_of_shapes_masks() -> None:
    scenes = list(generate(4, imgsz=48, seed=0))
    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.5) / 0.25
    y = torch.from_numpy(np.stack([s.semantic for s in scenes])).long()
    assert len(y.unique()) >= 4
    torch.manual_seed(0)
    model = build_model("unet", 5, task="segment", width=8, depth=3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9, accuracy
