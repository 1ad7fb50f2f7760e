"""One model registry: name -> builder ``(num_classes, **kwargs) -> nn.Module``, per task.

Names:
- own names (no prefix), e.g. ``smallresnet``: builders registered with :func:`register` by the module
  that defines them (``foveal.models.small`` for classification; task modules add theirs);
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
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from foveal.errors import ConfigError, check_choice, did_you_mean

TASKS = ("classify", "segment", "detect", "instance", "pose", "generate", "restore")
PREFIXES = ("tv", "timm", "smp")
_PREFIX_TASKS = {
    "tv": ("classify", "segment", "detect", "instance", "pose"),
    "timm": ("classify",),
    "smp": ("segment",),
}

Builder = Callable[..., nn.Module]

# Modules whose import registers own builders (with @register); imported on the first registry lookup.
# A task module that defines its own models adds its module name here.
PROVIDERS = (
    "foveal.models.small",
    "foveal.models.segmentation",
    "foveal.models.centernet",
    "foveal.models.detection",
)


@dataclass(frozen=True)
class Entry:
    """An own model: its builder ``(num_classes, **kwargs) -> nn.Module``, task and one-line description."""

    builder: Builder
    task: str
    description: str


_OWN: dict[tuple[str, str], Entry] = {}
_loaded = False

# Defaults per task: (largest image size it suits, or None for any size, model name), in order.
_DEFAULTS: dict[str, list[tuple[int | None, str]]] = {
    "classify": [(96, "smallresnet"), (None, "tv:resnet18")],
}

# torchvision builders that need arguments to return a plain (B, N) Tensor in training and not to warn.
_TV_EXTRA: dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def register(name: str, task: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(num_classes, **kwargs) -> nn.Module`` as own model ``name`` of ``task``.

    Raises ValueError if another builder already has that name for that task."""
    check_choice("task", task, TASKS)
    if ":" in name:
        raise ValueError(f"own model names take no prefix: {name!r}")

    def wrap(builder: Builder) -> Builder:
        if (task, name) in _OWN and _OWN[(task, name)].builder is not builder:
            raise ValueError(f"model {name!r} is already registered for task {task!r}")
        _OWN[(task, name)] = Entry(builder, task, description)
        return builder

    return wrap


def _load_providers() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in PROVIDERS:
            importlib.import_module(module)


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
    elsewhere = sorted(t for t, n in _OWN if n == name and t != task)
    if elsewhere:
        return ConfigError(
            f"model '{name}' is a {elsewhere[0]} model, not a {task} model; see `foveal models --task {task}`"
        )
    return ConfigError(
        f"unknown {task} model '{name}'{did_you_mean(name, choices)}; see `foveal models --task {task}`"
    )


def check_model_name(name: str, task: str = "classify") -> tuple[str, str]:
    """Raise ConfigError (with close matches) unless ``name`` is a ``task`` model; return (prefix, bare)."""
    check_choice("task", task, TASKS)
    _load_providers()
    prefix, bare = _split(name)
    if not prefix:
        if (task, name) not in _OWN:
            raise _unknown(name, task, [n for t, n in _OWN if t == task])
        return prefix, bare
    if prefix not in PREFIXES:
        raise ConfigError(
            f"unknown model prefix '{prefix}:' in '{name}'{did_you_mean(prefix, PREFIXES)}; "
            f"use tv:<name>, timm:<name>, smp:<arch>[:<encoder>] or an own name"
        )
    if task not in _PREFIX_TASKS[prefix]:
        raise ConfigError(
            f"'{name}': {prefix}: models are for task {' or '.join(_PREFIX_TASKS[prefix])}; for task "
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
        return _OWN[(task, name)].builder(num_classes, **kwargs)
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


def model_family(task: str) -> str:
    """The model family of ``task``: a registered task's ``model_family``, else ``task`` itself when it
    names a family (e.g. 'generate'); ConfigError with close matches otherwise."""
    from foveal.tasks import check_task, get_task, task_names

    if task in task_names():
        return get_task(task).model_family
    return task if task in TASKS else check_task(task)


def list_models(task: str | None = None, pattern: str | None = None) -> list[tuple[str, str, str]]:
    """Models the registry can build, as (name, task, description) rows, own names first.

    ``task`` filters by task: a registered task lists the models of its ``model_family`` (e.g. a task
    whose models are classifiers lists the classify models), a model family its own; ``pattern`` is an
    fnmatch pattern (``resnet*``, ``tv:vit*``,
    ``timm:efficientnet*``, ``smp:unet:*``) matched against the full name or the name without prefix.
    timm's ~1,300 names are listed only when a pattern is given; otherwise one row counts them. smp
    models are listed per architecture; with an encoder in the pattern (``smp:fpn:res*``) per encoder.
    """
    if task is not None:
        task = model_family(task)
    _load_providers()
    rows = [
        (n, t, e.description)
        for (t, n), e in sorted(_OWN.items(), key=lambda kv: kv[0][1])
        if (task is None or t == task) and _matches(n, pattern)
    ]
    prefix = _split(pattern)[0] if pattern else ""
    for tv_task in ("classify", "segment", "detect", "instance", "pose"):
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


def set_defaults(task: str, by_size: list[tuple[int | None, str]]) -> None:
    """Set the default models of ``task``: (largest image size or None for any, model name), in order."""
    check_choice("task", task, TASKS)
    _DEFAULTS[task] = list(by_size)


def default_model(task: str, imgsz: int) -> str:
    """The default model name for ``task`` at image size ``imgsz`` (training from scratch, CPU first).

    classify: ``smallresnet`` up to 96 px: measured on the 64 px shapes data it reaches ~90%
    validation accuracy in 8 epochs from scratch (AdamW 3e-3, no augmentation) and trains a batch of 64
    in ~100 ms (~75 ms channels_last) on 2 CPU threads, where ``tv:resnet18`` takes ~550 ms for a
    similar accuracy. Above 96 px ``tv:resnet18``: its stride-4 ImageNet stem suits larger images,
    BatchNorm'd plain convolutions train robustly from scratch and run faster on CPU than depthwise
    nets (EfficientNet/MobileNet) of similar accuracy, and ``--pretrained hub`` gives ImageNet weights.
    """
    check_choice("task", task, TASKS)
    _load_providers()
    for limit, name in _DEFAULTS.get(task, []):
        if limit is None or imgsz <= limit:
            return name
    raise ConfigError(f"no default model for task {task} at {imgsz} px; pass --model (see `foveal models`)")
