"""Error analysis: top losses, confused pairs, detection false positives / negatives, run outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import foveal
from foveal.cli.main import main
from foveal.data.sample import Sample
from foveal.data.synth_writers import write_synthetic
from foveal.engine.error_analysis import (
    confused_pairs,
    detection_errors,
    detection_errors_grid,
    top_losses,
    top_losses_grid,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _images(folder: Path, count: int, size: int = 40) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((size, size, 3), 20 * i, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_top_losses_order_equals_hand_sorted_cross_entropy(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    probs = (torch.randn(30, 4, generator=g) * 2).softmax(dim=1)
    targets = torch.randint(0, 4, (30,), generator=g)
    names = ["a", "b", "c", "d"]
    paths = [f"img{i}.png" for i in range(30)]
    rows = top_losses(paths, probs, targets, names, n=8)
    losses = torch.nn.functional.nll_loss(probs.log(), targets, reduction="none")
    hand = sorted(range(30), key=lambda i: -losses[i].item())[:8]
    assert [row["index"] for row in rows] == hand
    for row in rows:
        i = row["index"]
        assert row["path"] == paths[i]
        assert row["loss"] == pytest.approx(losses[i].item(), abs=1e-5)
        assert row["target"] == names[targets[i]]
        assert row["prediction"] == names[probs[i].argmax()]
        assert row["confidence"] == pytest.approx(probs[i].max().item(), abs=1e-5)
        assert row["correct"] == (probs[i].argmax() == targets[i]).item()
    assert len(top_losses(paths, probs, targets, names, n=100)) == 30


def test_top_losses_multilabel_is_mean_bce() -> None:
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(20, 3, generator=g).clamp(0.01, 0.99)
    targets = torch.randint(0, 2, (20, 3), generator=g)
    rows = top_losses([f"{i}.png" for i in range(20)], probs, targets, ["x", "y", "z"], n=5)
    bce = torch.nn.functional.binary_cross_entropy(probs, targets.float(), reduction="none").mean(dim=1)
    assert [row["index"] for row in rows] == torch.argsort(bce, descending=True)[:5].tolist()
    first = rows[0]
    i = first["index"]
    assert first["target"] == [n for n, t in zip("xyz", targets[i].tolist(), strict=True) if t]
    assert first["prediction"] == [n for n, p in zip("xyz", probs[i].tolist(), strict=True) if p >= 0.5]
    assert first["loss"] == pytest.approx(bce[i].item(), abs=1e-5)


def test_top_losses_grid_writes_png(tmp_path: Path) -> None:
    paths = _images(tmp_path, 5)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.3, 0.7]])
    rows = top_losses(paths, probs, torch.tensor([1, 1, 0, 0, 1]), ["cat", "dog"], n=5)
    assert rows[0]["index"] == 0 and not rows[0]["correct"]
    out = top_losses_grid(rows, tmp_path / "plots" / "top.png")
    assert out.read_bytes()[:8] == PNG


def test_confused_pairs_on_a_hand_matrix() -> None:
    cm = [
        [5, 3, 0, 1],
        [0, 7, 4, 0],
        [2, 0, 9, 3],
        [0, 0, 1, 8],
    ]
    names = ["a", "b", "c", "d"]
    assert confused_pairs(cm, names, n=4) == [("b", "c", 4), ("a", "b", 3), ("c", "d", 3), ("c", "a", 2)]
    every = confused_pairs(np.asarray(cm), names)
    assert len(every) == 6 and every[-2:] == [("a", "d", 1), ("d", "c", 1)]
    assert confused_pairs(np.eye(3, dtype=int) * 5, ["x", "y", "z"]) == []


def test_detection_errors_on_hand_boxes(tmp_path: Path) -> None:
    (path,) = _images(tmp_path, 1, size=100)
    objects = [
        {"bbox": [0, 0, 10, 10], "label": 0},  # found
        {"bbox": [20, 20, 10, 10], "label": 1},  # found as class 0: wrong class
        {"bbox": [40, 40, 10, 10], "label": 0},  # missed
        {"bbox": [80, 80, 20, 20], "label": 1, "iscrowd": 1},  # crowd: never missed
    ]
    prediction = {
        "boxes": np.array(
            [[0, 0, 10, 10], [21, 21, 31, 31], [60, 60, 70, 70], [40, 40, 50, 50], [82, 82, 98, 98]], float
        ),
        "scores": np.array([0.9, 0.8, 0.7, 0.1, 0.95]),  # the 0.1 one is below `score`
        "labels": np.array([0, 0, 1, 0, 1]),
    }
    false_pos, false_neg = detection_errors(
        [Sample(path, objects=objects)], [prediction], class_names=["a", "b"]
    )
    assert [(r["kind"], r["label"], r["score"]) for r in false_pos] == [
        ("wrong_class", "a", 0.8),
        ("background", "b", 0.7),
    ]
    wrong, extra = false_pos
    assert wrong["true_label"] == "b" and wrong["box"] == [21, 21, 31, 31]
    assert wrong["iou"] == pytest.approx(81 / 119, abs=1e-4)
    assert extra["box"] == [60, 60, 70, 70] and extra["iou"] == 0.0
    assert [(r["kind"], r["label"], r["box"]) for r in false_neg] == [
        ("wrong_class", "b", [20, 20, 30, 30]),
        ("missed", "a", [40, 40, 50, 50]),
    ]
    assert false_neg[0]["predicted_label"] == "a"
    # a lower score threshold lets the 0.1 prediction find the missed object
    _, found = detection_errors(
        [Sample(path, objects=objects)], [prediction], score=0.05, class_names=["a", "b"]
    )
    assert [r["kind"] for r in found] == ["wrong_class"]
    # a duplicate of a found object, and one that overlaps an object but too little (localization)
    extra_boxes = {
        "boxes": np.array([[0, 0, 10, 10], [1, 0, 10, 10], [40, 40, 46, 46]], float),
        "scores": np.array([0.9, 0.85, 0.6]),
        "labels": np.array([0, 0, 0]),
    }
    false_pos, _ = detection_errors([Sample(path, objects=objects[:3])], [extra_boxes])
    assert [(r["kind"], r["label"]) for r in false_pos] == [("duplicate", 0), ("localization", 0)]
    out = detection_errors_grid(false_neg, tmp_path / "fn.png", "False negatives")
    assert out.read_bytes()[:8] == PNG


def test_write_errors_for_detection(tmp_path: Path) -> None:
    from foveal.engine.error_analysis import write_errors
    from foveal.tasks.detect import Detections, DetectTask

    paths = _images(tmp_path, 2, size=64)
    task = DetectTask({"task": "detect", "class_names": ["a", "b"], "imgsz": 64})
    samples = [
        Sample(
            paths[0], objects=[{"bbox": [4, 4, 20, 20], "label": 0}, {"bbox": [40, 40, 16, 16], "label": 1}]
        ),
        Sample(paths[1], objects=[]),
    ]
    predictions = [
        Detections(np.array([[4.0, 4, 24, 24]]), np.array([0.9]), np.array([1]), task.class_names),
        Detections(np.array([[10.0, 10, 30, 30]]), np.array([0.8]), np.array([0]), task.class_names),
    ]
    metrics = {"confusion_matrix": [[0, 1, 0], [0, 0, 1], [1, 0, 0]]}
    result = write_errors(task, {}, metrics, samples, predictions, tmp_path / "out", tmp_path / "plots")
    report = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert report["false_positives"] == 2 and report["false_negatives"] == 2
    assert report["false_positives_by_kind"] == {"wrong_class": 1, "background": 1}
    assert report["false_negatives_by_kind"] == {"wrong_class": 1, "missed": 1}
    assert report["confused_pairs"][0] == {"true": "a", "predicted": "b", "count": 1}
    assert result["plots"] == [
        str(tmp_path / "plots" / f) for f in ("false_positives.png", "false_negatives.png")
    ]
    assert all(Path(p).read_bytes()[:8] == PNG for p in result["plots"])


# -- the outputs of a training run and of `foveal val --errors` --------------------------------------
@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from foveal.data.synth_writers import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("err") / "data", n=200, imgsz=32, seed=4)


@pytest.fixture(scope="module")
def run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> foveal.TrainResult:
    project = tmp_path_factory.mktemp("err_runs")
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


def test_training_writes_classification_errors(run: foveal.TrainResult) -> None:
    errors = json.loads((run.run_dir / "errors.json").read_text())
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    rows = errors["top_losses"]
    assert len(rows) == min(16, metrics["n"])
    assert [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)
    names = list(metrics["per_class"])
    cm = metrics["confusion_matrix"]
    for pair in errors["confused_pairs"]:
        assert cm[names.index(pair["true"])][names.index(pair["predicted"])] == pair["count"]
    assert [p["count"] for p in errors["confused_pairs"]] == sorted(
        (c for i, row in enumerate(cm) for j, c in enumerate(row) if i != j and c), reverse=True
    )[:10]
    for name in ("top_losses.png", "reliability.png"):
        assert (run.run_dir / "plots" / name).read_bytes()[:8] == PNG


def test_val_errors_flag_writes_the_same_analysis(
    run: foveal.TrainResult, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "errors"
    capsys.readouterr()
    argv = ["val", "--weights", str(run.best), "--data", str(shapes), "--workers", "0", "--errors", str(out)]
    assert main([*argv, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["errors"]["json"] == str(out / "errors.json")
    written = json.loads((out / "errors.json").read_text())
    trained = json.loads((run.run_dir / "errors.json").read_text())
    # the same images and model as training's final evaluation (batch sizes differ: compare losses)
    assert [r["loss"] for r in written["top_losses"]] == pytest.approx(
        [r["loss"] for r in trained["top_losses"]], abs=1e-4
    )
    assert written["confused_pairs"] == trained["confused_pairs"]
    assert (out / "top_losses.png").read_bytes()[:8] == PNG


def test_segmentation_worst_images_by_per_image_miou(tmp_path: Path) -> None:
    """Training a tiny segmenter writes worst_images (sorted by per-image mIoU, checked against sklearn)."""
    from sklearn.metrics import jaccard_score

    from foveal.data.seg_loading import decode_target
    from foveal.engine.checkpoint import load
    from foveal.engine.evaluation import predict

    data = write_synthetic(tmp_path / "masks", n=24, imgsz=32, seed=4, fmt="masks")
    run = foveal.train(
        task="segment", data=str(data), model="unet", model_options={"width": 8, "depth": 2}, epochs=1,
        imgsz=32, batch=8, workers=0, progress=False, project=str(tmp_path / "runs"),
    ).run_dir  # fmt: skip
    doc = json.loads((run / "errors.json").read_text())
    worst = doc["worst_images"]
    assert worst and [r["miou"] for r in worst] == sorted(r["miou"] for r in worst)
    assert (run / "plots" / "worst_images.png").is_file()
    loaded = load(run / "checkpoints" / "best.ckpt")
    row = predict(loaded, [worst[0]["path"]], workers=0)[0]
    image = Path(worst[0]["path"])
    mask = image.parent.parent / "masks" / image.name  # synth masks layout: <split>/images, <split>/masks
    target = decode_target(Sample(str(image), mask=str(mask)), loaded.task._spec())
    present = np.union1d(np.unique(target), np.unique(row["mask"]))
    expected = jaccard_score(target.ravel(), row["mask"].ravel(), labels=present, average="macro")
    assert worst[0]["miou"] == pytest.approx(expected)
