"""TTA views and ensembles: geometry round trips, merges checked by hand, the ensemble CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from torch import nn

from foveal.analysis.cv import cross_validate
from foveal.analysis.ensemble import ensemble, fit_log_loss_weights
from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic
from foveal.engine.checkpoint import load
from foveal.engine.inference import run_model
from foveal.engine.merge import MergedModel, View, parse_tta
from foveal.errors import ConfigError
from foveal.ops.boxes import weighted_boxes_fusion
from foveal.tasks.classify import ClassifyTask
from foveal.tasks.detection import DetectTask, InstanceTask, PoseTask
from foveal.tasks.segment import SegmentTask
from tests.task_metas import meta_for


def test_parse_tta() -> None:
    assert parse_tta(None) == [] and parse_tta("none") == []
    assert [v.name for v in parse_tta(True)] == ["identity", "hflip"]
    names = [v.name for v in parse_tta("hflip,vflip,scale")]
    assert names == ["identity", "hflip", "vflip", "hflip+vflip", "scale0.75", "scale1.25"]
    with pytest.raises(ConfigError, match="rotate"):
        parse_tta("hflip,rotate")


def test_views_invert_maps_and_boxes() -> None:
    x = torch.randn(2, 3, 16, 24)
    for view in parse_tta("hflip,vflip"):
        torch.testing.assert_close(view.invert_map(view.apply(x), (16, 24)), x)
    box = torch.tensor([[2.0, 3.0, 10.0, 7.0]])  # xyxy in a 16 x 24 (H, W) image
    flipped = View(hflip=True, vflip=True)
    # the box as the flipped image shows it, mapped back, is the original box
    seen = torch.tensor([[24 - 10.0, 16 - 7.0, 24 - 2.0, 16 - 3.0]])
    torch.testing.assert_close(flipped.invert_boxes(seen, (16, 24), (16, 24)), box)
    scaled = View(scale=1.5)
    assert scaled.apply(x).shape[-2:] == (24, 32)  # rounded to multiples of 8
    torch.testing.assert_close(
        scaled.invert_boxes(box * torch.tensor([32 / 24, 1.5] * 2), (24, 32), (16, 24)), box
    )


class _LeftRight(nn.Module):
    """Logits from the mean of the left and right image halves: not flip invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        return torch.stack([x[..., :w].mean((1, 2, 3)) * 4, x[..., w:].mean((1, 2, 3)) * 4], dim=1)


def _classify_task(multilabel: bool = False, temperature: float = 1.0) -> ClassifyTask:
    kind = "multilabel" if multilabel else "binary"
    return ClassifyTask(meta_for("classify", kind=kind, thresholds=[0.5, 0.5], temperature=temperature))


@pytest.mark.parametrize(("multilabel", "temperature"), [(False, 1.0), (False, 2.0), (True, 1.0)])
def test_classify_tta_averages_probabilities(multilabel: bool, temperature: float) -> None:
    from foveal.engine.calibrated import temper_model

    task, model, x = _classify_task(multilabel, temperature), _LeftRight(), torch.rand(5, 3, 8, 8)
    raw = [model(x) / temperature, model(x.flip(-1)) / temperature]
    temper_model(task, model)  # as a calibrated checkpoint loads: T applied once per member and view
    merged = MergedModel(task, [model], parse_tta("hflip"))(x)
    expected = (task.probabilities(raw[0]) + task.probabilities(raw[1])) / 2
    torch.testing.assert_close(task.probabilities(merged), expected)


def test_classify_vote_and_weights() -> None:
    task = _classify_task()
    a, b = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 3.0], [0.0, 2.0]])
    voted = task.probabilities(task.merge([a, b, b], [1.0, 1.0, 1.0], "vote"))
    torch.testing.assert_close(voted, torch.tensor([[1 / 3, 2 / 3], [0.0, 1.0]]), atol=1e-6, rtol=0)
    weighted = task.probabilities(task.merge([a, b], [3.0, 1.0]))
    torch.testing.assert_close(weighted, 0.75 * a.softmax(1) + 0.25 * b.softmax(1))


def test_segment_tta_is_mean_of_unflipped_probabilities() -> None:
    task = SegmentTask(meta_for("segment", class_names=["bg", "x", "y"], kind="multiclass"))
    model = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 16, 16)
    merged = MergedModel(task, [model], parse_tta("hflip"))(x)
    expected = (model(x).softmax(1) + model(x.flip(-1)).flip(-1).softmax(1)) / 2
    torch.testing.assert_close(merged.softmax(1), expected, atol=1e-6, rtol=1e-5)


def test_detect_merge_is_wbf_of_unflipped_boxes() -> None:
    task = DetectTask(meta_for("detect"))
    out = [{"boxes": torch.tensor([[2.0, 2.0, 10.0, 12.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1])}]  # fmt: skip
    flipped = [{"boxes": torch.tensor([[32 - 11.0, 2.0, 32 - 3.0, 12.0]]), "scores": torch.tensor([0.7]),
                "labels": torch.tensor([1])}]  # fmt: skip
    view = View(hflip=True)
    back = task.unview(flipped, view, (32, 32), (32, 32))
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[3.0, 2.0, 11.0, 12.0]]))
    merged = task.merge([out, back], [1.0, 1.0])
    boxes, scores, labels = weighted_boxes_fusion(
        [out[0]["boxes"], back[0]["boxes"]], [torch.tensor([0.9]), torch.tensor([0.7])],
        [torch.tensor([1]), torch.tensor([1])], iou_threshold=0.55,
    )  # fmt: skip
    torch.testing.assert_close(merged[0]["boxes"], boxes)
    torch.testing.assert_close(merged[0]["scores"], scores)
    assert merged[0]["labels"].tolist() == labels.tolist() == [1]
    with pytest.raises(ConfigError, match="vote"):
        task.merge([out, back], [1.0, 1.0], "vote")


def test_fitted_weights_prefer_the_better_model() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 200)
    good = np.full((200, 3), 0.05)
    good[np.arange(200), targets] = 0.9
    noise = rng.dirichlet(np.ones(3), 200)
    w = fit_log_loss_weights([good, noise], targets)
    assert w[0] > 0.9 and sum(w) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def folds(tmp_path_factory: pytest.TempPathFactory):
    data = write_synthetic(tmp_path_factory.mktemp("ens") / "shapes", n=160, imgsz=32, seed=5)
    fast = {"model": "smallresnet", "epochs": 2, "imgsz": 32, "batch": 32, "workers": 0, "progress": False}
    return data, cross_validate(str(data), 3, project=str(tmp_path_factory.mktemp("runs")), **fast)


def _probs(ckpt: Path, data: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    loaded = load(ckpt)
    samples = loaded.task.load_eval_data(str(data), split)
    kept, _ = run_model(loaded.task, loaded.model, samples, workers=0)
    return kept["probs"].numpy(), kept["targets"].numpy()


def test_ensemble_mean_and_stack_equal_hand_computation(folds, tmp_path: Path) -> None:
    data, cv = folds
    ckpts = [run / "checkpoints" / "best.ckpt" for run in cv.runs[:2]]
    members = [_probs(c, data) for c in ckpts]
    targets = members[0][1]
    mean = ensemble(ckpts, data, split="test", method="mean", workers=0, out=tmp_path / "mean")
    expected = np.mean([p for p, _ in members], axis=0)
    assert mean.metrics["accuracy"] == pytest.approx(float((expected.argmax(1) == targets).mean()))
    assert mean.member_metrics[0]["accuracy"] == pytest.approx(
        float((members[0][0].argmax(1) == targets).mean())
    )
    # stack: a logistic regression on out-of-fold probabilities, applied to the members' probabilities
    oof = json.loads(cv.oof.read_text())
    names = ["circle", "square", "star", "triangle"]
    x = np.array([[r["probs"][n] for n in names] * 2 for r in oof])
    y = np.array([names.index(r["target"]) for r in oof])
    meta = LogisticRegression(max_iter=2000).fit(x, y)
    stacked = meta.predict_proba(np.concatenate([p for p, _ in members], axis=1))
    result = ensemble(
        ckpts, data, split="test", method="stack", oof=[cv.oof, cv.oof], workers=0, out=tmp_path / "s"
    )
    assert result.metrics["accuracy"] == pytest.approx(
        float((meta.classes_[stacked.argmax(1)] == targets).mean())
    )
    assert json.loads((tmp_path / "s" / "ensemble.json").read_text())["method"] == "stack"


def test_ensemble_cli_weighted_and_errors(folds, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, cv = folds
    ckpts = [str(run / "checkpoints" / "best.ckpt") for run in cv.runs]
    argv = ["ensemble", "--weights", *ckpts, "--data", str(data), "--split", "test", "--workers", "0"]
    assert (
        main([*argv, "--method", "weighted", "--run", str(cv.runs[0]), "--out", str(tmp_path), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert sum(result["weights"]) == pytest.approx(1.0) and len(result["member_metrics"]) == 3
    assert (cv.runs[0] / "comparisons" / "ensemble.json").is_file()
    assert main([*argv, "--method", "vote", "--tta", "--out", str(tmp_path / "v")]) == 0
    assert "ensemble (vote)" in capsys.readouterr().out
    assert main([*argv[:3], "--data", str(data)]) == 2  # one model is not an ensemble
    assert main([*argv, "--method", "stack"]) == 2  # stack without --oof
    assert "--oof" in capsys.readouterr().err


def test_val_and_predict_tta_cli(folds, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, cv = folds
    run = cv.runs[1]
    ckpt = str(run / "checkpoints" / "best.ckpt")
    argv = ["val", "--weights", ckpt, "--data", str(data), "--split", "test", "--workers", "0", "--json"]
    assert main([*argv, "--tta", "hflip,vflip"]) == 0
    result = json.loads(capsys.readouterr().out)
    doc = json.loads((run / "comparisons" / "tta.json").read_text())
    assert doc["metrics"]["accuracy"] == pytest.approx(result["tta"]["accuracy"])
    assert doc["single"]["accuracy"] == pytest.approx(result["accuracy"])
    assert "TTA (hflip,vflip)" in (run / "report.html").read_text(encoding="utf-8")
    # predict --tta: the probabilities are the mean over the four flips
    image = next((data / "test").rglob("*.png"))
    assert (
        main(
            [
                "predict",
                "--weights",
                ckpt,
                str(image),
                "--tta",
                "hflip,vflip",
                "--out",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)["predictions"][0]
    loaded = load(ckpt)
    x = loaded.task.transforms("predict")(Image.open(image).convert("RGB"))[None]
    with torch.no_grad():
        views = [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)]
        expected = torch.stack([loaded.task.probabilities(loaded.model(v)) for v in views]).mean(0)[0]
    got = torch.tensor([row["probs"][n] for n in loaded.task.class_names])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_instance_and_pose_views_and_nms_merge() -> None:
    task = InstanceTask(meta_for("instance"))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 1:4, 0:2] = 1.0
    seen = [{"boxes": torch.tensor([[0.0, 1.0, 2.0, 4.0]]), "scores": torch.tensor([0.8]),
             "labels": torch.tensor([0]), "masks": mask}]  # fmt: skip
    back = task.unview(seen, View(hflip=True), (8, 8), (8, 8))
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[6.0, 1.0, 8.0, 4.0]]))
    torch.testing.assert_close(back[0]["masks"], mask.flip(-1))
    weaker = [{**seen[0], "scores": torch.tensor([0.5]), "boxes": torch.tensor([[6.0, 1.0, 8.0, 4.2]])}]
    merged = task.merge([back, weaker], [1.0, 1.0])[0]  # overlapping boxes: the stronger one and its mask
    assert merged["scores"].tolist() == [pytest.approx(0.8)]
    torch.testing.assert_close(merged["masks"], mask.flip(-1))
    pose = PoseTask(meta_for("pose"))
    kps = torch.tensor([[[1.0, 2.0, 0.9], [3.0, 2.0, 0.8], [2.0, 5.0, 0.7]]])  # left, right, centre
    out = [{"boxes": torch.tensor([[1.0, 2.0, 3.0, 5.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([0]), "keypoints": kps}]  # fmt: skip
    back = pose.unview(out, View(hflip=True), (8, 8), (8, 8))[0]["keypoints"]
    # what the flipped view calls "left" is the original right: x mirrored, then the order swapped
    torch.testing.assert_close(back, torch.tensor([[[5.0, 2.0, 0.8], [7.0, 2.0, 0.9], [6.0, 5.0, 0.7]]]))
    with pytest.raises(ConfigError, match="vflip"):
        pose.unview(out, View(vflip=True), (8, 8), (8, 8))
    no_pairs = PoseTask(meta_for("pose", flip_idx=None))
    with pytest.raises(ConfigError, match="flip_idx"):
        no_pairs.unview(out, View(hflip=True), (8, 8), (8, 8))
