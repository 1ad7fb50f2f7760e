"""Segmentation models: an own small U-Net, a Global Convolutional Network, and smp/torchvision builders.

Every segmentation model maps (B, 3, H, W) float images to (B, num_classes, H, W) logits, a plain
Tensor (num_classes=1 for binary: sigmoid of one foreground map). Most architectures need H and W
divisible by their output stride (32 for 5-stage encoders, ``2**depth`` for the U-Net); rather than
reject other sizes, every model is wrapped in :class:`PadToMultiple`, which pads the input up to that
multiple (reflect padding, zeros when the image is smaller than the pad) at the bottom/right and crops
the logits back to (H, W), so any input size works and pixels keep their coordinates.

The wrapper keeps the model at ``.model`` and names its parts: ``.backbone`` (the encoder that
pretrained weights or ``--freeze backbone`` concern) and ``.head`` (the class-count-specific layers).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.errors import ConfigError, did_you_mean
from foveal.models.catalog import register, set_defaults

SMP_DEFAULT_ENCODER = "resnet18"
# smp architectures by lower-case name (DPT is left out: it needs a ViT encoder, not smp's CNN encoders).
SMP_ARCHS = (
    "unet",
    "unetplusplus",
    "fpn",
    "pspnet",
    "deeplabv3",
    "deeplabv3plus",
    "linknet",
    "manet",
    "pan",
    "upernet",
    "segformer",
)
# smp decoders that down-sample the encoder output further: PAN's feature pyramid attention pools 3x by 2.
_SMP_EXTRA_STRIDE = {"pan": 8}
# torchvision segmentation models by backbone: output stride, the input multiple that aligns every map.
_TV_PARTS = {"resnet": 8, "mobilenet_v3": 16}


class PadToMultiple(nn.Module):
    """Run ``model`` on any input size: pad (B, 3, H, W) up to multiples of ``multiple``, crop back.

    Returns (B, C, H, W) logits; a dict output (torchvision's ``{"out": ...}``) becomes its ``"out"``
    Tensor. ``head``/``backbone`` name submodules of ``model`` exposed as ``.head``/``.backbone``.
    """

    def __init__(self, model: nn.Module, multiple: int, head: str, backbone: str) -> None:
        super().__init__()
        self.model = model
        self.multiple = multiple
        self._head, self._backbone = head, backbone

    @property
    def head(self) -> nn.Module:
        """The class-count-specific output layers of the wrapped model."""
        return self.model.get_submodule(self._head)

    @property
    def backbone(self) -> nn.Module:
        """The encoder (feature extractor) of the wrapped model."""
        return self.model.get_submodule(self._backbone)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "constant"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        out = self.model(x)
        if isinstance(out, dict):
            out = out["out"]
        return out[..., :h, :w] if pad_h or pad_w else out


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(c_in, c_out), *_conv_bn_relu(c_out, c_out))


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015): (B, 3, H, W) -> (B, num_classes, H, W) logits.

    ``depth`` 2x2 max-pool stages of (conv3x3-BN-ReLU) x2 blocks with ``width * 2**i`` channels, a
    decoder that up-samples (``upsample="bilinear"`` or ``"transpose"`` for 2x2 transposed convs),
    concatenates the encoder map of the same scale and applies a block, and a 1x1 conv ``.head``.
    H and W must be multiples of ``2**depth`` (the registry's :class:`PadToMultiple` sees to it).
    """

    def __init__(self, num_classes: int, width: int = 16, depth: int = 4, upsample: str = "bilinear") -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ConfigError(f"unet width and depth must be >= 1, got width={width}, depth={depth}")
        if upsample not in ("bilinear", "transpose"):
            raise ConfigError(f"unet upsample must be 'bilinear' or 'transpose', got '{upsample}'")
        self.depth = depth
        channels = [width * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList([_double_conv(3, channels[0])])
        self.encoder.extend(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(channels[i], channels[i + 1])) for i in range(depth)
        )
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            if upsample == "bilinear":
                self.up.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
                self.decoder.append(_double_conv(channels[i + 1] + channels[i], channels[i]))
            else:
                self.up.append(nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2))
                self.decoder.append(_double_conv(2 * channels[i], channels[i]))
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class GCNBlock(nn.Module):
    """Global Convolutional Network block: (k x 1 then 1 x k) + (1 x k then k x 1) convs, summed.

    (B, c_in, h, w) -> (B, c_out, h, w); a large effective k x k kernel at O(k) cost, no BN/ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        p = k // 2
        self.left = nn.Sequential(
            nn.Conv2d(c_in, c_out, (k, 1), padding=(p, 0)), nn.Conv2d(c_out, c_out, (1, k), padding=(0, p))
        )
        self.right = nn.Sequential(
            nn.Conv2d(c_in, c_out, (1, k), padding=(0, p)), nn.Conv2d(c_out, c_out, (k, 1), padding=(p, 0))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.left(x) + self.right(x)


class BoundaryRefinement(nn.Module):
    """Boundary Refinement: x + conv3x3(ReLU(conv3x3(x))), (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)


class GCNDecoder(nn.Module):
    """GCN + BR on each feature map, then coarse-to-fine: upsample x2 (bilinear), add the next finer
    score map, BR; after the finest map, upsample + BR until the input size. A final 1x1 conv only when
    ``channels`` differs from ``num_classes``. Maps a fine-to-coarse feature list to (B, C, H, W)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        reductions: Sequence[int],
        num_classes: int,
        channels: int,
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        self.gcn = nn.ModuleList(GCNBlock(c, channels, k) for c, k in zip(in_channels, kernels, strict=True))
        self.br = nn.ModuleList(BoundaryRefinement(channels) for _ in in_channels)
        self.fuse = nn.ModuleList(BoundaryRefinement(channels) for _ in in_channels[1:])
        self.final = nn.ModuleList(
            BoundaryRefinement(channels) for _ in range(max(reductions[0].bit_length() - 1, 0))
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1) if channels != num_classes else nn.Identity()

    def forward(self, features: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        scores = [br(gcn(f)) for gcn, br, f in zip(self.gcn, self.br, features, strict=True)]
        x = scores[-1]
        for fuse, score in zip(reversed(self.fuse), reversed(scores[:-1]), strict=True):
            x = fuse(F.interpolate(x, size=score.shape[-2:], mode="bilinear", align_corners=False) + score)
        for br in self.final:
            target = (min(x.shape[-2] * 2, size[0]), min(x.shape[-1] * 2, size[1]))
            x = br(F.interpolate(x, size=target, mode="bilinear", align_corners=False))
        return self.classifier(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


class GCN(nn.Module):
    """Global Convolutional Network (Peng et al., "Large Kernel Matters", CVPR 2017).

    (B, 3, H, W) -> (B, num_classes, H, W) logits. ``backbone``: a timm model name, built with
    ``features_only=True`` and random weights; its last four feature maps (strides 4-32 for ResNets)
    each pass a GCN block and a Boundary Refinement block, and :class:`GCNDecoder` fuses them from
    coarse to fine. ``kernel_size``: k for every level, or one per level (fine to coarse); the paper
    uses k=15 on 512 px images, whose coarsest map is 16 px; 7 suits ~224 px inputs (smaller maps just
    see zero padding; pass e.g. ``(7, 5, 3, 3)`` for small images). ``channels``: width of the score
    maps; None as in the paper (``num_classes`` maps, no classifier), a larger value (e.g. 32) gives
    binary/few-class tasks more decoder capacity. ``.backbone`` and ``.head`` (the decoder) split it.

    To start from a foveal-trained or local backbone: train or download a timm classifier of the same
    name, then ``model.backbone.load_state_dict(state_dict, strict=False)`` (timm's feature models keep
    the classifier's parameter names, minus the head), or build with
    ``timm.create_model(name, features_only=True, pretrained=True, pretrained_cfg_overlay={"file": path})``.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet18",
        kernel_size: int | Sequence[int] = 7,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            hint = did_you_mean(backbone, timm.list_models())
            raise ConfigError(f"unknown gcn backbone '{backbone}'{hint}; use a timm model name")
        try:
            self.backbone = timm.create_model(
                backbone, features_only=True, pretrained=False, out_indices=(-4, -3, -2, -1)
            )
        except RuntimeError as err:
            raise ConfigError(
                f"gcn backbone '{backbone}' cannot give multi-scale features ({err}); use e.g. resnet18"
            ) from err
        info = self.backbone.feature_info
        kernels = [kernel_size] * 4 if isinstance(kernel_size, int) else list(kernel_size)
        if len(kernels) != 4 or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(
                f"gcn kernel_size must be an odd int or 4 odd ints (fine to coarse), got {kernel_size}"
            )
        self.reduction = max(info.reduction())
        self.head = GCNDecoder(
            info.channels(), info.reduction(), num_classes, channels or num_classes, kernels
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x), x.shape[-2:])


@register(
    "unet", "segment", "small U-Net (width 16, depth 4, bilinear up-sampling): fast from scratch on CPU"
)
def unet(num_classes: int, **options) -> PadToMultiple:
    """Own :class:`UNet` (options: width, depth, upsample), padded to multiples of ``2**depth``."""
    model = UNet(num_classes, **options)
    return PadToMultiple(model, 2**model.depth, head="head", backbone="encoder")


@register(
    "gcn", "segment", "Global Convolutional Network (Large Kernel Matters) on a timm backbone (resnet18)"
)
def gcn(num_classes: int, **options) -> PadToMultiple:
    """Own :class:`GCN` (options: backbone, kernel_size, channels), padded to its largest stride."""
    model = GCN(num_classes, **options)
    return PadToMultiple(model, model.reduction, head="head", backbone="backbone")


def smp_encoders() -> list[str]:
    """Encoder names of segmentation_models_pytorch (``tu-<timm name>`` works too)."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def parse_smp_name(bare: str) -> tuple[str, str]:
    """'Unet' -> ('unet', 'resnet18'), 'fpn:resnet34' -> ('fpn', 'resnet34'); else ConfigError."""
    arch, _, encoder = bare.partition(":")
    arch, encoder = arch.lower(), encoder or SMP_DEFAULT_ENCODER
    if arch not in SMP_ARCHS:
        hint = did_you_mean(f"smp:{arch}", [f"smp:{a}" for a in SMP_ARCHS])
        raise ConfigError(
            f"unknown smp architecture in 'smp:{bare}'{hint}; choose one of: {', '.join(SMP_ARCHS)}"
        )
    if encoder.startswith("tu-"):
        import timm

        if timm.is_model(encoder[3:]):
            return arch, encoder
    if encoder not in smp_encoders():
        hint = did_you_mean(f"smp:{arch}:{encoder}", [f"smp:{arch}:{e}" for e in smp_encoders()])
        raise ConfigError(
            f"unknown smp encoder '{encoder}' in 'smp:{bare}'{hint}; see `foveal models 'smp:{arch}:*'` "
            f"or use tu-<timm model>"
        )
    return arch, encoder


def _check_options(name: str, builder: Callable, options: dict) -> None:
    """Raise ConfigError for options that ``builder`` would silently swallow in its ``**kwargs``."""
    params = inspect.signature(builder).parameters
    known = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for option in options:
        if option not in known:
            raise ConfigError(f"model '{name}' does not take option '{option}'{did_you_mean(option, known)}")


def build_smp(bare: str, num_classes: int, **options) -> PadToMultiple:
    """smp model ``<arch>[:<encoder>]`` with random weights (``encoder_weights=None``); options go to smp."""
    import segmentation_models_pytorch as smp

    arch, encoder = parse_smp_name(bare)
    if not encoder.startswith("tu-"):  # smp passes unknown options to timm encoders only, else ignores them
        _check_options(f"smp:{bare}", smp.MODEL_ARCHITECTURES_MAPPING[arch], options)
    model = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, classes=num_classes, **options)
    multiple = model.encoder.output_stride * _SMP_EXTRA_STRIDE.get(arch, 1)
    return PadToMultiple(model, multiple, head="segmentation_head", backbone="encoder")


def build_tv(bare: str, num_classes: int, **options) -> PadToMultiple:
    """torchvision segmentation model ``bare`` with random weights, no aux head; returns Tensor logits."""
    import torchvision

    _check_options(f"tv:{bare}", torchvision.models.get_model_builder(bare), options)
    options = {"aux_loss": False, **options}
    model = torchvision.models.get_model(
        bare, weights=None, weights_backbone=None, num_classes=num_classes, **options
    )
    multiple = next(m for key, m in _TV_PARTS.items() if key in bare)
    return PadToMultiple(model, multiple, head="classifier", backbone="backbone")


set_defaults("segment", [(128, "unet"), (None, "smp:unet:resnet18")])
