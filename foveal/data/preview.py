"""Preview augmentations: a PNG grid of each image beside a few augmented versions of it (of a list of
images, or of a classification dataset's training split)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageOps
import torch
from torchvision.transforms.v2 import functional as F

from foveal.atomic import atomic_write
from foveal.data.imageio import load_rgb
from foveal.data.loading import load_classification
from foveal.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from foveal.errors import ConfigError, DataError

PAD = 4
TITLE_HEIGHT = 14


def _to_pil(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> PIL.Image.Image:
    """De-normalise a float (C, H, W) tensor (C = 1 or 3) into an RGB PIL image."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise ConfigError(f"preview transform must return a (C, H, W) tensor, got {type(image).__name__}")
    image = image.detach().float().cpu()
    mean_t = torch.tensor(mean, dtype=torch.float32)[: image.shape[0], None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[: image.shape[0], None, None]
    image = (image * std_t + mean_t).clamp(0.0, 1.0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return F.to_pil_image(F.to_dtype(image, torch.uint8, scale=True))


def preview_grid(
    images: list[PIL.Image.Image],
    transform: Callable[[PIL.Image.Image], torch.Tensor],
    out: str | Path,
    n_aug: int = 4,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    titles: list[str] | None = None,
) -> Path:
    """Write a PNG grid: one row per image, its original (letterboxed) then ``n_aug`` augmented versions.

    ``transform`` maps a PIL image to a normalised float (C, H, W) tensor; ``mean``/``std`` undo the
    normalisation. Each cell is H x W (the transform's output size) with ``PAD`` px gaps around cells;
    with ``titles`` (one per image) each row gets a ``TITLE_HEIGHT`` px caption band above it.
    PNG size: width ``(1 + n_aug) * (W + PAD) + PAD``, height ``len(images) * (H + PAD + band) + PAD``.
    Parent folders are created and the file is written atomically. Returns the output path.
    """
    if not images:
        raise ConfigError("preview_grid needs at least one image")
    if n_aug < 0:
        raise ConfigError(f"n_aug must be >= 0, got {n_aug}")
    if titles is not None and len(titles) != len(images):
        raise ConfigError(f"preview_grid got {len(titles)} titles for {len(images)} images; give one each")
    rows = [[_to_pil(transform(image), mean, std) for _ in range(n_aug)] for image in images]
    cell_w, cell_h = rows[0][0].size if n_aug else images[0].size
    band = TITLE_HEIGHT if titles is not None else 0
    grid = PIL.Image.new(
        "RGB", ((1 + n_aug) * (cell_w + PAD) + PAD, len(images) * (cell_h + PAD + band) + PAD), "white"
    )
    draw = PIL.ImageDraw.Draw(grid)
    for r, (image, augmented) in enumerate(zip(images, rows, strict=True)):
        top = PAD + r * (cell_h + PAD + band)
        if titles is not None:
            draw.text((PAD, top), str(titles[r]), fill="black")
        original = PIL.ImageOps.pad(image.convert("RGB"), (cell_w, cell_h), color=(0, 0, 0))
        for c, cell in enumerate([original, *augmented]):
            grid.paste(cell.resize((cell_w, cell_h)), (PAD + c * (cell_w + PAD), top + band))

    return atomic_write(out, lambda handle: grid.save(handle, format="PNG"))


def preview_dataset(
    data: str | Path,
    out: str | Path,
    aug: str | dict | None = "light",
    imgsz: int = 64,
    n: int = 6,
    seed: int = 0,
) -> Path:
    """Write a preview grid of ``n`` seeded random training images of a classification dataset.

    Each row shows one image (titled with its class names) and 4 versions from the ``train``
    pipeline for ``aug``; the same seed gives the same PNG. Returns the output path.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    dataset = load_classification(data, seed=seed)
    samples = dataset.split("train")
    if not samples:
        raise DataError(f"{data}: no training images to preview")
    picked = random.Random(seed).sample(samples, min(n, len(samples)))
    labels = [s.label if isinstance(s.label, list) else [] if s.label is None else [s.label] for s in picked]
    titles = [", ".join(dataset.class_names[i] for i in label) for label in labels]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images = [load_rgb(s.path) for s in picked]
        return preview_grid(images, build_transforms("train", imgsz, aug), out, titles=titles)
