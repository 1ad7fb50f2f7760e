"""The CLI: thin calls of the API, --json output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import foveal
from foveal.cli.main import main
from foveal.errors import ConfigError
from tests.conftest import make_image


def foveal_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "foveal.cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    assert_user_error(foveal_cli("train", "--data", str(tmp_path / "nope")), "nope", "no such")
    (tmp_path / "empty").mkdir()
    assert_user_error(foveal_cli("train", "--data", str(tmp_path / "empty")), "empty")
    for i in range(3):
        make_image(tmp_path / "one" / "cat" / f"{i}.png")
    assert_user_error(foveal_cli("train", "--data", str(tmp_path / "one")), "only the class 'cat'")
    assert_user_error(
        foveal_cli("train", "--data", str(tmp_path / "one"), "--model", "smallresnt"), "smallresnet"
    )
    assert_user_error(
        foveal_cli("val", "--weights", str(tmp_path / "x.ckpt"), "--data", str(tmp_path)),
        "x.ckpt",
        "not found",
    )
    assert_user_error(foveal_cli("train", "--data", str(tmp_path / "one"), "--optimizer", "adamx"), "adamw")


def test_unknown_model_suggests_a_close_match(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(4):
        make_image(tmp_path / "d" / "a" / f"{i}.png")
        make_image(tmp_path / "d" / "b" / f"{i}.png")
    assert main(["train", "--data", str(tmp_path / "d"), "--model", "tv:resnet19", "--no-progress"]) == 2
    assert "tv:resnet18" in capsys.readouterr().err


def test_synth_models_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "40", "--imgsz", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 40 and (tmp_path / "s" / "train").is_dir()
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "40"]) == 2  # never overwrites
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"lenet", "smallresnet", "smallresnet_se", "tv:resnet18", "tv:vit_b_16"} <= names
    assert main(["models", "timm:resnet1*", "--json"]) == 0
    assert "timm:resnet18" in {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert (
        main(
            [
                "data",
                "preview",
                "--data",
                str(tmp_path / "s"),
                "--aug",
                "heavy",
                "--out",
                str(tmp_path / "grid.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "grid.png").is_file()


def test_train_val_predict_from_the_cli(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "train",
        "--data",
        str(shapes_folder),
        "--epochs",
        "1",
        "--imgsz",
        "32",
        "--batch",
        "32",
        "--workers",
        "0",
        "--project",
        str(tmp_path),
        "--name",
        "cli",
        "--json",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_dir"] == str(tmp_path / "cli") and "accuracy" in result["metrics"]
    weights = result["best"]
    assert (
        main(
            [
                "val",
                "--weights",
                weights,
                "--data",
                str(shapes_folder),
                "--split",
                "test",
                "--json",
                "--workers",
                "0",
                "--plots",
                str(tmp_path / "val_plots"),
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["n"] == 32
    assert {Path(p).name for p in metrics["plots"]} == {"confusion_matrix.png", "roc.png", "pr.png"}
    assert (
        main(
            [
                "predict",
                "--weights",
                weights,
                str(shapes_folder / "test" / "star"),
                "--out",
                str(tmp_path / "p"),
                "--json",
                "--topk",
                "1",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    rows = result["predictions"]
    assert result["out"] == str(tmp_path / "p")
    assert rows and all(len(r["labels"]) == 1 for r in rows)
    assert (tmp_path / "p" / "predictions.csv").is_file()
    assert main(["val", "--weights", weights, "--data", str(shapes_folder), "--task", "segment"]) == 2
    assert "'classify' checkpoint" in capsys.readouterr().err
    # another task's post-processing option is an error, not silently ignored (API and CLI alike)
    image = str(next((shapes_folder / "test" / "star").iterdir()))
    assert main(["predict", "--weights", weights, image, "--conf", "0.5", "--out", str(tmp_path / "q")]) == 2
    line = capsys.readouterr().err.strip()
    assert "--conf is not an option of a classify model" in line and "--topk" in line
    with pytest.raises(ConfigError, match="--max-det is not an option of a classify model"):
        foveal.predict(weights, image, max_det=3)
    with pytest.raises(ConfigError, match="unknown predict option 'topc'.*topk"):
        foveal.predict(weights, image, topc=3)


def test_lr_find_command(shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "lr-find",
                "--data",
                str(shapes_folder),
                "--imgsz",
                "32",
                "--batch",
                "32",
                "--workers",
                "0",
                "--out",
                str(tmp_path / "lr.png"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert 1e-6 <= result["suggestion"] <= 1.0 and (tmp_path / "lr.png").is_file()


def test_import_is_light() -> None:
    code = "import sys, foveal; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


# values (as typed, as resolved) for fields whose values are checked; others get a generic value
FLAG_VALUES: dict[str, tuple[list[str], object]] = {
    "task": (["segment"], "segment"),
    "device": (["cpu"], "cpu"),
    "balance": (["weights"], "weights"),
    "balance_weights": (["effective"], "effective"),
    "freeze": (["backbone"], "backbone"),
    "lr": (["0.01"], 0.01),
    "devices": (["2"], 2),
    "model_options": (["{width: 16, depth: 2}"], {"width": 16, "depth": 2}),
    "aug": (["{preset: heavy, hflip: 0.0}"], {"preset": "heavy", "hflip": 0.0}),
}


def test_every_train_config_field_is_a_flag_that_reaches_the_config() -> None:
    import dataclasses
    from typing import get_args, get_type_hints

    from foveal.cli.main import build_parser
    from foveal.cli.train import options
    from foveal.config import TrainConfig
    from foveal.engine.fit import resolve_config

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    flags = {a.dest: a.option_strings[0] for a in train._actions if a.option_strings}
    kinds = get_type_hints(TrainConfig)
    assert options(parser.parse_args(["train"])) == {}  # flags not given do not reach the config
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("internal"):  # written by the run (aug_evidence): no flag
            assert f.name not in flags, f"internal TrainConfig.{f.name} has a flag"
            continue
        assert f.name in flags, f"TrainConfig.{f.name} has no flag"
        kind = ([k for k in get_args(kinds[f.name]) if k is not type(None)] or [kinds[f.name]])[0]
        if f.name in FLAG_VALUES:
            typed, expected = FLAG_VALUES[f.name]
        elif kind is bool:
            typed, expected = [], not f.default
        elif kind is int:
            typed, expected = ["3"], 3
        elif kind is float:
            typed, expected = ["0.125"], 0.125
        else:
            typed, expected = [f"x-{f.name}"], f"x-{f.name}"
        assert expected != f.default, f.name
        given = options(parser.parse_args(["train", flags[f.name], *typed]))
        assert set(given) == {f.name}, (f.name, given)
        assert getattr(resolve_config(**given), f.name) == expected, f.name
    assert options(parser.parse_args(["train", "--no-progress"])) == {"progress": False}


def test_commands_write_their_folders_by_one_rule(
    shapes_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``--project P --name N`` -> ``P/N``; without: a new ``runs/<task>/<command>[-N]`` in the cwd."""
    import shutil

    monkeypatch.chdir(tmp_path)
    fast = ["--epochs", "1", "--imgsz", "32", "--batch", "32", "--workers", "0", "--model", "lenet"]
    assert (
        main(["train", "--data", str(shapes_folder), *fast, "--project", "P", "--name", "N", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["run_dir"] == str(Path("P") / "N")
    weights = str(shutil.copy(Path("P", "N", "checkpoints", "best.ckpt"), tmp_path / "loose.ckpt"))
    image = str(next((shapes_folder / "test" / "star").iterdir()))
    data = ["--data", str(shapes_folder), "--workers", "0"]
    commands = {  # command line, the folder it reports, default folder name
        "predict": (["predict", "--weights", weights, image, "--workers", "0"], lambda r: r["out"]),
        "ensemble": (["ensemble", "--weights", weights, weights, *data], lambda r: r["out"]),
        "errors": (
            ["val", "--weights", weights, *data, "--errors"],
            lambda r: Path(r["errors"]["json"]).parent,
        ),
        "explain": (["explain", "--weights", weights, image], lambda r: r["out"]),
        "features": (["features", "--weights", weights, image], lambda r: Path(r["out"]).parent),
    }
    for command, (argv, folder) in commands.items():
        assert main([*argv, "--project", "P", "--name", command, "--json"]) == 0, command
        assert Path(folder(json.loads(capsys.readouterr().out))) == Path("P") / command
        assert main([*argv, "--json"]) == 0, command
        default = "explain" if command == "features" else command
        expected = Path("runs", "classify", default + ("-2" if command == "features" else ""))
        assert Path(folder(json.loads(capsys.readouterr().out))) == expected, command
    assert main([*commands["predict"][0], "--json"]) == 0  # never an earlier folder
    assert json.loads(capsys.readouterr().out)["out"] == str(Path("runs", "classify", "predict-2"))
    assert main([*commands["predict"][0], "--out", "o", "--project", "P"]) == 2
    assert "pass either --out o or --project/--name" in capsys.readouterr().err


class FakeTask:
    """A registered task whose models are classifiers (its model family)."""

    model_family = "classify"


def test_models_of_a_task_are_its_model_family(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from foveal.models.registry import list_models
    from foveal.tasks import TASKS, TaskEntry

    monkeypatch.setitem(TASKS, "fake", TaskEntry("fake", "tests.test_cli:FakeTask", "a test task"))
    assert main(["models", "--task", "fake", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["task"]) for r in rows] == [(n, t) for n, t, _ in list_models(task="classify")]
    assert main(["models", "--task", "fak"]) == 2
    assert "did you mean: fake" in capsys.readouterr().err
