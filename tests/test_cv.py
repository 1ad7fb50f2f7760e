"""foveal cv: K fold runs, cv.json statistics, out-of-fold predictions, resuming, groups."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from PIL import Image
from scipy import stats

from foveal.analysis.cv import cross_validate, summarise
from foveal.cli.main import main
from foveal.data.manifest import read_manifest
from foveal.data.synth_writers import write_synthetic
from foveal.errors import ConfigError

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out

FAST = {"model": "lenet", "epochs": 1, "imgsz": 32, "batch": 32, "workers": 0, "progress": False}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("cv") / "shapes", n=96, imgsz=32, seed=2)


@pytest.fixture(scope="module")
def cv_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory):
    project = tmp_path_factory.mktemp("runs")
    return cross_validate(str(shapes), 3, project=str(project), **FAST)


def test_summary_statistics() -> None:
    values = [0.8, 0.9, 0.85, 0.7]
    s = summarise(values)
    half = stats.t.ppf(0.975, 3) * statistics.stdev(values) / math.sqrt(4)
    assert s["mean"] == pytest.approx(0.8125) and s["std"] == pytest.approx(statistics.stdev(values))
    assert s["ci95"] == pytest.approx([0.8125 - half, 0.8125 + half])


def test_folds_runs_and_cv_json(cv_run, shapes: Path) -> None:
    assert [r.name for r in cv_run.runs] == ["fold_0", "fold_1", "fold_2"]
    doc = json.loads((cv_run.out / "cv.json").read_text())
    accuracies = [json.loads((r / "metrics.json").read_text())["accuracy"] for r in cv_run.runs]
    assert doc["metrics"]["accuracy"]["values"] == pytest.approx(accuracies)
    assert doc["metrics"]["accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
    # every fold run also reports the untouched on-disk test split
    tests = {p.name for p in (shapes / "test").rglob("*.png")}
    for run in cv_run.runs:
        assert json.loads((run / "metrics.json").read_text())["test"]["n"] == len(tests)


def test_out_of_fold_predictions_cover_every_non_test_image_once(cv_run, shapes: Path) -> None:
    rows = json.loads(cv_run.oof.read_text())
    expected = {str(p.resolve()) for s in ("train", "val") for p in (shapes / s).rglob("*.png")}
    paths = [str(Path(r["path"]).resolve()) for r in rows]
    assert len(paths) == len(set(paths)) and set(paths) == expected
    for k in range(3):
        fold = read_manifest(cv_run.out / "folds" / f"fold_{k}.json")
        val = {str((fold.source / p).resolve()) for p in fold.splits["val"]}
        assert {p for p, r in zip(paths, rows) if r["fold"] == k} == val
    for row in rows:  # the target is the class folder; probabilities are a distribution
        assert row["target"] == Path(row["path"]).parent.name
        assert sum(row["probs"].values()) == pytest.approx(1.0, abs=1e-4)


def test_rerun_resumes_without_retraining(cv_run, shapes: Path) -> None:
    project = cv_run.out.parent  # PROJECT/NAME, the run-folder rule of every command
    stamps = {r: (r / "checkpoints" / "best.ckpt").stat().st_mtime_ns for r in cv_run.runs}
    again = cross_validate(str(shapes), 3, project=str(project), **FAST)
    assert again.resumed == [0, 1, 2]
    assert all((r / "checkpoints" / "best.ckpt").stat().st_mtime_ns == t for r, t in stamps.items())
    # a fold killed before it finished restarts; the others are kept
    shutil.rmtree(cv_run.runs[1])
    third = cross_validate(str(shapes), 3, project=str(project), **FAST)
    assert third.resumed == [0, 2] and (cv_run.runs[1] / "metrics.json").is_file()
    with pytest.raises(ConfigError, match="other options"):
        cross_validate(str(shapes), 3, project=str(project), **{**FAST, "epochs": 2})


def test_cli_group_by_keeps_groups_in_one_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "patients data"
    for cls, colour in (("a", (200, 20, 20)), ("b", (20, 20, 200))):
        (data / cls).mkdir(parents=True)
        for patient in range(6):
            for shot in range(3):
                shade = tuple(min(255, c + 9 * shot + patient) for c in colour)
                Image.new("RGB", (16, 16), shade).save(data / cls / f"p{cls}{patient}_{shot}.png")
    argv = ["cv", "--data", str(data), "--folds", "3", "--group-by", r"^(p\w\d)_", "--project", str(tmp_path)]
    argv += ["--model=lenet", "--epochs=1", "--imgsz=16", "--workers=0", "--no-progress", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    groups: dict[str, set[int]] = {}
    for row in json.loads(Path(result["oof"]).read_text()):
        groups.setdefault(Path(row["path"]).name.split("_")[0], set()).add(row["fold"])
    assert len(groups) == 12 and all(len(folds) == 1 for folds in groups.values())
    assert set(result["summary"]) >= {"accuracy", "f1_macro"}
    assert main(["cv", "--data", str(data), "--folds", "1"]) == 2
