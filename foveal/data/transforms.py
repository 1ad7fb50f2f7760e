"""Augmentation presets and torchvision.transforms.v2 pipelines for every task.

``aug`` in the config is a preset name or a dict ``{"preset": "medium", <option>: <setting>, ...}``
whose options override the preset (``preset`` defaults to ``light``; ``aug: none`` or an empty
``aug:`` means no augmentation). ``0``, ``None`` or ``False`` turns an option off; ``True`` turns it
on with the default shown in brackets. A dict setting is merged over the preset's (or the default).

=====================  ==========================================================================
option                 meaning
=====================  ==========================================================================
hflip                  probability of a horizontal flip [0.5]
vflip                  probability of a vertical flip [0.5]
random_resized_crop    minimum area fraction of the random crop resized to imgsz, in (0, 1] [0.5];
                       off: plain resize to imgsz x imgsz
shift_scale_rotate     ``{shift, scale, rotate, p}``: v2.RandomAffine applied with probability p,
                       translation up to ``shift`` x size, zoom in 1 +- ``scale``, rotation up to
                       +- ``rotate`` degrees [shift 0.0625, scale 0.1, rotate 15, p 0.5]
color_jitter           ``{brightness, contrast, saturation, hue}``: v2.ColorJitter strengths
                       [0.2, 0.2, 0.2, 0.02]
gaussian_blur          probability of a Gaussian blur, kernel ~10% of imgsz, sigma 0.1-2 [0.2]
gaussian_noise         probability of Gaussian noise, sigma 0.01-0.05 [0.2]
salt_pepper            probability of salt-and-pepper noise on 0-2% of the pixels [0.2]
cutout                 probability of erasing one rectangle of 2-20% of the image (v2.RandomErasing,
                       filled with the mean colour) [0.25]
channel_dropout        probability of zeroing one colour channel [0.1]
auto_augment           none | autoaugment | randaugment | trivialaugment (torchvision policies)
                       [trivialaugment]; classification only: they reject masks and boxes
mixup                  classification: MixUp Beta(alpha, alpha) on whole batches, the value is alpha
                       [0.2]; detection tasks: probability of blending an image with another one
                       (ratio ~ Beta(32, 32)), keeping both images' objects
cutmix                 CutMix Beta(alpha, alpha) on whole batches; the value is alpha [1.0];
                       classification only
mosaic                 detection tasks: probability of replacing an image by a 2 x 2 mosaic of four
                       (see ``foveal.data.det_transforms``) [0.5]; ignored by other tasks
=====================  ==========================================================================

Presets: ``none`` = nothing; ``light`` = hflip + mild random_resized_crop + mild color_jitter;
``medium`` = light + shift_scale_rotate + blur/noise + cutout (+ mosaic 0.25 for detection); ``heavy`` =
medium stronger + trivialaugment + channel_dropout + salt_pepper + mixup 0.2 / cutmix 1.0 (+ mosaic 0.5).

Geometric transforms move ``tv_tensors.Mask`` (nearest neighbour), ``BoundingBoxes`` and ``KeyPoints``
with the image; photometric ones leave them untouched. Detection pipelines still need
``v2.SanitizeBoundingBoxes`` after cropping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from foveal.data.mixing import BatchMix
from foveal.data.noise import ChannelDropout, Cutout, GaussianNoise, SaltPepperNoise
from foveal.errors import ConfigError, check_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS = ("none", "light", "medium", "heavy")
SPLITS = ("train", "val", "test", "predict")
AUTO_AUGMENTS = ("none", "autoaugment", "randaugment", "trivialaugment")

PROB_OPTIONS = (
    "hflip",
    "vflip",
    "gaussian_blur",
    "gaussian_noise",
    "salt_pepper",
    "cutout",
    "channel_dropout",
    "mosaic",
)
ALPHA_OPTIONS = ("mixup", "cutmix")
DICT_OPTIONS = {
    "shift_scale_rotate": {"shift": 0.0625, "scale": 0.1, "rotate": 15.0, "p": 0.5},
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02},
}
_SUB_MAX = {"shift": 1.0, "scale": 0.9, "rotate": 180.0, "p": 1.0, "hue": 0.5}
OPTIONS = (
    "hflip",
    "vflip",
    "random_resized_crop",
    "shift_scale_rotate",
    "color_jitter",
    "gaussian_blur",
    "gaussian_noise",
    "salt_pepper",
    "cutout",
    "channel_dropout",
    "auto_augment",
    "mixup",
    "cutmix",
    "mosaic",
)

# Value an option takes when set to True.
_ENABLED = {
    "hflip": 0.5,
    "vflip": 0.5,
    "random_resized_crop": 0.5,
    "gaussian_blur": 0.2,
    "gaussian_noise": 0.2,
    "salt_pepper": 0.2,
    "cutout": 0.25,
    "channel_dropout": 0.1,
    "auto_augment": "trivialaugment",
    "mixup": 0.2,
    "cutmix": 1.0,
    "mosaic": 0.5,
    **DICT_OPTIONS,
}

_OFF = {key: None if key in DICT_OPTIONS else "none" if key == "auto_augment" else 0.0 for key in OPTIONS}
_LIGHT = {
    **_OFF,
    "hflip": 0.5,
    "random_resized_crop": 0.7,
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.0},  # hue costs 3x
}
_MEDIUM = {
    **_LIGHT,
    "random_resized_crop": 0.5,
    "shift_scale_rotate": {"shift": 0.0625, "scale": 0.1, "rotate": 15.0, "p": 0.5},
    "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05},
    "gaussian_blur": 0.1,
    "gaussian_noise": 0.1,
    "cutout": 0.25,
    "mosaic": 0.25,
}
_HEAVY = {
    **_MEDIUM,
    "random_resized_crop": 0.35,
    "shift_scale_rotate": {"shift": 0.1, "scale": 0.2, "rotate": 30.0, "p": 0.7},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
    "gaussian_blur": 0.2,
    "gaussian_noise": 0.2,
    "salt_pepper": 0.1,
    "cutout": 0.5,
    "channel_dropout": 0.1,
    "auto_augment": "trivialaugment",
    "mixup": 0.2,
    "cutmix": 1.0,
    "mosaic": 0.5,
}
_PRESET_VALUES = {"none": _OFF, "light": _LIGHT, "medium": _MEDIUM, "heavy": _HEAVY}


def _number(key: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (low < value if low_open else low <= value) or value > high:
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise ConfigError(f"aug option '{key}' must be a number in {bounds}, got {value!r}")
    return float(value)


def _setting(key: str, value: Any, current: Any) -> Any:
    """Validate one option's setting and return its canonical resolved value."""
    if value is None or value is False or (not isinstance(value, (str, dict)) and value == 0):
        return _OFF[key]
    if value is True:
        return _ENABLED[key]
    if key in PROB_OPTIONS:
        return _number(key, value, 0.0, 1.0)
    if key == "random_resized_crop":
        return _number(key, value, 0.0, 1.0, low_open=True)
    if key in ALPHA_OPTIONS:
        return _number(key, value, 0.0, float("inf"))
    if key == "auto_augment":
        return check_choice("auto_augment policy", str(value), AUTO_AUGMENTS)
    if not isinstance(value, dict):
        raise ConfigError(f"aug option '{key}' takes a mapping with keys {', '.join(DICT_OPTIONS[key])}")
    merged = dict(current or _ENABLED[key])
    for sub, sub_value in value.items():
        check_choice(f"{key} setting", str(sub), DICT_OPTIONS[key])
        merged[sub] = _number(f"{key}.{sub}", sub_value, 0.0, _SUB_MAX.get(sub, 1.0))
    return merged


def resolve_aug(aug: str | dict | None) -> dict:
    """Resolve a preset name or override dict into a full option dict (``preset`` + every option).

    Raises ConfigError naming unknown presets/options (with close matches) or bad values.
    Idempotent: resolving an already resolved dict returns an equal dict.
    """
    if aug is None:
        aug = "none"
    if isinstance(aug, str):
        aug = {"preset": aug}
    if not isinstance(aug, dict):
        raise ConfigError(f"aug must be a preset name ({', '.join(PRESETS)}) or a mapping, got {aug!r}")
    preset = aug.get("preset", "light")
    preset = check_choice("augmentation preset", "none" if preset is None else str(preset), PRESETS)
    resolved: dict[str, Any] = {"preset": preset, **_PRESET_VALUES[preset]}
    for key, value in aug.items():
        if key != "preset":
            check_choice("aug option", str(key), OPTIONS)
            resolved[key] = _setting(key, value, resolved[key])
    return resolved


def _blur_kernel(imgsz: int) -> int:
    return max(3, 2 * int(0.05 * imgsz) + 1)


def _auto_augment(policy: str) -> v2.Transform:
    bilinear = v2.InterpolationMode.BILINEAR
    if policy == "autoaugment":
        return v2.AutoAugment(interpolation=bilinear)
    if policy == "randaugment":
        return v2.RandAugment(interpolation=bilinear)
    return v2.TrivialAugmentWide(interpolation=bilinear)


def train_ops(cfg: dict, imgsz: int) -> tuple[list[v2.Transform], list[v2.Transform], list[v2.Transform]]:
    """Return (uint8-stage ops, float-stage ops, post-normalisation ops) of the train pipeline."""
    early: list[v2.Transform] = []
    if cfg["random_resized_crop"]:
        early.append(v2.RandomResizedCrop(imgsz, scale=(cfg["random_resized_crop"], 1.0), antialias=True))
    else:
        early.append(v2.Resize((imgsz, imgsz), antialias=True))
    if cfg["hflip"]:
        early.append(v2.RandomHorizontalFlip(cfg["hflip"]))
    if cfg["vflip"]:
        early.append(v2.RandomVerticalFlip(cfg["vflip"]))
    ssr = cfg["shift_scale_rotate"]
    if ssr and ssr["p"]:
        affine = v2.RandomAffine(
            degrees=ssr["rotate"],
            translate=(ssr["shift"], ssr["shift"]),
            scale=(1.0 - ssr["scale"], 1.0 + ssr["scale"]),
            interpolation=v2.InterpolationMode.BILINEAR,
        )
        early.append(v2.RandomApply([affine], p=ssr["p"]))
    if cfg["auto_augment"] != "none":
        early.append(_auto_augment(cfg["auto_augment"]))

    late: list[v2.Transform] = []  # on float images: colour jitter is ~2x faster there than on uint8
    jitter = cfg["color_jitter"]
    if jitter and any(jitter.values()):
        late.append(v2.ColorJitter(**jitter))
    if cfg["gaussian_blur"]:
        blur = v2.GaussianBlur(_blur_kernel(imgsz), sigma=(0.1, 2.0))
        late.append(v2.RandomApply([blur], p=cfg["gaussian_blur"]))
    if cfg["gaussian_noise"]:
        late.append(GaussianNoise(sigma=(0.01, 0.05), p=cfg["gaussian_noise"]))
    if cfg["salt_pepper"]:
        late.append(SaltPepperNoise(amount=(0.0, 0.02), p=cfg["salt_pepper"]))
    if cfg["channel_dropout"]:
        late.append(ChannelDropout(p=cfg["channel_dropout"]))

    post = [Cutout(p=cfg["cutout"], scale=(0.02, 0.2), value=0)] if cfg["cutout"] else []
    return early, late, post


def build_transforms(
    split: str,
    imgsz: int,
    aug: str | dict | None = "light",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Build the v2 pipeline for ``split``: PIL RGB / tensor / tv_tensors sample -> float32 (C, imgsz, imgsz).

    ``train`` applies ``aug`` (see the module docstring); ``val``/``test``/``predict`` only resize to
    imgsz x imgsz, convert to float in [0, 1] and normalise with ``mean``/``std``. Picklable.
    """
    check_choice("split", split, SPLITS)
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 1:
        raise ConfigError(f"imgsz must be a positive integer, got {imgsz!r}")
    to_float = v2.ToDtype(torch.float32, scale=True)
    normalize = v2.Normalize(mean=list(mean), std=list(std))
    if split != "train":
        return v2.Compose([v2.ToImage(), v2.Resize((imgsz, imgsz), antialias=True), to_float, normalize])
    early, late, post = train_ops(resolve_aug(aug), imgsz)
    return v2.Compose([v2.ToImage(), *early, to_float, *late, normalize, *post])


def batch_mixer(aug: str | dict | None, num_classes: int, multilabel: bool) -> BatchMix | None:
    """Return the batch-level MixUp/CutMix mixer for ``aug``, or None when both are off."""
    cfg = resolve_aug(aug)
    if not cfg["mixup"] and not cfg["cutmix"]:
        return None
    return BatchMix(num_classes, mixup_alpha=cfg["mixup"], cutmix_alpha=cfg["cutmix"], multilabel=multilabel)
