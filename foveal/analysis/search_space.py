"""Hyper-parameter search spaces for ``foveal tune``: YAML in, checked ``Param`` list out, Optuna trials.

A space maps ``train`` option names to distributions::

    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    batch: {type: int, low: 16, high: 64, step: 16}
    optimizer: [adamw, sgd]                        # a list: categorical (grid search needs lists only)
    momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: sgd}}
    aug: {type: categorical, choices: [auto, none, light, medium]}
    model_options.width: [16, 32]                  # a key inside a mapping option

``when`` makes a parameter conditional on earlier categorical ones (a value or a list of values).
Every name is checked against ``TrainConfig`` (close matches suggested) and every value by resolving
a config with it, so a bad space fails before the first trial.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from foveal.config import TrainConfig
from foveal.errors import ConfigError, FovealError, did_you_mean

TYPES = ("float", "int", "categorical")
# options a search must not vary: what the study trains on, where runs go, how processes are laid out
FIXED = ("task", "data", "val", "format", "kind", "project", "name", "device", "devices", "num_nodes",
         "strategy", "workers", "threads", "progress", "on_bad_image", "epochs", "aug_evidence")  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One searched option: ``name`` (a TrainConfig field, or 'field.key' inside a mapping field),
    ``type`` float|int|categorical, its range or ``choices``, and ``when`` {earlier name: [values]}."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the conditions hold for the values sampled so far."""
        return all(name in values and values[name] in allowed for name, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for the Optuna ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        if self.type == "categorical":
            text = "{" + ", ".join(map(str, self.choices)) + "}"
        else:
            text = f"{self.type} [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")
        conditions = " and ".join(f"{k} in {list(v)}" for k, v in self.when.items())
        return f"{self.name}: {text}" + (f" when {conditions}" if conditions else "")


def load_space(space: str | Path | Mapping[str, Any], base: Mapping[str, Any]) -> list[Param]:
    """The checked parameters of ``space`` (a YAML file or a mapping); ``base``: the fixed train
    options (task included), against which every value is checked."""
    where = str(space) if isinstance(space, (str, Path)) else "the search space"
    if isinstance(space, (str, Path)):
        try:
            space = yaml.safe_load(Path(space).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such file; pass --space FILE.yaml") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"{where}: must be a non-empty mapping of train options, e.g. 'lr: [0.001, 0.01]'")
    params: list[Param] = []
    for name, spec in space.items():
        param = _param(where, str(name), spec, params)
        _check_values(where, param, base)
        params.append(param)
    return params


def _param(where: str, name: str, spec: Any, earlier: list[Param]) -> Param:
    _check_name(where, name)
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: {name}: {spec!r} is not a list of choices nor a mapping like "
            "{type: float, low: 0.0001, high: 0.1, log: true}"
        )
    allowed = {"type", "low", "high", "log", "step", "choices", "when"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: {name}: unknown key(s) {unknown}{did_you_mean(unknown[0], allowed)}; "
            f"use {', '.join(sorted(allowed))}"
        )
    kind = str(spec.get("type", "categorical" if "choices" in spec else "float"))
    if kind not in TYPES:
        raise ConfigError(
            f"{where}: {name}: type '{kind}'{did_you_mean(kind, TYPES)}; use {', '.join(TYPES)}"
        )
    when = _conditions(where, name, spec.get("when") or {}, earlier)
    if kind == "categorical":
        choices = spec.get("choices")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or len({repr(c) for c in choices}) < len(choices)
        ):
            raise ConfigError(
                f"{where}: {name}: a categorical needs a list of 2 or more distinct choices, got {choices!r}"
            )
        return Param(name, kind, choices=tuple(choices), when=when)
    low, high = _number(where, name, "low", spec.get("low")), _number(where, name, "high", spec.get("high"))
    if not low < high:
        raise ConfigError(f"{where}: {name}: empty range [{low:g}, {high:g}]; low must be below high")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: {name}: a log range needs low > 0, got {low:g}")
    step = spec.get("step")
    if step is not None:
        step = _number(where, name, "step", step)
        if step <= 0 or log:
            raise ConfigError(f"{where}: {name}: step must be > 0 and cannot go with log: true")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: {name}: an int range needs whole bounds, got [{low:g}, {high:g}]")
    return Param(name, kind, low, high, log, step, when=when)


def _number(where: str, name: str, key: str, value: Any) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML reads 1e-4 (no dot) as text
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {name}: {key} must be a finite number, got {value!r}")
    return float(value)


def _check_name(where: str, name: str) -> None:
    options = {f.name: f for f in fields(TrainConfig)}
    top, _, key = name.partition(".")
    if top not in options:
        raise ConfigError(
            f"{where}: '{name}' is not a train option{did_you_mean(top, options)}; "
            "see foveal train --help for the names"
        )
    if top in FIXED:
        raise ConfigError(
            f"{where}: '{name}' is fixed for the whole study; pass --{top} to foveal tune instead"
        )
    if key and top not in ("aug", "model_options"):
        raise ConfigError(f"{where}: '{name}': only aug.KEY and model_options.KEY name keys inside an option")


def _conditions(where: str, name: str, when: Any, earlier: list[Param]) -> dict[str, tuple[Any, ...]]:
    if not isinstance(when, Mapping):
        raise ConfigError(f"{where}: {name}: when must be a mapping like {{optimizer: sgd}}, got {when!r}")
    by_name = {p.name: p for p in earlier}
    out = {}
    for other, values in when.items():
        parent = by_name.get(str(other))
        if parent is None or parent.type != "categorical":
            raise ConfigError(
                f"{where}: {name}: when {other}: name a categorical parameter listed before {name}"
                f"{did_you_mean(str(other), by_name)}"
            )
        values = tuple(values) if isinstance(values, list) else (values,)
        bad = [v for v in values if v not in parent.choices]
        if bad:
            raise ConfigError(
                f"{where}: {name}: when {other}: {bad} not among its choices {list(parent.choices)}"
            )
        out[str(other)] = values
    return out


def _check_values(where: str, param: Param, base: Mapping[str, Any]) -> None:
    """Resolve a config with each choice (or both bounds) so a bad value fails now, not in trial 40."""
    from foveal.engine.setup import check_names, resolve_config

    values = param.choices if param.type == "categorical" else (param.low, param.high)
    for value in values:
        if param.type == "int":
            value = int(value)
        try:
            cfg = resolve_config(**apply_params(dict(base), {param.name: value}))
            check_names(cfg)
        except FovealError as err:
            raise ConfigError(f"{where}: {param.name}: {value!r}: {' '.join(str(err).split())}") from None


def apply_params(options: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the sampled ``values``; 'aug.hflip'-style names go into that mapping option
    (a preset name becomes {'preset': name, ...})."""
    out = dict(options)
    for name, value in values.items():
        top, _, key = name.partition(".")
        if not key:
            out[top] = value
            continue
        current = out.get(top)
        current = {"preset": current} if isinstance(current, str) else dict(current or {})
        current[key] = value
        out[top] = current
    return out


def suggest(trial: Any, params: list[Param]) -> dict[str, Any]:
    """The values of the active parameters for ``trial``, in the space's order."""
    values: dict[str, Any] = {}
    for param in params:
        if param.active(values):
            values[param.name] = param.suggest(trial)
    return values


def grid(params: list[Param], where: str = "--sampler grid") -> dict[str, list[Any]]:
    """The search space of Optuna's GridSampler: every parameter a list, none conditional."""
    bad = [p.name for p in params if p.type != "categorical" or p.when]
    if bad:
        raise ConfigError(
            f"{where}: {', '.join(bad)}: grid search takes plain lists of values (no ranges, no 'when'); "
            "write e.g. 'lr: [0.001, 0.003, 0.01]'"
        )
    return {p.name: list(p.choices) for p in params}


def default_space(task: str) -> dict[str, Any]:
    """The task's default search space (``Task.tune_space``) as a mapping."""
    from foveal.tasks import get_task

    return dict(get_task(task).tune_space)
