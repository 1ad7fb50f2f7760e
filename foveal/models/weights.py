"""Pretrained weights into registry models, the classifier head, and backbone freezing.

``load_pretrained`` copies every tensor whose name and shape match (transfer learning: a head for
another class count keeps its fresh initialisation); ``set_backbone_frozen`` and ``freeze_bn_stats``
train only the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from foveal.errors import CheckpointError, ConfigError, DataError

# Key prefixes of wrapped models: Lightning module attribute, DDP, torch.compile; on ties the first wins.
_PREFIXES = ("", "model.", "module.", "_orig_mod.", "model.module.", "model._orig_mod.", "ema.module.")
# Prefixes of our own wrappers to drop from the model's names (TorchvisionDetector keeps its model at .model).
_OWN_PREFIXES = ("", "model.")


def load_pretrained(model: nn.Module, source: str, model_name: str) -> dict[str, list[str]]:
    """Copy the weights of ``source`` into ``model`` where names and shapes match.

    ``source``: a foveal/Lightning checkpoint (``state_dict`` with ``model.``-prefixed keys), a
    ``torch.save``'d state dict (optionally under ``state_dict``/``model``), a ``.safetensors`` file,
    or ``"hub"``: official torchvision/timm weights of ``tv:``/``timm:`` model ``model_name``
    (downloads; needs internet). Returns ``{"loaded": [...], "skipped": [...], "unused": [...]}``:
    state-dict entries copied, model entries left at their fresh values (missing or another shape,
    e.g. the head for another class count), and source entries that matched nothing. A missing file
    raises DataError; an unreadable one, or one matching nothing outside the head, CheckpointError.
    """
    if source == "hub":
        weights, prefixes = _hub_state_dict(model, model_name), _PREFIXES
        where = f"hub weights of {model_name}"
    else:
        weights, prefixes = _read_state_dict(Path(source))
        where = f"'{source}'"
    own = model.state_dict()
    # source name = prefix + own name, less a wrapper prefix of ours (torchvision detectors are wrapped
    # at ``.model``, so a plain torchvision state dict lacks the leading "model.")
    pairs = [(strip, add) for strip in _OWN_PREFIXES for add in prefixes]
    strip, prefix = max(pairs, key=lambda pair: _count_matching(own, weights, *pair))
    source = {name: prefix + name.removeprefix(strip) for name in own if name.startswith(strip)}
    matched = {name: weights[key] for name, key in source.items() if _fits(own[name], weights.get(key))}
    if not set(matched) - _head_names(model):
        raise CheckpointError(
            f"no weights in {where} match model '{model_name}' outside its head (names or "
            f"shapes differ); pass a checkpoint of the same architecture"
        )
    model.load_state_dict(matched, strict=False)
    used = {source[name] for name in matched}
    return {
        "loaded": list(matched),
        "skipped": [n for n in own if n not in matched],
        "unused": [k for k in weights if k not in used],
    }


def _head_names(model: nn.Module) -> set[str]:
    """State-dict names of the classifier head (empty when none is found)."""
    try:
        head = head_module(model)
    except ConfigError:
        return set()
    prefix = next(name for name, module in model.named_modules() if module is head)
    return {f"{prefix}.{name}" if prefix else name for name in head.state_dict()}


def _fits(own: Tensor, theirs: object) -> bool:
    return isinstance(theirs, Tensor) and theirs.shape == own.shape


def _count_matching(own: Mapping[str, Tensor], weights: Mapping[str, object], strip: str, prefix: str) -> int:
    return sum(
        _fits(tensor, weights.get(prefix + name.removeprefix(strip)))
        for name, tensor in own.items()
        if name.startswith(strip)
    )


def _read_state_dict(path: Path) -> tuple[dict[str, object], tuple[str, ...]]:
    """A flat {name: tensor} dict from a checkpoint, state-dict or safetensors file, and the key prefixes
    to try, preferred first (the EMA weights of a foveal checkpoint trained with EMA)."""
    if not path.is_file():
        raise DataError(
            f"pretrained weights file '{path}' does not exist; pass a .ckpt/.pt/.pth/.safetensors "
            f"file or 'hub'"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ConfigError(
                f"reading '{path}' needs the safetensors package: pip install safetensors"
            ) from err
        try:
            return dict(load_file(str(path), device="cpu")), _PREFIXES
        except Exception as err:  # safetensors raises its own SafetensorError for bad files
            raise CheckpointError(f"'{path}' is not a readable safetensors file: {err}") from err
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come as several types (UnpicklingError, RuntimeError, ...)
        raise CheckpointError(
            f"'{path}' is not a readable weights file ({type(err).__name__}); save "
            f"model.state_dict() with torch.save or pass a foveal checkpoint"
        ) from err
    prefixes = _PREFIXES
    if (
        isinstance(data, Mapping)
        and isinstance(data.get("foveal"), Mapping)
        and data["foveal"].get("weights") == "ema"
    ):
        prefixes = ("ema.module.", *_PREFIXES)
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping):
        raise CheckpointError(f"'{path}' holds a {type(data).__name__}, not a state dict of weights")
    return dict(data), prefixes


def _hub_state_dict(model: nn.Module, model_name: str) -> dict[str, object]:
    """Official ImageNet weights of ``tv:``/``timm:`` ``model_name`` (downloaded by torchvision/timm)."""
    prefix, _, bare = model_name.partition(":")
    if prefix == "tv":
        import torchvision

        weights = torchvision.models.get_model_weights(bare).DEFAULT
        if hasattr(model, "transform_input"):  # GoogLeNet/Inception weights expect it, as torchvision sets
            model.transform_input = True
        return dict(weights.get_state_dict(progress=True))
    if prefix == "timm":
        import timm

        return dict(timm.create_model(bare, pretrained=True).state_dict())
    raise ConfigError(
        f"'hub' weights exist only for tv:/timm: models, not '{model_name}'; pass a checkpoint file"
    )


def head_module(model: nn.Module, num_classes: int | None = None) -> nn.Module:
    """The final classifier of ``model``.

    timm models: ``get_classifier()``; own models: ``.head``; torchvision (and others): the last
    ``nn.Linear`` or 1x1 ``nn.Conv2d`` in module order (with ``num_classes`` outputs when given),
    e.g. ``resnet.fc``, ``vgg.classifier[6]``, ``vit.heads.head``, ``squeezenet.classifier[1]``.
    """
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    if isinstance(getattr(model, "head", None), nn.Linear):
        return model.head
    found = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            size = module.out_features
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            size = module.out_channels
        else:
            continue
        if num_classes is None or size == num_classes:
            found = module
    if found is None:
        raise ConfigError(
            f"cannot find the classifier head of {type(model).__name__}: no Linear or 1x1 Conv2d"
            + (f" with {num_classes} outputs" if num_classes is not None else "")
        )
    return found


def set_backbone_frozen(model: nn.Module, frozen: bool) -> int:
    """Set ``requires_grad = not frozen`` on the backbone: ``model.backbone`` where the model names one
    (segmentation, detection and keypoint models: the decoder/heads keep training), else every
    parameter outside :func:`head_module` (classifiers).

    Returns the number of parameter elements frozen afterwards (0 after unfreezing). Call
    :func:`freeze_bn_stats` after every ``model.train()`` to also keep BatchNorm statistics fixed.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        for param in model.parameters():
            param.requires_grad_(True)
        for param in backbone.parameters():
            param.requires_grad_(not frozen)
    else:
        head = {id(p) for p in head_module(model).parameters()}
        for param in model.parameters():
            if id(param) not in head:
                param.requires_grad_(not frozen)
    if frozen:
        freeze_bn_stats(model)
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)


def freeze_bn_stats(model: nn.Module) -> int:
    """Put every BatchNorm layer whose parameters are all frozen in eval mode (running statistics stay
    fixed). ``model.train()`` undoes it, so call this at the start of every training epoch. Returns the
    number of layers set to eval."""
    count = 0
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if (
            isinstance(module, nn.modules.batchnorm._BatchNorm)
            and params
            and not any(p.requires_grad for p in params)
        ):
            module.eval()
            count += 1
    return count
