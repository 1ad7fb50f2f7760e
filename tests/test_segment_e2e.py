"""Semantic segmentation end to end: train, evaluate, predict (masks, overlays, areas, instances), CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import foveal
from foveal.cli.main import main

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out

FAST = {"imgsz": 32, "batch": 16, "workers": 0, "progress": False}
CLASSES = ["background", "circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def shapes_masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from foveal.data.synth_writers import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("masks") / "data", n=120, imgsz=32, seed=3, fmt="masks")


@pytest.fixture(scope="module")
def seg_run(shapes_masks: Path, tmp_path_factory: pytest.TempPathFactory) -> foveal.TrainResult:
    project = tmp_path_factory.mktemp("seg_runs")
    return foveal.train(task="segment", data=str(shapes_masks), epochs=2, project=str(project), **FAST)


def test_segment_run_artefacts_and_metrics(seg_run: foveal.TrainResult, shapes_masks: Path) -> None:
    run = seg_run.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("miou", "dice", "pixel_accuracy", "per_class", "confusion_matrix", "test"):
        assert key in metrics
    assert set(metrics["per_class"]) == set(CLASSES)
    # 2 epochs learn little (measured mIoU 0.173, pixel accuracy 0.736, below the 0.826 of predicting
    # background everywhere), so no bar; instead the metrics equal scikit-learn's on the model's pixels
    cm = _sklearn_confusion(seg_run.best, shapes_masks, "val")
    assert metrics["confusion_matrix"] == cm.tolist()
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))  # every class is present in val
    assert metrics["miou"] == pytest.approx(iou.mean(), abs=1e-6)
    assert [metrics["per_class"][c]["iou"] for c in CLASSES] == pytest.approx(iou.tolist(), abs=1e-6)
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-6)
    for name in ("per_class_iou.png", "confusion_matrix.png", "examples.png", "loss.png"):
        assert (run / "plots" / name).is_file(), name
    meta = torch.load(seg_run.best, weights_only=True)["foveal"]["meta"]
    assert meta["task"] == "segment" and meta["class_names"] == CLASSES and meta["kind"] == "multiclass"
    again = foveal.evaluate(seg_run.best, shapes_masks, split="val", workers=0)
    assert (
        again["miou"] == pytest.approx(metrics["miou"])
        and again["confusion_matrix"] == metrics["confusion_matrix"]
    )


def _sklearn_confusion(weights: Path, data: Path, split: str) -> np.ndarray:
    """scikit-learn's confusion matrix (rows: truth) of the argmax of the model's logits on ``split``."""
    from sklearn.metrics import confusion_matrix

    from foveal.engine.loaders import make_loader

    loaded = foveal.load(weights)
    samples = loaded.task.load_eval_data(str(data), split)
    truth, predicted = [], []
    with torch.no_grad():
        for images, target in make_loader(loaded.task, samples, "val", 16, 0):
            valid = target != loaded.task.ignore_index
            truth.append(target[valid])
            predicted.append(loaded.model(images).argmax(1)[valid])
    return confusion_matrix(torch.cat(truth), torch.cat(predicted), labels=range(len(CLASSES)))


def test_segment_predict_writes_masks_overlays_areas_instances(
    seg_run: foveal.TrainResult, shapes_masks: Path, tmp_path: Path
) -> None:
    images = sorted((shapes_masks / "test" / "images").glob("*.png"))[:3]
    big = tmp_path / "big.png"
    Image.open(images[0]).resize((48, 40)).save(big)  # another size than the model input
    rows = foveal.predict(
        seg_run.best, [*map(str, images), str(big)], out=tmp_path / "p", instances=True, min_size=2, workers=0
    )
    assert len(rows) == 4
    for row in rows:
        mask = np.asarray(Image.open(row["mask_png"]))
        width, height = Image.open(row["path"]).size
        assert mask.shape == (height, width) and mask.max() < len(CLASSES)
        assert np.array_equal(mask, row["mask"])
        assert sum(row["areas"].values()) == width * height
        assert set(row["instances"]) <= set(CLASSES[1:])
        assert Image.open(row["overlay"]).size == (width, height)
    saved = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert "mask" not in saved[0] and saved[0]["areas"] == rows[0]["areas"]
    assert (tmp_path / "p" / "predictions.csv").read_text().startswith("path,")


def test_binary_segmentation_uses_one_sigmoid_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for i in range(count):
            mask = np.zeros((32, 32), np.uint8)
            y, x = rng.integers(8, 24, 2)
            mask[y - 6 : y + 6, x - 6 : x + 6] = 1
            image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            image[mask == 1] = (220, 200, 40)
            (tmp_path / "d" / split / "images").mkdir(parents=True, exist_ok=True)
            (tmp_path / "d" / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "d" / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(tmp_path / "d" / split / "masks" / f"{i}.png")
    (tmp_path / "d" / "classes.txt").write_text("background\nblob\n")
    run = foveal.train(
        task="segment",
        data=str(tmp_path / "d"),
        epochs=2,
        project=str(tmp_path / "r"),
        loss="ce+dice",
        **FAST,
    )
    loaded = foveal.load(run.best)
    assert loaded.task.binary and loaded.model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert set(run.metrics["per_class"]) == {"background", "blob"}


def test_segment_from_coco_and_smp_model(tmp_path: Path) -> None:
    from foveal.data.synth_writers import write_synthetic

    data = write_synthetic(tmp_path / "coco", n=40, imgsz=32, seed=4, fmt="coco")
    run = foveal.train(
        task="segment",
        data=str(data),
        epochs=1,
        model="smp:unet:resnet18",
        project=str(tmp_path / "r"),
        **FAST,
    )
    assert run.metrics["per_class"].keys() == set(CLASSES)


def test_segment_cli_train_and_predict(
    shapes_masks: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "train",
                "--task",
                "segment",
                "--data",
                str(shapes_masks),
                "--epochs",
                "1",
                "--imgsz",
                "32",
                "--workers",
                "0",
                "--project",
                str(tmp_path),
                "--name",
                "seg",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert "miou" in result["metrics"]
    image = str(sorted((shapes_masks / "test" / "images").glob("*.png"))[0])
    assert (
        main(
            [
                "predict",
                "--weights",
                result["best"],
                image,
                "--out",
                str(tmp_path / "p"),
                "--instances",
                "--fill-holes",
                "--json",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert rows[0]["mask_png"].endswith(".png") and "instances" in rows[0]
    (tmp_path / "bad" / "train" / "images").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "masks").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "bad" / "train" / "images" / "lonely.png")
    assert main(["train", "--task", "segment", "--data", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "lonely" in capsys.readouterr().err
