"""Typed training configuration: defaults, YAML in/out, validation with close-match hints."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from foveal.errors import ConfigError, check_choice, did_you_mean

DEFAULT_TASK = "classify"  # the registered tasks are foveal.tasks.TASKS (checked in engine.setup)

DEVICES = ("auto", "cpu", "cuda", "mps")
BALANCE_MODES = ("none", "oversample", "undersample", "weights")
WEIGHT_SCHEMES = ("inverse", "effective")


@dataclass
class TrainConfig:
    """Everything a training run needs; ``config.yaml`` in a run folder is this, fully resolved."""

    task: str = DEFAULT_TASK
    data: str | None = None
    val: str | None = None
    format: str = "auto"
    kind: str = "auto"
    val_fraction: float = 0.2
    on_bad_image: str = "error"
    model: str | None = None
    model_options: dict = field(default_factory=dict)  # builder keyword arguments, e.g. {width: 16}
    pretrained: str | None = None
    freeze: str | None = None
    unfreeze_at: int | None = None
    imgsz: int = 64
    epochs: int = 10
    batch: int = 64
    lr: float | str = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    lookahead: bool = False
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0  # linear warmup, capped at half the run
    step_size: int | None = None
    gamma: float = 0.1
    loss: str = "auto"
    label_smoothing: float = 0.0
    balance: str = "none"  # none|oversample|undersample|weights (foveal.data.balance)
    balance_weights: str = "inverse"  # inverse|effective: class weights for --balance weights
    balance_beta: float = 0.999  # effective-number beta
    focal_gamma: float = 2.0
    aug: str | dict = "auto"  # auto: the task's default_aug (light; regress: none)
    patience: int | None = None
    grad_clip: float | None = None
    amp: bool = False
    ema: bool = False
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    workers: int | None = None
    project: str = "runs"
    name: str | None = None
    progress: bool = True

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
