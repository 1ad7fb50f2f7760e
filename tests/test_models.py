"""Model registry, own small models, pretrained-weight loading, heads and backbone freezing."""

from __future__ import annotations

import fnmatch

import pytest
import torch
from torch import nn

from foveal.errors import CheckpointError, ConfigError, DataError
from foveal.models import catalog, registry
from foveal.models.registry import build_model, default_model, list_models, register
from foveal.models.weights import freeze_bn_stats, head_module, load_pretrained, set_backbone_frozen


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("lenet", 32),
        ("smallresnet", 32),
        ("smallresnet_se", 48),
        ("tv:resnet18", 32),
        ("tv:mobilenet_v3_small", 32),
        ("tv:googlenet", 64),
        ("timm:resnet18", 32),
    ],
)
def test_build_gives_logits_in_train_and_eval(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, 5)
    x = torch.rand(2, 3, size, size)
    out = model.train()(x)
    assert type(out) is torch.Tensor and out.shape == (2, 5)  # no aux-logits tuples in training
    assert model.eval()(x).shape == (2, 5)


def test_own_models_expose_features_and_head() -> None:
    for name, dim in (("lenet", 84), ("smallresnet", 256), ("smallresnet_se", 256)):
        model = build_model(name, 3).eval()
        x = torch.rand(2, 3, 40, 56)
        feats = model.features(x)
        assert feats.shape == (2, dim)
        assert isinstance(model.head, nn.Linear)
        torch.testing.assert_close(model.head(feats), model(x))
    small = build_model("smallresnet", 3, width=16, depth=2, stages=3)
    assert small.head.in_features == 64 and len(small.features.stage2) == 2
    plain, se = build_model("smallresnet", 3), build_model("smallresnet_se", 3)
    assert any(isinstance(m, torchvision_se()) for m in se.modules())
    assert not any(isinstance(m, torchvision_se()) for m in plain.modules())
    assert build_model("lenet", 3, width=2.0).features.conv1.out_channels == 12


def torchvision_se() -> type:
    from torchvision.ops import SqueezeExcitation

    return SqueezeExcitation


def test_bad_builder_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="colour"):
        build_model("smallresnet", 3, colour=1)
    with pytest.raises(ConfigError, match="width"):
        build_model("smallresnet", 3, width=0)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("lenet", 0)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("tv:resnet19", "tv:resnet18"),
        ("smallresnt", "smallresnet"),
        ("timm:resnet19", "timm:resnet18"),
        ("tx:resnet18", "tv"),
        ("lenet5", "lenet"),
    ],
)
def test_unknown_names_suggest_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match="did you mean") as info:
        build_model(name, 3)
    assert suggestion in str(info.value)
    assert name.partition(":")[0] in str(info.value)


def test_unknown_task_and_prefix_for_other_task() -> None:
    with pytest.raises(ConfigError, match="classify"):
        build_model("smallresnet", 3, task="clasify")
    with pytest.raises(ConfigError, match="segment"):
        build_model("tv:resnet18", 3, task="segment")


def test_register_other_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "OWN", dict(catalog.OWN))

    @register("tinyseg", "segment", "a 1x1 conv segmenter")
    def tinyseg(num_classes: int, **kwargs) -> nn.Module:
        return nn.Conv2d(3, num_classes, 1, **kwargs)

    assert build_model("tinyseg", 4, task="segment", bias=False).bias is None
    assert ("tinyseg", "segment", "a 1x1 conv segmenter") in list_models(task="segment")
    assert all(task == "segment" for _, task, _ in list_models(task="segment"))
    with pytest.raises(ConfigError, match="segment model"):
        build_model("tinyseg", 4)
    with pytest.raises(ValueError, match="already registered"):
        register("tinyseg", "segment", "again")(lambda num_classes: nn.Identity())
    monkeypatch.setattr(catalog, "DEFAULTS", dict(catalog.DEFAULTS))
    registry.set_defaults("segment", [(128, "tinyseg"), (None, "bigseg")])
    assert default_model("segment", 64) == "tinyseg" and default_model("segment", 512) == "bigseg"


def test_list_models_filters_by_task_and_pattern() -> None:
    import timm
    import torchvision

    rows = list_models(task="classify")
    names = [n for n, _, _ in rows]
    assert {"lenet", "smallresnet", "smallresnet_se", "tv:resnet18", "tv:vit_b_16"} <= set(names)
    assert all(t == "classify" for _, t, _ in rows)
    assert not any(n.startswith("timm:") and n != "timm:<name>" for n in names)  # timm only counted
    assert str(len(timm.list_models())) in dict((n, d) for n, _, d in rows)["timm:<name>"]
    assert len([n for n in names if n.startswith("tv:")]) == len(
        torchvision.models.list_models(module=torchvision.models)
    )

    resnets = [n for n, _, _ in list_models(pattern="resnet1*")]
    assert {"tv:resnet18", "tv:resnet152", "timm:resnet18", "timm:resnet101"} <= set(resnets)
    assert all(fnmatch.fnmatch(n.partition(":")[2], "resnet1*") for n in resnets)
    tv_vits = [n for n, _, _ in list_models(pattern="tv:vit*")]
    assert tv_vits and all(n.startswith("tv:vit") for n in tv_vits)
    timm_effs = [n for n, _, _ in list_models(pattern="timm:efficientnet_b*")]
    assert "timm:efficientnet_b0" in timm_effs and all(n.startswith("timm:") for n in timm_effs)
    assert [n for n, _, _ in list_models(pattern="small*")] == ["smallresnet", "smallresnet_se"]
    assert list_models(task="detect", pattern="small*") == []


def test_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_model("classify", 64) == "smallresnet"
    assert default_model("classify", 224) == "tv:resnet18"
    with pytest.raises(ConfigError, match="unknown task 'generate'"):
        default_model("generate", 64)  # no model family of that name
    monkeypatch.setitem(catalog.DEFAULTS, "classify", [(96, "smallresnet")])
    with pytest.raises(ConfigError, match="no default"):
        default_model("classify", 224)


def test_families_come_from_registered_models_and_prefix_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.families() == ["classify", "segment", "detect", "instance", "pose"]
    assert {family for _, family, _ in list_models()} == set(registry.families())
    monkeypatch.setattr(catalog, "OWN", dict(catalog.OWN))
    register("tinyrestore", "restore", "identity")(lambda num_classes: nn.Identity())
    assert registry.families()[-1] == "restore"
    assert build_model("tinyrestore", 3, task="restore").__class__ is nn.Identity
    with pytest.raises(ConfigError, match="model family"):
        register("bad", "Not A Family", "x")


# -- weights ------------------------------------------------------------------------------------


def _assert_equal_except(a: nn.Module, b: nn.Module, skipped: set[str]) -> None:
    theirs = b.state_dict()
    for name, tensor in a.state_dict().items():
        if name not in skipped:
            assert torch.equal(tensor, theirs[name]), name


def test_load_pretrained_skips_head_of_other_class_count(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_model("smallresnet", 10)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    target = build_model("smallresnet", 4)
    fresh_head = target.head.weight.clone()
    report = load_pretrained(target, str(tmp_path / "w.pt"), "smallresnet")
    assert sorted(report["skipped"]) == ["head.bias", "head.weight"]
    assert sorted(report["unused"]) == ["head.bias", "head.weight"]
    assert len(report["loaded"]) == len(target.state_dict()) - 2
    _assert_equal_except(target, source, {"head.weight", "head.bias"})
    assert torch.equal(target.head.weight, fresh_head)


def test_load_pretrained_torchvision_state_dict(tmp_path) -> None:
    source = build_model("tv:resnet18", 10)
    torch.save({"model": source.state_dict()}, tmp_path / "tv.pth")
    target = build_model("tv:resnet18", 3)
    report = load_pretrained(target, str(tmp_path / "tv.pth"), "tv:resnet18")
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    _assert_equal_except(target, source, {"fc.weight", "fc.bias"})


def test_load_pretrained_lightning_checkpoint_and_ema(tmp_path) -> None:
    source, ema = build_model("lenet", 4), build_model("lenet", 4)
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    state |= {f"ema.module.{k}": v for k, v in ema.state_dict().items()}
    state["ema.n_averaged"] = torch.tensor(3)
    torch.save({"state_dict": state, "epoch": 3, "foveal": {"weights": "model"}}, tmp_path / "a.ckpt")
    torch.save({"state_dict": state, "foveal": {"weights": "ema"}}, tmp_path / "b.ckpt")
    target = build_model("lenet", 4)
    report = load_pretrained(target, str(tmp_path / "a.ckpt"), "lenet")
    assert report["skipped"] == [] and len(report["loaded"]) == len(target.state_dict())
    _assert_equal_except(target, source, set())
    load_pretrained(target, str(tmp_path / "b.ckpt"), "lenet")
    _assert_equal_except(target, ema, set())


def test_load_pretrained_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    source = build_model("lenet", 4)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    target = build_model("lenet", 4)
    assert load_pretrained(target, str(tmp_path / "w.safetensors"), "lenet")["skipped"] == []
    _assert_equal_except(target, source, set())


def test_load_pretrained_errors(tmp_path) -> None:
    model = build_model("smallresnet", 4)
    with pytest.raises(DataError, match="nope.pt"):
        load_pretrained(model, str(tmp_path / "nope.pt"), "smallresnet")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_pretrained(model, str(tmp_path / "garbage.pt"), "smallresnet")
    torch.save(build_model("lenet", 4).state_dict(), tmp_path / "lenet.pt")
    with pytest.raises(CheckpointError, match="lenet.pt.*'smallresnet'"):
        load_pretrained(model, str(tmp_path / "lenet.pt"), "smallresnet")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="Tensor"):
        load_pretrained(model, str(tmp_path / "tensor.pt"), "smallresnet")
    with pytest.raises(ConfigError, match="hub"):
        load_pretrained(model, "hub", "smallresnet")  # own models have no official weights; no download


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("smallresnet", "head"),
        ("lenet", "head"),
        ("tv:resnet18", "fc"),
        ("tv:vgg11", "classifier.6"),
        ("tv:squeezenet1_1", "classifier.1"),
        ("tv:mobilenet_v3_small", "classifier.3"),
        ("tv:vit_b_32", "heads.head"),
        ("tv:googlenet", "fc"),
        ("tv:efficientnet_b0", "classifier.1"),
        ("timm:resnet18", "fc"),
        ("timm:convnext_atto", "head.fc"),
    ],
)
def test_head_module(name: str, path: str) -> None:
    model = build_model(name, 7)
    head = head_module(model)
    assert head is model.get_submodule(path)
    assert head_module(model, num_classes=7) is head


def test_head_module_by_class_count() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 8))
    assert head_module(model) is model[2]
    assert head_module(model, num_classes=3) is model[0]
    with pytest.raises(ConfigError, match="5 outputs"):
        head_module(model, num_classes=5)


def test_freeze_backbone_trains_head_only() -> None:
    torch.manual_seed(0)
    model = build_model("smallresnet", 3)
    frozen = set_backbone_frozen(model, True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    assert frozen == sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head."))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    assert freeze_bn_stats(model) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}  # BN running stats did not move either
    assert set_backbone_frozen(model, False) == 0
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert freeze_bn_stats(model) == 0 and all(m.training for m in model.modules())
