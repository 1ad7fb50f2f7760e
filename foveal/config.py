"""Typed training configuration: defaults, YAML in/out, validation with close-match hints."""

from __future__ import annotations

import dataclasses
from argparse import ArgumentTypeError
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from foveal.errors import ConfigError, check_choice, did_you_mean

DEFAULT_TASK = "classify"  # the registered tasks are foveal.tasks.TASKS (checked in engine.setup)

DEVICES = ("auto", "cpu", "cuda", "mps")
BALANCE_MODES = ("none", "oversample", "undersample", "weights")
WEIGHT_SCHEMES = ("inverse", "effective")


def option(default: Any = MISSING, *, help: str, group: str, factory: Any = MISSING, **cli: Any) -> Any:
    """A TrainConfig field with what its command-line flag needs: ``help``, ``group`` (data, model,
    optimisation, run) and optional argparse details in ``cli``: ``parse`` (text -> value, for types
    the annotation does not say how to read), ``flag`` (another flag name, e.g. '--no-progress'),
    ``metavar``, ``show_default`` (False: the help does not end with the default), ``internal`` (True:
    no flag; the run writes the value into config.yaml)."""
    return field(default=default, default_factory=factory, metadata={"help": help, "group": group, **cli})


def int_or_auto(text: str) -> int | str:
    """'auto' or an integer (``--devices``)."""
    return text if text == "auto" else int(text)


def mapping(text: str) -> dict[str, Any]:
    """A YAML/JSON mapping written on the command line, e.g. '{width: 16, depth: 2}'."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ArgumentTypeError(f"'{text}' is not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArgumentTypeError(f"'{text}' is not a mapping; write e.g. '{{width: 16}}'")
    return value


def name_or_mapping(text: str) -> str | dict[str, Any]:
    """A preset name ('light'), or a YAML/JSON mapping of options when the text is one ('{preset: ...}')."""
    return mapping(text) if text.lstrip().startswith("{") else text


@dataclass
class TrainConfig:
    """Everything a training run needs; ``config.yaml`` in a run folder is this, fully resolved.

    Each field's metadata (see :func:`option`) makes its ``foveal train`` flag ``--<name>``."""

    task: str = option(DEFAULT_TASK, help="the task", group="data", show_default=False, tasks=True)
    data: str | None = option(None, help="dataset folder, CSV file or split manifest", group="data")
    val: str | None = option(None, help="separate validation folder or CSV", group="data")
    format: str = option("auto", help="auto|imagefolder|csv|masks|coco|yolo|voc", group="data")
    kind: str = option("auto", help="auto|binary|multiclass|multilabel", group="data")
    val_fraction: float = option(0.2, help="held-out share when no val split", group="data")
    on_bad_image: str = option("error", help="error | skip: skip unreadable images", group="data")
    model: str | None = option(
        None,
        help="registry name, e.g. smallresnet, tv:resnet18, timm:... (default: the task's)",
        group="model",
    )
    model_options: dict = option(
        help="model builder keyword arguments as YAML/JSON, e.g. '{width: 16}'", group="model", factory=dict
    )
    pretrained: str | None = option(
        None, help="weights file (foveal/torchvision/timm) or 'hub'", group="model"
    )
    freeze: str | None = option(None, help="'backbone': train the head only", group="model")
    unfreeze_at: int | None = option(None, help="epoch at which the backbone is released", group="model")
    imgsz: int = option(64, help="input size in pixels", group="data")
    epochs: int = option(10, help="training epochs", group="optimisation")
    batch: int = option(64, help="batch size", group="optimisation")
    lr: float | str = option(3e-3, help="learning rate, or 'auto' for the range test", group="optimisation")
    optimizer: str = option("adamw", help="sgd|rmsprop|adam|adamw|radam", group="optimisation")
    weight_decay: float = option(0.01, help="weight decay", group="optimisation")
    momentum: float = option(0.9, help="momentum (sgd, rmsprop)", group="optimisation")
    nesterov: bool = option(False, help="Nesterov momentum (sgd)", group="optimisation")
    lookahead: bool = option(False, help="wrap the optimizer in Lookahead", group="optimisation")
    scheduler: str = option("cosine", help="none|step|cosine|onecycle|cyclic", group="optimisation")
    warmup_epochs: float = option(
        1.0, help="linear warmup epochs, capped at half the run", group="optimisation"
    )
    step_size: int | None = option(None, help="epochs between step decays", group="optimisation")
    gamma: float = option(0.1, help="step decay factor", group="optimisation")
    loss: str = option("auto", help="auto|ce|bce|focal", group="optimisation")
    label_smoothing: float = option(0.0, help="label smoothing of the cross-entropy", group="optimisation")
    balance: str = option(  # foveal.data.balance
        "none", help="class imbalance: none|oversample|undersample|weights", group="optimisation"
    )
    balance_weights: str = option(
        "inverse", help="--balance weights scheme: inverse|effective", group="optimisation"
    )
    balance_beta: float = option(0.999, help="effective-number beta", group="optimisation")
    focal_gamma: float = option(2.0, help="focal loss gamma", group="optimisation")
    aug: str | dict = option(
        "auto",
        help="augmentation preset auto|none|light|medium|heavy, or a YAML/JSON mapping of options "
        "(auto: the task's preset, light; regress: none, less the flips a short probe finds change labels)",
        group="data",
        parse=name_or_mapping,
    )
    aug_evidence: dict | None = option(
        None, help="what --aug auto measured and decided (written by the run)", group="data", internal=True
    )
    patience: int | None = option(None, help="early stopping patience in epochs", group="optimisation")
    grad_clip: float | None = option(None, help="clip the gradient norm at this value", group="optimisation")
    amp: bool = option(False, help="mixed precision (CUDA)", group="optimisation")
    ema: bool = option(False, help="exponential moving average of weights", group="optimisation")
    ema_decay: float = option(0.999, help="decay of --ema", group="optimisation")
    seed: int = option(0, help="random seed", group="optimisation")
    device: str = option("auto", help="auto|cpu|cuda|mps", group="run")
    devices: int | str = option(
        "auto", help="devices per node: a number or auto", group="run", parse=int_or_auto
    )
    num_nodes: int = option(1, help="nodes of a multi-node run", group="run")
    strategy: str = option("auto", help="Lightning strategy, e.g. ddp, fsdp", group="run")
    workers: int | None = option(None, help="data loader processes", group="data")
    threads: int | None = option(
        None, help="torch threads per process (default: cores / processes sharing them)", group="run"
    )
    project: str = option(
        "runs", help="parent folder of runs (default runs/<task>)", group="run", show_default=False
    )
    name: str | None = option(None, help="run name (default: the model name)", group="run")
    progress: bool = option(True, help="hide the progress bars", group="run", flag="--no-progress")

    def validate(self) -> TrainConfig:
        """Check values that can be checked without data; return self."""
        check_choice("device", self.device, DEVICES)
        check_choice("--balance", self.balance, BALANCE_MODES)
        check_choice("--balance-weights", self.balance_weights, WEIGHT_SCHEMES)
        if self.freeze not in (None, "backbone"):
            raise ConfigError(f"--freeze '{self.freeze}' is not supported; use --freeze backbone")
        for name in ("epochs", "batch", "imgsz"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"--threads must be a positive integer, got {self.threads!r}")
        if isinstance(self.lr, str) and self.lr != "auto":
            try:
                self.lr = float(self.lr)
            except ValueError:
                raise ConfigError(f"--lr must be a number or 'auto', got '{self.lr}'") from None
        if not isinstance(self.lr, str) and not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def make_config(**values: Any) -> TrainConfig:
    """Build a TrainConfig from keyword values; unknown keys fail with close-match suggestions."""
    names = field_names()
    for key in values:
        if key not in names:
            raise ConfigError(f"unknown option '{key}'{did_you_mean(key, names)}")
    return dataclasses.replace(TrainConfig(), **values).validate()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config values; errors name the file."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of option: value")
    names = field_names()
    for key in loaded:
        if key not in names:
            raise ConfigError(f"{path}: unknown option '{key}'{did_you_mean(str(key), names)}")
    return loaded


def save_yaml(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    from foveal.atomic import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
