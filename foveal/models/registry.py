"""One model registry: name -> builder ``(num_classes, **kwargs) -> nn.Module``, per model family.

A model family is the string models register under (``classify``, ``segment``, ``detect``, ``instance``,
``pose``: the task that builds them); :func:`families` lists them, derived from the registered models and
the prefix providers' table (see ``foveal.models.catalog``, where the table lives). The ``task``
parameters below name a family.

Names:
- own names (no prefix), e.g. ``smallresnet``: builders registered with :func:`register` by the module
  that defines them (``foveal.models.small`` for classification, ``segmentation``, ``centernet``,
  ``detection``; see :data:`PROVIDERS`);
- ``tv:<name>``: a torchvision model of the task: classification (``tv:resnet18``), segmentation
  (``tv:deeplabv3_resnet50``) or detection/instance/pose (``tv:fasterrcnn_mobilenet_v3_large_fpn``,
  ``tv:maskrcnn_resnet50_fpn``, ``tv:keypointrcnn_resnet50_fpn``; see ``foveal.models.detection``);
- ``timm:<name>``: any timm model (classify), e.g. ``timm:efficientnet_b0``;
- ``smp:<arch>[:<encoder>]``: a segmentation_models_pytorch model (segment), e.g. ``smp:unet:resnet34``.
All are built with random weights (nothing downloads); see ``foveal.models.weights`` for pretrained ones.
"""

from __future__ import annotations

import fnmatch
import importlib

from torch import nn

from foveal.errors import ConfigError, check_choice, did_you_mean
from foveal.models import catalog
from foveal.models.catalog import PREFIX_FAMILIES, Builder, Entry, register, set_defaults

__all__ = [
    "PREFIXES",
    "PREFIX_FAMILIES",
    "PROVIDERS",
    "Builder",
    "Entry",
    "build_model",
    "check_model_name",
    "default_model",
    "families",
    "list_models",
    "register",
    "set_defaults",
]

PREFIXES = tuple(PREFIX_FAMILIES)

# Modules whose import registers own builders (with ``foveal.models.catalog.register``); imported on the
# first registry lookup. A module that defines its own models adds its module name here.
PROVIDERS = (
    "foveal.models.small",
    "foveal.models.segmentation",
    "foveal.models.centernet",
    "foveal.models.detection",
)

_loaded = False

# torchvision builders that need arguments to return a plain (B, N) Tensor in training and not to warn.
_TV_EXTRA: dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _load_providers() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in PROVIDERS:
            importlib.import_module(module)


def families() -> list[str]:
    """The model families (``classify``, ``segment``, ...): those of the prefix providers and of every
    registered own model (see ``foveal.models.catalog``), after importing the providers."""
    _load_providers()
    return catalog.families()


def _tv_names(task: str = "classify") -> list[str]:
    """torchvision's builders of ``task``: classification, segmentation or detection (none for others)."""
    import torchvision

    if task in ("detect", "instance", "pose"):
        from foveal.models.detection import tv_detection_names

        return tv_detection_names(task)

    modules = {"classify": torchvision.models, "segment": torchvision.models.segmentation}
    return sorted(torchvision.models.list_models(module=modules[task])) if task in modules else []


def _smp_rows(pattern: str | None) -> list[tuple[str, str, str]]:
    """``smp:<arch>`` rows; ``smp:<arch>:<encoder>`` rows too when ``pattern`` names an encoder."""
    from foveal.models.segmentation import SMP_ARCHS, SMP_DEFAULT_ENCODER, smp_encoders

    encoders = smp_encoders()
    rows = [
        (
            f"smp:{a}",
            "segment",
            f"smp {a}, {SMP_DEFAULT_ENCODER} encoder (smp:{a}:<encoder>: {len(encoders)} encoders)",
        )
        for a in SMP_ARCHS
        if _matches(f"smp:{a}", pattern)
    ]
    if pattern is not None and ":" in _split(pattern)[1]:
        rows += [
            (f"smp:{a}:{e}", "segment", f"smp {a}, {e} encoder")
            for a in SMP_ARCHS
            for e in encoders
            if _matches(f"smp:{a}:{e}", pattern)
        ]
    return rows


def _timm_names(pattern: str = "") -> list[str]:
    import timm

    return timm.list_models(pattern) if pattern else timm.list_models()


def _split(name: str) -> tuple[str, str]:
    """'tv:resnet18' -> ('tv', 'resnet18'); 'smallresnet' -> ('', 'smallresnet')."""
    prefix, sep, rest = name.partition(":")
    return (prefix, rest) if sep else ("", name)


def _prefix_names(prefix: str, task: str = "classify") -> list[str]:
    return [f"{prefix}:{n}" for n in (_tv_names(task) if prefix == "tv" else _timm_names())]


def _unknown(name: str, task: str, choices: list[str]) -> ConfigError:
    elsewhere = sorted(t for t, n in catalog.OWN if n == name and t != task)
    if elsewhere:
        return ConfigError(
            f"model '{name}' is a {elsewhere[0]} model, not a {task} model; see `foveal models --task {task}`"
        )
    return ConfigError(
        f"unknown {task} model '{name}'{did_you_mean(name, choices)}; see `foveal models --task {task}`"
    )


def check_model_name(name: str, task: str = "classify") -> tuple[str, str]:
    """Raise ConfigError (with close matches) unless ``name`` is a ``task`` model; return (prefix, bare)."""
    check_choice("task", task, families())
    prefix, bare = _split(name)
    if not prefix:
        if (task, name) not in catalog.OWN:
            raise _unknown(name, task, [n for t, n in catalog.OWN if t == task])
        return prefix, bare
    if prefix not in PREFIXES:
        raise ConfigError(
            f"unknown model prefix '{prefix}:' in '{name}'{did_you_mean(prefix, PREFIXES)}; "
            f"use tv:<name>, timm:<name>, smp:<arch>[:<encoder>] or an own name"
        )
    if task not in PREFIX_FAMILIES[prefix]:
        raise ConfigError(
            f"'{name}': {prefix}: models are for task {' or '.join(PREFIX_FAMILIES[prefix])}; for task "
            f"{task} choose one of `foveal models --task {task}`"
        )
    if prefix == "tv" and bare not in _tv_names(task):
        raise _unknown(name, task, _prefix_names("tv", task))
    if prefix == "smp":
        from foveal.models.segmentation import parse_smp_name

        parse_smp_name(bare)
    if prefix == "timm":
        import timm

        if not timm.is_model(bare):
            raise _unknown(name, task, _prefix_names("timm"))
    return prefix, bare


def build_model(name: str, num_classes: int, task: str = "classify", **kwargs) -> nn.Module:
    """Build model ``name`` for ``task`` with random weights and ``num_classes`` outputs.

    Classification models map (B, 3, H, W) float images to (B, num_classes) logits (a plain Tensor,
    also in training); segmentation models map them to (B, num_classes, H, W) logits for any H, W
    (see ``foveal.models.segmentation``). ``kwargs`` go to the builder (e.g. ``width=16`` for ``smallresnet``,
    ``drop_rate=0.1`` for timm). Unknown names raise ConfigError with close matches.
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    prefix, bare = check_model_name(name, task)
    try:
        if task == "segment" and prefix in ("tv", "smp"):
            from foveal.models import segmentation

            return (segmentation.build_tv if prefix == "tv" else segmentation.build_smp)(
                bare, num_classes, **kwargs
            )
        if prefix == "tv" and task in ("detect", "instance", "pose"):
            from foveal.models.detection import build_tv_detection

            return build_tv_detection(bare, num_classes, **kwargs)
        if prefix == "tv":
            import torchvision

            options = {**_TV_EXTRA.get(bare, {}), **kwargs}
            return torchvision.models.get_model(bare, weights=None, num_classes=num_classes, **options)
        if prefix == "timm":
            import timm

            options = {"in_chans": 3, **kwargs}
            return timm.create_model(bare, pretrained=False, num_classes=num_classes, **options)
        return catalog.OWN[(task, name)].builder(num_classes, **kwargs)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise ConfigError(f"model '{name}' does not take option {str(err).rsplit(' ', 1)[-1]}") from err
        raise


def _matches(name: str, pattern: str | None) -> bool:
    """fnmatch ``pattern`` (case-insensitive) against the full name or the name without its prefix."""
    if pattern is None:
        return True
    pattern = pattern.lower()
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(_split(name)[1], pattern)


def list_models(task: str | None = None, pattern: str | None = None) -> list[tuple[str, str, str]]:
    """Models the registry can build, as (name, task, description) rows, own names first.

    ``task`` filters by model family (``foveal.tasks.list_models`` maps a task to it); ``pattern`` is an
    fnmatch pattern (``resnet*``, ``tv:vit*``,
    ``timm:efficientnet*``, ``smp:unet:*``) matched against the full name or the name without prefix.
    timm's ~1,300 names are listed only when a pattern is given; otherwise one row counts them. smp
    models are listed per architecture; with an encoder in the pattern (``smp:fpn:res*``) per encoder.
    """
    if task is not None:
        check_choice("task", task, families())
    _load_providers()
    rows = [
        (n, t, e.description)
        for (t, n), e in sorted(catalog.OWN.items(), key=lambda kv: kv[0][1])
        if (task is None or t == task) and _matches(n, pattern)
    ]
    prefix = _split(pattern)[0] if pattern else ""
    for tv_task in PREFIX_FAMILIES["tv"]:
        if task in (None, tv_task) and prefix in ("", "tv"):
            rows += [
                (f"tv:{n}", tv_task, f"torchvision {n}")
                for n in _tv_names(tv_task)
                if _matches(f"tv:{n}", pattern)
            ]
    if task in (None, "segment") and prefix in ("", "smp"):
        rows += _smp_rows(pattern)
    if task not in (None, "classify"):
        return rows
    if pattern is None:
        rows.append(
            (
                "timm:<name>",
                "classify",
                f"{len(_timm_names())} timm models; give a pattern to list them, e.g. 'timm:efficientnet*'",
            )
        )
    elif prefix in ("", "timm"):
        rows += [(f"timm:{n}", "classify", f"timm {n}") for n in _timm_names(_split(pattern.lower())[1])]
    return rows


def default_model(task: str, imgsz: int) -> str:
    """The default model name for ``task`` at image size ``imgsz`` (training from scratch, CPU first).

    classify: ``smallresnet`` up to 96 px: measured on the 64 px shapes data it reaches ~90%
    validation accuracy in 8 epochs from scratch (AdamW 3e-3, no augmentation) and trains a batch of 64
    in ~100 ms (~75 ms channels_last) on 2 CPU threads, where ``tv:resnet18`` takes ~550 ms for a
    similar accuracy. Above 96 px ``tv:resnet18``: its stride-4 ImageNet stem suits larger images,
    BatchNorm'd plain convolutions train robustly from scratch and run faster on CPU than depthwise
    nets (EfficientNet/MobileNet) of similar accuracy, and ``--pretrained hub`` gives ImageNet weights.
    """
    check_choice("task", task, families())
    for limit, name in catalog.DEFAULTS.get(task, []):
        if limit is None or imgsz <= limit:
            return name
    raise ConfigError(f"no default model for task {task} at {imgsz} px; pass --model (see `foveal models`)")
