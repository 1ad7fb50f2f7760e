"""Image-only v2 transforms: Gaussian noise, salt-and-pepper noise, channel dropout, cutout.

Each acts on images only (``tv_tensors.Image``, PIL images, and plain tensors by torchvision's
rule: a plain tensor is treated as the image only when the sample holds no explicit image).
Masks, bounding boxes, keypoints and labels pass through untouched. The pixel maths runs on
float images in [0, 1] (shape ``[..., C, H, W]``); uint8 tensors and PIL images are converted to
that range and back, so place these after ``ToDtype(torch.float32, scale=True)`` to avoid the
round trip. Randomness comes from torch's global RNG, so ``torch.manual_seed`` makes them repeatable.
"""

from __future__ import annotations

from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from foveal.errors import ConfigError


def _is_pure_tensor(inpt: Any) -> bool:
    return isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)


def _check_prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}: p must be a probability in [0, 1], got {p}")
    return float(p)


def _check_range(
    name: str, value: float | tuple[float, float], low: float, high: float
) -> tuple[float, float]:
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not low <= lo <= hi <= high:
        raise ConfigError(f"{name}: expected a value or (min, max) range inside [{low}, {high}], got {value}")
    return float(lo), float(hi)


class _ImageOnly(v2.Transform):
    """Base: applied with probability ``p`` per call, to images only, on float [0, 1] pixels."""

    _transformed_types = (tv_tensors.Image, PIL.Image.Image, _is_pure_tensor)

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = _check_prob(type(self).__name__, p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"apply": bool(torch.rand(()) < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        if isinstance(inpt, PIL.Image.Image):
            image = F.to_dtype(F.pil_to_tensor(inpt), torch.float32, scale=True)
            return F.to_pil_image(F.to_dtype(self._apply(image, params), torch.uint8, scale=True))
        image = inpt.as_subclass(torch.Tensor)
        out = self._apply(F.to_dtype(image, torch.float32, scale=True), params)
        out = F.to_dtype(out, image.dtype, scale=True)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def _apply(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """Return a new float image ``[..., C, H, W]`` in [0, 1]."""
        raise NotImplementedError


class GaussianNoise(_ImageOnly):
    """Add zero-mean Gaussian noise with a standard deviation drawn from ``sigma`` = (min, max), then clip.

    torchvision's ``v2.GaussianNoise`` takes one fixed sigma and no probability, hence this one.
    """

    def __init__(self, sigma: float | tuple[float, float] = (0.01, 0.05), p: float = 0.5) -> None:
        super().__init__(p)
        self.sigma = _check_range("GaussianNoise sigma", sigma, 0.0, 1.0)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        sigma = float(torch.empty(()).uniform_(*self.sigma))
        return {**super().make_params(flat_inputs), "sigma": sigma}

    def _apply(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return (image + params["sigma"] * torch.randn_like(image)).clamp_(0.0, 1.0)


class SaltPepperNoise(_ImageOnly):
    """Set a fraction ``amount`` = (min, max) of pixel positions to white or black (half each on average).

    A hit pixel changes in all channels, so the fraction of changed positions is ``amount``.
    """

    def __init__(self, amount: float | tuple[float, float] = (0.0, 0.02), p: float = 0.5) -> None:
        super().__init__(p)
        self.amount = _check_range("SaltPepperNoise amount", amount, 0.0, 1.0)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        amount = float(torch.empty(()).uniform_(*self.amount))
        return {**super().make_params(flat_inputs), "amount": amount}

    def _apply(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        shape = (*image.shape[:-3], 1, *image.shape[-2:])
        hit = torch.rand(shape, device=image.device) < params["amount"]
        salt = (torch.rand(shape, device=image.device) < 0.5).to(image.dtype)
        return torch.where(hit, salt, image)


class ChannelDropout(_ImageOnly):
    """Set one randomly chosen colour channel to ``fill`` (in [0, 1] units); single-channel images pass."""

    def __init__(self, p: float = 0.5, fill: float = 0.0) -> None:
        super().__init__(p)
        self.fill = float(fill)

    def _apply(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        channels = image.shape[-3]
        out = image.clone()
        if channels > 1:
            out[..., int(torch.randint(channels, ())), :, :] = self.fill
        return out


class Cutout(v2.RandomErasing):
    """``v2.RandomErasing`` restricted to images: masks, boxes and keypoints pass through silently.

    Plain RandomErasing also passes them through, but warns on every call.
    """

    _transformed_types = (tv_tensors.Image, PIL.Image.Image, _is_pure_tensor)
