"""foveal tune's search spaces and checks (no training): YAML parsing, every bad entry a one-line
error, conditional parameters, grid lists, metric directions, and the CLI's bad input (exit 2)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from foveal.analysis.search_space import apply_params, grid, load_space, suggest
from foveal.analysis.tune import direction_of, tune
from foveal.cli.main import main
from foveal.errors import ConfigError
from foveal.tasks import get_task, task_names

BASE = {"task": "classify", "data": "unused"}


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_yaml_space_with_every_kind_and_a_condition(tmp_path: Path) -> None:
    path = _space(
        tmp_path,
        """
lr: {type: float, low: 1e-4, high: 1e-1, log: true}
batch: {type: int, low: 16, high: 64, step: 16}
optimizer: [adamw, sgd]
momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: sgd}}
model_options.width: [8, 16]
""",
    )
    params = load_space(path, BASE)
    assert [p.name for p in params] == ["lr", "batch", "optimizer", "momentum", "model_options.width"]
    assert params[0].log and params[0].low == pytest.approx(1e-4)  # YAML reads 1e-4 as text: converted
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = suggest(trial, params)
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert values["batch"] in (16, 32, 48, 64) and 1e-4 <= values["lr"] <= 0.1
        seen.add(values["optimizer"])
        study.tell(trial, 0.0)
    assert seen == {"adamw", "sgd"}
    options = apply_params({"aug": "light"}, {"model_options.width": 8, "aug.hflip": 0.0, "lr": 0.01})
    assert options == {"aug": {"preset": "light", "hflip": 0.0}, "model_options": {"width": 8}, "lr": 0.01}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lrr: [0.1, 0.01]", "'lrr' is not a train option (did you mean: lr"),
        ("epochs: [1, 2]", "'epochs' is fixed for the whole study"),
        ("lr: {type: float, low: 0.1, high: 0.1}", "empty range [0.1, 0.1]"),
        ("lr: {type: float, low: 0, high: 0.1, log: true}", "a log range needs low > 0"),
        ("optimizer: [sgd]", "a categorical needs a list of 2 or more distinct choices"),
        ("optimizer: [sgd, sgd]", "2 or more distinct choices"),
        ("lr: {type: flaot, low: 0.1, high: 1}", "type 'flaot' (did you mean: float"),
        ("lr: {type: float, lo: 0.1, high: 1}", "unknown key(s) ['lo']"),
        ("lr: {type: float, low: a, high: 1}", "low must be a finite number"),
        ("optimizer: [adamw, adamx]", "optimizer: 'adamx': unknown optimizer 'adamx'"),
        ("momentum: {type: float, low: 0.8, high: 0.9, when: {optimizer: sgd}}", "when optimizer: name a"),
        (
            "optimizer: [adamw, sgd]\nmomentum: {low: 0.8, high: 0.9, when: {optimizer: rmsprop}}",
            "['rmsprop'] not",
        ),
        ("batch: {type: int, low: 1.5, high: 8}", "an int range needs whole bounds"),
        ("lr: 0.1", "is not a list of choices nor a mapping"),
        ("- lr", "must be a non-empty mapping"),
        ("scheduler.x: [1, 2]", "only aug.KEY and model_options.KEY"),
    ],
)
def test_bad_space_entries_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_space(_space(tmp_path, text), BASE)
    assert message in str(err.value) and "space.yaml" in str(err.value) and "\n" not in str(err.value)


def test_grid_takes_plain_lists_only(tmp_path: Path) -> None:
    assert grid(load_space({"lr": [0.01, 0.1], "optimizer": ["sgd", "adamw"]}, BASE)) == {
        "lr": [0.01, 0.1], "optimizer": ["sgd", "adamw"]}  # fmt: skip
    with pytest.raises(ConfigError, match="grid search takes plain lists"):
        grid(load_space({"lr": {"low": 0.01, "high": 0.1}}, BASE))


@pytest.mark.parametrize("task", task_names())
def test_every_task_has_a_valid_default_space_with_the_augmentation_choices(task: str) -> None:
    params = load_space(dict(get_task(task).tune_space), {"task": task, "data": "unused"})
    assert "aug" in [p.name for p in params] and "auto" in next(p for p in params if p.name == "aug").choices


def test_directions() -> None:
    assert direction_of("accuracy", "classify") == "maximize"
    assert direction_of("ece", "classify") == "minimize"
    assert direction_of("mae", "regress") == "minimize"
    assert direction_of("r2", "regress") == "maximize"
    assert direction_of("loss", "segment") == "minimize"


def test_bad_tune_arguments_are_one_line_errors_before_any_trial(
    tmp_path: Path, shapes_folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["tune", "--data", str(shapes_folder), "--imgsz", "32", "--epochs", "1", "--project", "p"]
    cases = [
        (["--sampler", "bayes"], "unknown --sampler 'bayes'"),
        (["--pruner", "medain"], "(did you mean: median?)"),
        (["--trials", "0"], "--trials 0"),
        (["--folds", "1"], "--folds 1"),
        (["--confirm", "1"], "--confirm 1"),
        (
            ["--metric", "acuracy"],
            "--metric acuracy: not a metric of --task classify (did you mean: accuracy",
        ),
        (["--space", str(tmp_path / "none.yaml")], "none.yaml: no such file"),
        (["--storage", "/proc/foveal/x.journal"], "--storage /proc/foveal/x.journal: cannot write"),
        (["--storage", "nosuchdb://x"], "--storage nosuchdb://x: cannot open"),
        (["--sampler", "cmaes", "--space", str(_space(tmp_path, "optimizer: [sgd, adamw]"))], "cmaes"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (extra, err)
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").rglob("trial_*"))


def test_a_study_folder_holds_one_recipe(tmp_path: Path, shapes_folder: Path) -> None:
    """The same folder with another space or metric is refused (resuming needs the same study)."""
    (tmp_path / "p" / "tune").mkdir(parents=True)
    (tmp_path / "p" / "tune" / "study.json").write_text('{"metric": "accuracy"}')
    with pytest.raises(ConfigError, match="holds a study with other"):
        tune("classify", str(shapes_folder), trials=1, epochs=1, imgsz=32, project=str(tmp_path / "p"))
