"""Tests for augmentation presets, image-only noise transforms, batch mixing and the preview grid."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from foveal.data.mixing import BatchMix
from foveal.data.noise import ChannelDropout, Cutout, GaussianNoise, SaltPepperNoise
from foveal.data.preview import PAD, TITLE_HEIGHT, preview_dataset, preview_grid
from foveal.data.synth_writers import write_synthetic
from foveal.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPTIONS,
    PRESETS,
    batch_mixer,
    build_transforms,
    resolve_aug,
)
from foveal.errors import ConfigError, DataError

HAS_KEYPOINTS = hasattr(tv_tensors, "KeyPoints")


def _pil(h: int = 40, w: int = 56, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _targets(h: int, w: int) -> list:
    """A mask with labels 0..2, two boxes and (if available) keypoints on an h x w canvas."""
    mask = torch.zeros(h, w, dtype=torch.int64)
    mask[2:10, 3:12] = 1
    mask[15:20, 20:30] = 2
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[3.0, 2.0, 12.0, 10.0], [20.0, 15.0, 30.0, 20.0]]), format="XYXY", canvas_size=(h, w)
    )
    out = [tv_tensors.Mask(mask), boxes]
    if HAS_KEYPOINTS:
        out.append(tv_tensors.KeyPoints(torch.tensor([[4.0, 5.0], [25.0, 17.0]]), canvas_size=(h, w)))
    return out


# ---- presets and pipelines ------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_yields_normalised_float_image(preset: str) -> None:
    torch.manual_seed(0)
    pipeline = build_transforms("train", 32, preset)
    for seed in range(3):
        out = pipeline(_pil(seed=seed))
        assert out.shape == (3, 32, 32)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
    assert resolve_aug(preset)["preset"] == preset


@pytest.mark.parametrize("split", ["val", "test", "predict"])
def test_eval_pipeline_is_deterministic_resize_and_normalise(split: str) -> None:
    pipeline = build_transforms(split, 24, "heavy")
    assert [type(t) for t in pipeline.transforms] == [v2.ToImage, v2.Resize, v2.ToDtype, v2.Normalize]
    image = _pil()
    first, second = pipeline(image), pipeline(image)
    assert torch.equal(first, second)
    reference = F.resize(F.pil_to_tensor(image), [24, 24], antialias=True).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    reference = (reference - mean) / std
    assert torch.allclose(first, reference, atol=1e-5)


def test_hflip_override_flips_exactly() -> None:
    image = _pil(32, 32)
    flipped = build_transforms("train", 32, {"preset": "none", "hflip": 1.0})(image)
    plain = build_transforms("val", 32)(image)
    assert torch.equal(flipped, torch.flip(plain, dims=[-1]))
    assert not torch.equal(flipped, plain)


def test_preset_none_train_equals_val() -> None:
    image = _pil()
    assert torch.equal(build_transforms("train", 20, "none")(image), build_transforms("val", 20)(image))
    assert torch.equal(build_transforms("train", 20, None)(image), build_transforms("val", 20)(image))


def test_overrides_merge_and_disable() -> None:
    off = {"mixup": 0, "cutmix": None, "auto_augment": False, "color_jitter": False, "cutout": 0}
    cfg = resolve_aug({"preset": "heavy", **off})
    assert (cfg["mixup"], cfg["cutmix"], cfg["auto_augment"], cfg["color_jitter"], cfg["cutout"]) == (
        0.0,
        0.0,
        "none",
        None,
        0.0,
    )
    assert cfg["channel_dropout"] > 0  # untouched heavy value
    types = [type(t) for t in build_transforms("train", 32, cfg).transforms]
    assert v2.TrivialAugmentWide not in types and v2.ColorJitter not in types and Cutout not in types
    assert batch_mixer(cfg, 3, False) is None

    light = [type(t) for t in build_transforms("train", 32, {"random_resized_crop": False}).transforms]
    assert v2.Resize in light and v2.RandomResizedCrop not in light and v2.ColorJitter in light

    merged = resolve_aug({"preset": "light", "shift_scale_rotate": {"rotate": 5}, "vflip": True})
    assert merged["shift_scale_rotate"] == {"shift": 0.0625, "scale": 0.1, "rotate": 5.0, "p": 0.5}
    assert merged["vflip"] == 0.5
    heavy_jitter = resolve_aug({"preset": "heavy", "color_jitter": {"hue": 0.0}})["color_jitter"]
    assert heavy_jitter == {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.0}


def test_resolve_defaults_and_idempotence() -> None:
    assert resolve_aug({"hflip": 0.3})["preset"] == "light"
    assert resolve_aug(None) == resolve_aug("none")
    for preset in PRESETS:
        cfg = resolve_aug({"preset": preset, "cutout": 0.4})
        assert set(cfg) == {"preset", *OPTIONS}
        assert resolve_aug(cfg) == cfg


def test_mild_presets_grow_stronger() -> None:
    light, medium, heavy = (resolve_aug(p) for p in ("light", "medium", "heavy"))
    assert light["random_resized_crop"] > medium["random_resized_crop"] > heavy["random_resized_crop"]
    assert light["shift_scale_rotate"] is None and medium["shift_scale_rotate"]
    assert medium["auto_augment"] == "none" and heavy["auto_augment"] != "none"
    assert (heavy["mixup"], heavy["cutmix"]) == (0.2, 1.0)


@pytest.mark.parametrize(
    ("aug", "hint"),
    [
        ("medum", "did you mean: medium"),
        ({"preset": "hevy"}, "did you mean: heavy"),
        ({"hflp": 0.5}, "did you mean: hflip"),
        ({"auto_augment": "randaug"}, "randaugment"),
        ({"color_jitter": {"brightnes": 0.1}}, "did you mean: brightness"),
    ],
)
def test_unknown_names_raise_config_error_with_suggestion(aug, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        resolve_aug(aug)


@pytest.mark.parametrize(
    "aug",
    [
        {"hflip": 1.5},
        {"hflip": "yes"},
        {"random_resized_crop": -0.1},
        {"color_jitter": 0.3},
        {"shift_scale_rotate": {"p": 2}},
        {"mixup": -1},
        42,
    ],
)
def test_bad_values_raise_config_error(aug) -> None:
    with pytest.raises(ConfigError):
        resolve_aug(aug)


def test_bad_split_and_imgsz() -> None:
    with pytest.raises(ConfigError, match="did you mean: train"):
        build_transforms("trian", 32)
    with pytest.raises(ConfigError, match="imgsz"):
        build_transforms("val", 0)


@pytest.mark.parametrize("preset", PRESETS)
def test_pipelines_pickle(preset: str) -> None:
    pipeline = build_transforms("train", 32, preset)
    clone = pickle.loads(pickle.dumps(pipeline))
    image = _pil()
    torch.manual_seed(3)
    expected = pipeline(image)
    torch.manual_seed(3)
    assert torch.equal(clone(image), expected)


# ---- tv_tensors: geometric moves them, photometric leaves them ------------------------------------


def test_hflip_transforms_mask_boxes_keypoints() -> None:
    h, w = 24, 32
    image = tv_tensors.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
    targets = _targets(h, w)
    out = build_transforms("train", 32, {"preset": "none", "hflip": 1.0})((image, *targets))
    assert out[0].shape == (3, 32, 32)
    mask, boxes = out[1], out[2]
    # Resize to 32x32 scales height by 32/24 first, then the flip mirrors x.
    resized = F.resize(targets[0], [32, 32])
    assert isinstance(mask, tv_tensors.Mask) and torch.equal(mask, torch.flip(resized, dims=[-1]))
    sy = 32 / 24
    expected = torch.tensor([[20.0, 2 * sy, 29.0, 10 * sy], [2.0, 15 * sy, 12.0, 20 * sy]])
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and torch.allclose(boxes, expected)
    if HAS_KEYPOINTS:
        assert torch.allclose(out[3], F.horizontal_flip(F.resize(targets[2], [32, 32])))


def test_affine_keeps_mask_labels_integer() -> None:
    torch.manual_seed(0)
    aug = {"preset": "none", "shift_scale_rotate": {"shift": 0.1, "scale": 0.2, "rotate": 30, "p": 1.0}}
    image = tv_tensors.Image(torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8))
    mask = _targets(24, 32)[0]
    _, out = build_transforms("train", 32, aug)((image, mask))
    assert out.dtype == torch.int64 and set(out.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(out, F.resize(mask, [32, 32]))


@pytest.mark.parametrize(
    "transform",
    [
        GaussianNoise(p=1.0),
        SaltPepperNoise(amount=0.2, p=1.0),
        ChannelDropout(p=1.0),
        Cutout(p=1.0),
        v2.ColorJitter(0.5, 0.5, 0.5, 0.1),
        v2.GaussianBlur(5, sigma=2.0),
    ],
)
def test_photometric_transforms_change_image_only(transform) -> None:
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.rand(3, 24, 32) * 0.8 + 0.1)
    targets = _targets(24, 32)
    label = torch.tensor(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = transform((image, *targets, label))
    assert isinstance(out[0], tv_tensors.Image) and out[0].shape == image.shape
    assert not torch.equal(out[0], image)
    for before, after in zip((*targets, label), out[1:], strict=True):
        assert type(after) is type(before) and torch.equal(after, before)


def test_medium_pipeline_on_segmentation_sample() -> None:
    torch.manual_seed(1)
    image = tv_tensors.Image(torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8))
    out_image, out_mask, out_boxes = build_transforms("train", 16, "medium")((image, *_targets(24, 32)[:2]))
    assert out_image.shape == (3, 16, 16) and out_image.dtype == torch.float32
    assert out_mask.shape == (16, 16) and out_mask.dtype == torch.int64
    assert out_boxes.canvas_size == (16, 16)


# ---- noise transforms -----------------------------------------------------------------------------


def test_salt_pepper_fraction_matches_amount() -> None:
    torch.manual_seed(0)
    image = torch.full((3, 200, 200), 0.5)
    out = SaltPepperNoise(amount=(0.1, 0.1), p=1.0)(image)
    hit = (out != 0.5).any(dim=0)
    assert abs(hit.float().mean().item() - 0.1) < 0.01
    values = out[:, hit]
    assert torch.equal(values, values[:1].expand_as(values))  # all channels of a hit pixel agree
    assert set(values.unique().tolist()) == {0.0, 1.0}
    assert abs(values[0].mean().item() - 0.5) < 0.05  # half salt, half pepper


def test_channel_dropout_zeroes_exactly_one_channel() -> None:
    image = torch.rand(3, 8, 8) * 0.9 + 0.1
    dropped = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = ChannelDropout(p=1.0)(image)
        zero = [c for c in range(3) if torch.all(out[c] == 0)]
        assert len(zero) == 1
        kept = [c for c in range(3) if c != zero[0]]
        assert torch.equal(out[kept], image[kept])
        dropped.add(zero[0])
    assert dropped == {0, 1, 2}


def test_gaussian_noise_strength_clip_and_probability() -> None:
    torch.manual_seed(0)
    image = torch.full((3, 64, 64), 0.5)
    out = GaussianNoise(sigma=(0.05, 0.05), p=1.0)(image)
    assert abs((out - image).std().item() - 0.05) < 0.005
    assert GaussianNoise(sigma=(0.5, 0.5), p=1.0)(image).aminmax() == (torch.tensor(0.0), torch.tensor(1.0))
    assert torch.equal(GaussianNoise(p=0.0)(image), image)
    with pytest.raises(ConfigError):
        GaussianNoise(sigma=(0.2, 0.1))


def test_noise_keeps_input_kind_for_uint8_and_pil() -> None:
    torch.manual_seed(0)
    uint8 = tv_tensors.Image(torch.full((3, 16, 16), 128, dtype=torch.uint8))
    out = SaltPepperNoise(amount=0.5, p=1.0)(uint8)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8
    assert set(out.unique().tolist()) == {0, 128, 255}
    pil = PIL.Image.new("RGB", (16, 16), (128, 128, 128))
    out_pil = ChannelDropout(p=1.0)(pil)
    assert isinstance(out_pil, PIL.Image.Image)
    assert sorted(np.asarray(out_pil).reshape(-1, 3)[0].tolist()) == [0, 128, 128]


# ---- batch mixing ---------------------------------------------------------------------------------


def _constant_batch(b: int = 4) -> torch.Tensor:
    return torch.arange(1, b + 1, dtype=torch.float32)[:, None, None, None].expand(b, 3, 8, 8) / b


def test_mixup_single_label_lambda_consistency() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    mixed, soft = BatchMix(5, mixup_alpha=0.4)(images, labels)
    assert soft.shape == (4, 5) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(4))
    for i in range(4):
        lam = soft[i, labels[i]]
        assert torch.allclose(soft[i, labels[i - 1]], 1 - lam)
        assert torch.allclose(mixed[i], lam * images[i] + (1 - lam) * images[i - 1], atol=1e-6)
    assert 0 < lam < 1


def test_cutmix_lambda_is_pasted_area() -> None:
    images = _constant_batch()
    labels = torch.tensor([0, 1, 2, 3])
    for seed in range(5):
        torch.manual_seed(seed)
        mixed, soft = BatchMix(4, cutmix_alpha=1.0)(images, labels)
        assert torch.allclose(soft.sum(1), torch.ones(4))
        for i in range(4):
            from_other = (mixed[i] == images[i - 1]).float().mean()
            assert torch.allclose(soft[i, labels[i - 1]], from_other)
            assert torch.all((mixed[i] == images[i]) | (mixed[i] == images[i - 1]))


def test_multilabel_mixing_uses_the_same_lambda() -> None:
    torch.manual_seed(0)
    images = _constant_batch()
    multi_hot = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    mixed, soft = BatchMix(3, mixup_alpha=1.0, multilabel=True)(images, multi_hot)
    value, prev = images[:, 0, 0, 0], images.roll(1, 0)[:, 0, 0, 0]
    lam = (mixed[:, 0, 0, 0] - prev) / (value - prev)
    expected = lam[:, None] * multi_hot + (1 - lam[:, None]) * multi_hot.roll(1, 0)
    assert torch.allclose(soft, expected, atol=1e-5)
    with pytest.raises(ValueError, match="targets"):
        BatchMix(3, mixup_alpha=1.0, multilabel=True)(images, torch.tensor([0, 1, 2, 0]))


def test_batch_mix_is_seeded_and_uses_both_modes() -> None:
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    mixer = BatchMix(3, mixup_alpha=0.2, cutmix_alpha=1.0)
    torch.manual_seed(7)
    first = mixer(images, labels)
    torch.manual_seed(7)
    second = mixer(images, labels)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    modes = set()
    for _ in range(20):
        mixed, _ = mixer(images, labels)
        pasted = torch.all((mixed == images) | (mixed == images.roll(1, 0)))
        modes.add("cutmix" if pasted else "mixup")
    assert modes == {"cutmix", "mixup"}


def test_batch_mix_errors_and_factory() -> None:
    with pytest.raises(ConfigError):
        BatchMix(3)
    with pytest.raises(DataError, match="class index 5"):
        BatchMix(3, mixup_alpha=1.0)(torch.rand(2, 3, 4, 4), torch.tensor([0, 5]))
    mixer = batch_mixer("heavy", 7, multilabel=True)
    assert isinstance(mixer, BatchMix)
    assert (mixer.mixup_alpha, mixer.cutmix_alpha, mixer.num_classes, mixer.multilabel) == (0.2, 1.0, 7, True)
    assert batch_mixer("medium", 7, False) is None
    only_mixup = batch_mixer({"preset": "none", "mixup": 0.4}, 2, False)
    assert (only_mixup.mixup_alpha, only_mixup.cutmix_alpha) == (0.4, 0.0)


# ---- preview grid ---------------------------------------------------------------------------------


def test_preview_grid_writes_png_of_expected_size(tmp_path) -> None:
    images = [_pil(30, 50, seed=1), PIL.Image.new("RGB", (40, 40), (200, 100, 50))]
    target = tmp_path / "a" / "b" / "grid.png"
    out = preview_grid(images, build_transforms("train", 24, "medium"), target, n_aug=3, titles=["x", "y"])
    assert out == tmp_path / "a" / "b" / "grid.png"
    with PIL.Image.open(out) as grid:
        assert grid.format == "PNG"
        assert grid.size == (4 * (24 + PAD) + PAD, 2 * (24 + PAD + TITLE_HEIGHT) + PAD)
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]


def test_preview_grid_denormalises(tmp_path) -> None:
    colour = (200, 100, 50)
    image = PIL.Image.new("RGB", (20, 20), colour)
    out = preview_grid([image], build_transforms("val", 16), tmp_path / "g.png", n_aug=2)
    with PIL.Image.open(out) as grid:
        assert grid.size == (3 * (16 + PAD) + PAD, 16 + 2 * PAD)
        pixels = np.asarray(grid.convert("RGB"))
    for col in range(3):
        x0 = PAD + col * (16 + PAD)
        cell = pixels[PAD : PAD + 16, x0 : x0 + 16].reshape(-1, 3)
        assert np.abs(cell.astype(int) - np.array(colour)).max() <= 1
    with pytest.raises(ConfigError, match="titles"):
        preview_grid([image], build_transforms("val", 8), tmp_path / "h.png", titles=[])


def test_preview_dataset_is_seeded_and_leaves_global_rng_alone(tmp_path) -> None:
    data = write_synthetic(tmp_path / "shapes", n=24, imgsz=32, seed=0, fmt="imagefolder")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = preview_dataset(data, tmp_path / "p1.png", aug="heavy", imgsz=32, n=3, seed=5)
    assert torch.equal(torch.rand(1), before)
    second = preview_dataset(data, tmp_path / "p2.png", aug="heavy", imgsz=32, n=3, seed=5)
    assert first.read_bytes() == second.read_bytes()
    with PIL.Image.open(first) as grid:
        assert grid.size == (5 * (32 + PAD) + PAD, 3 * (32 + PAD + TITLE_HEIGHT) + PAD)
    other = preview_dataset(data, tmp_path / "p3.png", aug="heavy", imgsz=32, n=3, seed=6)
    assert other.read_bytes() != first.read_bytes()
