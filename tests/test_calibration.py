"""Calibration: ECE against torchmetrics, temperature recovery, ``foveal calibrate`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

import foveal
from foveal.analysis.calibration import fit_temperature
from foveal.cli.main import main
from foveal.data.sample import Sample
from foveal.metrics.calibration import calibration_bins, expected_calibration_error, negative_log_likelihood
from foveal.report.plots import reliability_diagram


@pytest.mark.parametrize("classes", [2, 5, 12])
def test_ece_matches_torchmetrics_single_label(classes: int) -> None:
    g = torch.Generator().manual_seed(classes)
    probs = (torch.randn(3000, classes, generator=g) * 2).softmax(dim=1)
    targets = torch.randint(0, classes, (3000,), generator=g)
    for bins in (15, 7):
        expected = multiclass_calibration_error(probs, targets, classes, n_bins=bins, norm="l1").item()
        assert expected_calibration_error(probs, targets, bins) == pytest.approx(expected, abs=1e-6)


def test_ece_matches_torchmetrics_multilabel() -> None:
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(2000, 6, generator=g)
    targets = torch.bernoulli(probs.pow(0.7), generator=g).long()  # miscalibrated on purpose
    expected = torch.stack(
        [binary_calibration_error(probs[:, c].contiguous(), targets[:, c].contiguous()) for c in range(6)]
    ).mean()
    assert expected_calibration_error(probs, targets) == pytest.approx(expected.item(), abs=1e-6)
    assert expected_calibration_error(probs.numpy(), targets.numpy()) == pytest.approx(
        expected.item(), abs=1e-6
    )


def test_ece_hand_case_and_bin_edges() -> None:
    # 4 bins: confidences 0.3 (bin 1), 0.6 and 0.7 (bin 2), 1.0 (the last bin, not a bin of its own)
    probs = torch.tensor([[0.3, 0.2, 0.25, 0.25], [0.6, 0.4, 0.0, 0.0], [0.1, 0.7, 0.2, 0.0], [1.0, 0, 0, 0]])
    targets = torch.tensor([1, 1, 1, 0])  # wrong, wrong, right, right
    accuracy, confidence, count = calibration_bins(np.array([0.3, 0.6, 0.7, 1.0]), np.array([0, 0, 1, 1]), 4)
    assert count.tolist() == [0, 1, 2, 1]
    assert accuracy.tolist() == pytest.approx([0, 0, 0.5, 1])
    assert confidence.tolist() == pytest.approx([0, 0.3, 0.65, 1.0])
    hand = (abs(0 - 0.3) * 1 + abs(0.5 - 0.65) * 2 + abs(1 - 1.0) * 1) / 4
    assert expected_calibration_error(probs, targets, n_bins=4) == pytest.approx(hand)


def test_fit_temperature_recovers_scaled_logits() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 6, generator=g) * 2
    targets = torch.multinomial(logits.softmax(dim=1), 1, generator=g).squeeze(1)
    temperature = fit_temperature(3 * logits, targets)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before, after = (
        negative_log_likelihood(3 * logits, targets),
        negative_log_likelihood(3 * logits, targets, temperature),
    )
    assert after <= before
    assert after == pytest.approx(
        torch.nn.functional.cross_entropy(3 * logits / temperature, targets).item(), rel=1e-6
    )
    # underconfident logits: T < 1
    assert fit_temperature(logits / 2, targets) == pytest.approx(0.5, rel=0.05)


def test_fit_temperature_multilabel_uses_bce() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(20000, 4, generator=g) * 2
    targets = torch.bernoulli(logits.sigmoid(), generator=g)
    temperature = fit_temperature(3 * logits, targets)
    assert temperature == pytest.approx(3.0, rel=0.05)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert negative_log_likelihood(3 * logits, targets, temperature) <= bce(3 * logits, targets).item()


def test_reliability_diagram_writes_png(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(300, 3, generator=g).softmax(dim=1)
    path = reliability_diagram(
        probs, torch.randint(0, 3, (300,), generator=g), tmp_path / "r" / "rel.png", title="t"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    multilabel = reliability_diagram(torch.rand(50, 2), torch.randint(0, 2, (50, 2)), tmp_path / "m.png")
    assert multilabel.stat().st_size > 1000


# -- end to end on a tiny run ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from foveal.data.synth_writers import write_synthetic

    # a large val split: the calibration split of these tests
    return write_synthetic(
        tmp_path_factory.mktemp("cal") / "data", n=200, imgsz=32, seed=3, splits=(0.6, 0.4, 0)
    )


@pytest.fixture(scope="module")
def run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> foveal.TrainResult:
    project = tmp_path_factory.mktemp("cal_runs")
    return foveal.train(
        task="classify",
        data=str(shapes),
        model="lenet",
        epochs=2,
        imgsz=32,
        workers=0,
        progress=False,
        project=str(project),
    )


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_run_reports_ece_and_reliability(run: foveal.TrainResult, shapes: Path) -> None:
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    # 2 epochs of LeNet stay near chance (measured val accuracy 0.175, ECE 0.1182 on 80 images), so no
    # bar: the run's ECE is torchmetrics' on the softmax of the best model's raw logits on val (raw: the
    # calibrate test below stores a temperature in this checkpoint)
    from foveal.engine.loaders import make_loader

    loaded = foveal.load(run.best)
    samples = loaded.task.load_eval_data(str(shapes), "val")
    logits, targets = [], []
    with torch.no_grad():
        for images, target in make_loader(loaded.task, samples, "val", 64, 0):
            logits.append(loaded.model(images))
            targets.append(target)
    probs, targets = torch.cat(logits).softmax(1), torch.cat(targets)
    expected = multiclass_calibration_error(probs, targets, probs.shape[1], n_bins=15, norm="l1").item()
    assert metrics["ece"] == pytest.approx(expected, abs=1e-6)
    assert metrics["accuracy"] == pytest.approx((probs.argmax(1) == targets).float().mean().item(), abs=1e-6)
    assert (run.run_dir / "plots" / "reliability.png").is_file()


def test_calibrate_cli_end_to_end(
    run: foveal.TrainResult, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = run.best
    common = ["--data", str(shapes), "--workers", "0", "--json"]
    result = _json(capsys, ["calibrate", "--weights", str(best), *common])
    temperature = result["temperature"]
    assert temperature > 0 and temperature != 1.0
    assert result["nll_after"] <= result["nll_before"]
    meta = torch.load(best, weights_only=True)["foveal"]["meta"]
    assert meta["temperature"] == pytest.approx(temperature, rel=1e-5)
    backup = best.with_name("best.uncalibrated.ckpt")
    assert Path(result["backup"]) == backup and backup.is_file()
    assert torch.load(backup, weights_only=True)["foveal"]["meta"]["temperature"] == 1.0  # uncalibrated
    folder = run.run_dir / "calibration"
    saved = json.loads((folder / "calibration.json").read_text())
    assert saved["temperature"] == temperature and saved["split"] == "val"
    for name in ("reliability_before.png", "reliability_after.png"):
        assert (folder / name).is_file()

    # foveal val now uses the temperature: ECE down on the calibration split, and equal to calibrate's
    after = _json(capsys, ["val", "--weights", str(best), *common])
    before = _json(capsys, ["val", "--weights", str(backup), *common])
    assert after["ece"] <= before["ece"]
    assert after["ece"] == pytest.approx(result["ece_after"], abs=1e-4)
    assert before["ece"] == pytest.approx(result["ece_before"], abs=1e-4)
    assert after["accuracy"] == before["accuracy"]  # a temperature never changes the argmax

    # predict: probabilities are softmax(logits / T) of the raw model
    images = sorted((shapes / "val").rglob("*.png"))[:6]
    rows = foveal.predict(best, [str(p) for p in images], workers=0)
    loaded = foveal.load(best, temper=False)  # the raw model
    transform = loaded.task.transforms("val")
    batch = torch.stack([loaded.task.item(Sample(str(p), 0), transform)[0] for p in images])
    with torch.no_grad():
        logits = loaded.model(batch)
    expected = (logits / temperature).softmax(dim=1)
    got = torch.tensor([[row["probs"][name] for name in loaded.task.class_names] for row in rows])
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, logits.softmax(dim=1), atol=1e-3)

    # calibrating again keeps the first backup (the uncalibrated weights) untouched
    stamp = backup.stat().st_mtime_ns
    again = _json(capsys, ["calibrate", "--weights", str(best), *common, "--out", str(tmp_path / "c2")])
    assert again["previous_temperature"] == pytest.approx(temperature, rel=1e-5)
    assert again["temperature"] == pytest.approx(temperature, rel=1e-3)
    assert backup.stat().st_mtime_ns == stamp
    assert (tmp_path / "c2" / "calibration.json").is_file()


def test_calibrate_rejects_other_tasks(
    run: foveal.TrainResult, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = torch.load(run.last, weights_only=True)
    checkpoint["foveal"]["meta"]["task"] = "restore"
    fake = tmp_path / "restore.ckpt"
    torch.save(checkpoint, fake)
    capsys.readouterr()
    assert main(["calibrate", "--weights", str(fake), "--data", str(shapes)]) == 2
    assert "unknown task 'restore'" in capsys.readouterr().err
    assert not (tmp_path / "restore.uncalibrated.ckpt").exists()


def test_segmentation_pixel_ece_and_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every segmentation evaluation reports the pixel ECE (equal to the ECE of the flattened pixels),
    and foveal calibrate fits a per-pixel temperature that lowers the pixel NLL."""
    from foveal.data.synth_writers import write_synthetic
    from foveal.engine.checkpoint import load
    from foveal.engine.evaluation import evaluate
    from foveal.engine.loaders import make_loader

    data = write_synthetic(tmp_path / "masks", n=24, imgsz=32, seed=3, fmt="masks")
    run = foveal.train(
        task="segment", data=str(data), model="unet", model_options={"width": 8, "depth": 2}, epochs=1,
        imgsz=32, batch=8, workers=0, progress=False, project=str(tmp_path / "runs"),
    )  # fmt: skip
    loaded = load(run.best)
    metrics = evaluate(loaded, data, split="val", workers=0)
    samples = loaded.task.load_eval_data(str(data), "val")
    probs, targets = [], []
    with torch.no_grad():
        for images, target in make_loader(loaded.task, samples, "val", 8, 0):
            p = loaded.model(images).softmax(1).permute(0, 2, 3, 1)
            valid = target != 255
            probs.append(p[valid])
            targets.append(target[valid])
    expected = expected_calibration_error(torch.cat(probs), torch.cat(targets))
    assert metrics["ece"] == pytest.approx(expected, abs=1e-5)
    capsys.readouterr()
    assert main(["calibrate", "--weights", str(run.best), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nll_after"] <= result["nll_before"] + 1e-9 and result["temperature"] > 0
    calibrated = evaluate(run.best, data, split="val", workers=0)
    assert calibrated["ece"] == pytest.approx(result["ece_after"], abs=0.02)  # all pixels vs the fit subset
    assert calibrated["miou"] == pytest.approx(metrics["miou"])  # a temperature moves no argmax


def test_detection_score_outcomes_hand_case() -> None:
    from foveal.metrics.detection import score_outcomes

    target = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 0.0, 50.0, 10.0]]),
        "labels": torch.tensor([0, 1, 0]),
        "iscrowd": torch.tensor([0, 0, 1]),
    }
    pred = {
        "boxes": torch.tensor(
            [
                [0, 0, 10, 10],
                [1, 0, 10, 10],
                [0, 0, 10, 9],
                [20, 20, 30, 31],
                [40, 0, 50, 10],
                [0, 0, 10, 10],
            ],
            dtype=torch.float32,
        ),  # fmt: skip
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.01]),
        "labels": torch.tensor([0, 0, 1, 1, 0, 0]),
    }
    scores, hits = score_outcomes([pred], [target])
    # TP; duplicate; wrong class; TP; only a crowd box; below the 0.05 score floor (left out)
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7, 0.6, 0.5])
    assert hits.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]


def test_detection_ece_and_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from foveal.data.synth_writers import write_synthetic
    from foveal.engine.evaluation import evaluate

    data = write_synthetic(tmp_path / "coco", n=40, imgsz=32, seed=6, fmt="coco")
    run = foveal.train(
        task="detect", data=str(data), model="centernet", epochs=3, imgsz=32, batch=8, workers=0,
        progress=False, project=str(tmp_path / "runs"),
    )  # fmt: skip
    before = evaluate(run.best, data, split="val", workers=0)
    # the ECE of the kept detections' scores against "is a true positive" (score_outcomes), as torchmetrics
    # computes a binary ECE (measured 0.1067: 62 detections scored, 1 true positive, map50 0.043)
    from foveal.engine.checkpoint import load
    from foveal.engine.inference import run_model
    from foveal.metrics.detection import score_outcomes

    loaded = load(run.best)
    kept, _ = run_model(loaded.task, loaded.model, loaded.task.load_eval_data(str(data), "val"), workers=0)
    scores, hits = (torch.as_tensor(v) for v in score_outcomes(*loaded.task.per_image(kept)))
    assert len(scores) > 0
    expected = binary_calibration_error(scores, hits.long(), n_bins=15, norm="l1").item()
    assert before["ece"] == pytest.approx(expected, abs=1e-6)
    capsys.readouterr()
    assert main(["calibrate", "--weights", str(run.best), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nll_after"] <= result["nll_before"] + 1e-9
    assert torch.load(run.best, weights_only=True)["foveal"]["meta"]["temperature"] == pytest.approx(
        result["temperature"]
    )
    after = evaluate(run.best, data, split="val", workers=0)
    assert after["map"] == pytest.approx(before["map"], abs=1e-6)  # a monotone rescaling keeps the ranking
