"""Image decoding: any PIL-readable file to an RGB PIL image, with clear errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from foveal.errors import BadImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has a known image extension (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16-bit and 32-bit integer images (modes I;16, I) are scaled by their type's range, not clipped;
    float images (F) are taken as [0, 1]; palette and RGBA images are composited on black.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        array = np.clip(array.astype(np.float64) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode == "F":
        array = np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from its header; BadImageError naming the file otherwise."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadImageError(f"{path}: not a readable image ({err}); replace or remove it") from err


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully into an RGB image; raise BadImageError naming the file otherwise."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(
                f"{path}: the file is empty (0 bytes); replace or remove it, or pass --on-bad-image skip"
            )
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except BadImageError:
        raise
    except FileNotFoundError as err:
        raise BadImageError(f"{path}: file not found; check the path") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadImageError(
            f"{path}: not a readable image ({err}); replace or remove it, or pass --on-bad-image skip"
        ) from err
