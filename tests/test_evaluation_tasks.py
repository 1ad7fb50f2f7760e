"""Cross-validation, TTA and ensembles end to end on segmentation and detection (tiny runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foveal.analysis.cv import cross_validate
from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic

CASES = {
    "segment": ("masks", {"model": "unet", "model_options": {"width": 8, "depth": 2}}, "miou"),
    "detect": ("coco", {"model": "centernet"}, "map50"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def cv_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    task = request.param
    fmt, options, _ = CASES[task]
    root = tmp_path_factory.mktemp(task)
    data = write_synthetic(root / "data", n=36, imgsz=32, seed=1, fmt=fmt)
    fast = {"epochs": 1, "imgsz": 32, "batch": 8, "workers": 0, "progress": False, **options}
    return task, data, cross_validate(str(data), 2, task=task, project=str(root / "runs"), **fast)


def test_cv_folds_and_out_of_fold_rows(cv_run) -> None:
    task, data, cv = cv_run
    metric = CASES[task][2]
    doc = json.loads((cv.out / "cv.json").read_text())
    values = [json.loads((r / "metrics.json").read_text())[metric] for r in cv.runs]
    assert doc["metrics"][metric]["values"] == pytest.approx(values)
    rows = json.loads(cv.oof.read_text())
    images = {p for p in data.rglob("*.png") if "masks" not in p.parts}
    expected = {str(p.resolve()) for p in images if "test" not in p.relative_to(data).parts}
    assert {str(Path(r["path"]).resolve()) for r in rows} == expected and len(rows) == len(expected)
    assert sorted({r["fold"] for r in rows}) == [0, 1]


def test_tta_and_ensemble_cli(cv_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, data, cv = cv_run
    metric = CASES[task][2]
    ckpts = [str(r / "checkpoints" / "best.ckpt") for r in cv.runs]
    common = ["--data", str(data), "--split", "test", "--workers", "0", "--json"]
    assert main(["val", "--weights", ckpts[0], *common, "--tta", "hflip,vflip"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["tta"][metric] <= 1.0
    assert (cv.runs[0] / "comparisons" / "tta.json").is_file()
    for method in ("mean", "weighted"):
        argv = ["ensemble", "--weights", *ckpts, *common, "--method", method, "--out", str(tmp_path / method)]
        assert main([*argv, "--tta"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert len(doc["member_metrics"]) == 2 and 0.0 <= doc["metrics"][metric] <= 1.0
    if task == "segment":
        assert (
            main(["ensemble", "--weights", *ckpts, *common, "--method", "vote", "--out", str(tmp_path)]) == 0
        )
    else:
        assert main(["ensemble", "--weights", *ckpts, *common, "--method", "vote"]) == 2  # boxes: WBF only


@pytest.mark.parametrize("task", ["instance", "pose"])
def test_instance_and_pose_tta_and_ensemble(task: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import foveal

    fmt = "yolo-seg" if task == "instance" else "yolo-pose"
    data = write_synthetic(tmp_path / "data", n=24, imgsz=32, seed=2, fmt=fmt)
    run = foveal.train(
        task=task, data=str(data), epochs=1, imgsz=32, batch=8, workers=0, progress=False,
        project=str(tmp_path / "runs"),
    ).run_dir  # fmt: skip
    ckpts = [str(run / "checkpoints" / name) for name in ("best.ckpt", "last.ckpt")]
    common = ["--data", str(data), "--split", "val", "--workers", "0", "--json"]
    metric = "segm_map50" if task == "instance" else "kpt_map50"
    assert main(["ensemble", "--weights", *ckpts, *common, "--out", str(tmp_path / "e")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert 0.0 <= doc["metrics"][metric] <= 1.0 and len(doc["member_metrics"]) == 2
    code = main(["val", "--weights", ckpts[0], "--task", task, *common, "--tta"])
    if task == "instance":
        assert code == 0 and 0.0 <= json.loads(capsys.readouterr().out)["tta"][metric] <= 1.0
    else:  # the synthetic pose data has no flip_idx: a horizontal flip cannot restore left/right
        assert code == 2 and "flip_idx" in capsys.readouterr().err
