"""The classical baseline: features against scikit-image, metrics against scikit-learn, the run folder,
SMOTE, the deep-run comparison and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.feature import hog
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from foveal.analysis.baseline import (
    MODELS,
    BaselineResult,
    baseline,
    build_pipeline,
    extract_features,
    image_features,
    predict_probs,
)
from foveal.cli.main import main
from foveal.data.loading import load_classification
from foveal.data.synth_writers import write_synthetic
from foveal.errors import BadImageError, ConfigError, DataError
from foveal.metrics.classification import classification_metrics

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 shapes at 32 px with train/val/test folders."""
    return write_synthetic(tmp_path_factory.mktemp("bl_small") / "data", n=200, imgsz=32, fmt="imagefolder")


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BaselineResult]:
    """HOG + logreg on 800 shapes at 64 px (560 train, 240 val)."""
    root = tmp_path_factory.mktemp("bl_shapes")
    data = write_synthetic(root / "data", n=800, imgsz=64, seed=0, splits=(0.7, 0.3, 0.0))
    return data, baseline(data, project=root / "runs", **QUIET)


def _hog_reference(path: Path, size: int, cell: int) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float64) / 255.0
    return hog(
        array,
        orientations=9,
        pixels_per_cell=(cell, cell),
        cells_per_block=(3, 3),
        block_norm="L2-Hys",
        channel_axis=-1,
    )


def test_hog_and_pixel_features_match_direct_calls(small: Path) -> None:
    paths = sorted((small / "train" / "star").glob("*.png"))[:2]
    native = image_features(paths[0], "hog", imgsz=32)
    reference = _hog_reference(paths[0], 32, 8)
    assert native.shape == (324,) and native.dtype == np.float32
    np.testing.assert_allclose(native, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        image_features(paths[0], "hog", imgsz=16), _hog_reference(paths[0], 16, 4), atol=1e-6
    )
    pixels = image_features(paths[1], "pixels", imgsz=32)
    np.testing.assert_allclose(
        pixels, np.asarray(Image.open(paths[1]).convert("RGB")).ravel() / 255.0, atol=1e-7
    )
    stacked = extract_features(paths, "hog", 32, workers=2, progress=False)
    np.testing.assert_array_equal(stacked[1], image_features(paths[1], "hog", 32))
    assert stacked.shape == (2, 324)


def test_logreg_on_hog_beats_chance_and_metrics_match_sklearn(
    shapes_run: tuple[Path, BaselineResult],
) -> None:
    data, result = shapes_run
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    print(f"HOG + logreg val accuracy on 800 shapes at 64 px: {metrics['accuracy']:.3f}")
    assert metrics["accuracy"] > 0.6  # 4 classes: chance is 0.25
    pipeline = joblib.load(result.run_dir / "model.joblib")
    val = load_classification(data).split("val")
    x = extract_features([s.path for s in val], "hog", 64, progress=False)
    y = np.array([s.label for s in val])
    predicted = pipeline.predict(x)
    assert metrics["n"] == len(val) == 240
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-6)
    assert metrics["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"), abs=1e-6)
    auroc = roc_auc_score(y, pipeline.predict_proba(x), multi_class="ovr", average="macro")
    assert metrics["auroc"] == pytest.approx(auroc, abs=1e-5)
    assert metrics["test"] is None  # this data has no test split
    assert result.metrics["accuracy"] == metrics["accuracy"]


def test_run_folder_and_metric_keys_mirror_a_deep_run(small: Path, tmp_path: Path) -> None:
    result = baseline(small, model="nb", project=tmp_path, **QUIET)
    assert result.run_dir == tmp_path / "baseline-hog-nb"  # PROJECT/NAME, as for every command
    for name in (
        "baseline.yaml",
        "model.joblib",
        "metrics.json",
        "report.html",
        "plots/confusion_matrix.png",
    ):
        assert (result.run_dir / name).is_file(), name
    probs = torch.tensor(
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.2, 0.2, 0.5, 0.1], [0.1, 0.1, 0.1, 0.7]]
    )
    names = ["circle", "square", "star", "triangle"]
    reference = classification_metrics(probs, torch.arange(4), "multiclass", names)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    extras = {
        "split",
        "test",
        "features",
        "model",
        "feature_seconds",
        "fit_seconds",
        "train_seconds",
        "model_file",
    }
    assert set(metrics) - extras == set(reference)
    assert set(metrics["test"]) == set(reference)
    assert set(metrics["per_class"]["star"]) == set(reference["per_class"]["star"])
    assert metrics["split"] == "val" and metrics["features"] == "hog" and metrics["model"] == "nb"
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["n"]
    again = baseline(small, model="nb", project=tmp_path, **QUIET)
    assert again.run_dir.name == "baseline-hog-nb-2"  # never overwrites
    assert again.metrics["accuracy"] == metrics["accuracy"]  # same seed, same split, same result


@pytest.mark.parametrize("model", MODELS)
def test_each_model_runs(small: Path, tmp_path: Path, model: str) -> None:
    features = "pixels" if model == "nb" else "hog"
    result = baseline(small, features=features, model=model, imgsz=32, project=tmp_path, **QUIET)
    pipeline = joblib.load(result.run_dir / "model.joblib")
    val = load_classification(small).split("val")
    probs = predict_probs(pipeline, extract_features([s.path for s in val], features, 32, progress=False), 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    expected = accuracy_score([s.label for s in val], probs.argmax(axis=1))
    assert result.metrics["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert result.metrics["n"] == len(val) and result.metrics["test"]["n"] > 0


def test_smote_balances_training_counts(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", n=200, imgsz=32, imbalance=5)
    result = baseline(data, smote=True, imgsz=32, project=tmp_path / "runs", **QUIET)
    pipeline = joblib.load(result.run_dir / "model.joblib")
    train = load_classification(data).split("train")
    y = np.array([s.label for s in train])
    counts = np.bincount(y, minlength=4)
    assert counts[0] >= 3 * counts[1:].max()  # circle is the majority, about 5:1
    x = pipeline.named_steps["scale"].transform(
        extract_features([s.path for s in train], "hog", 32, progress=False)
    )
    sampler = pipeline.named_steps["smote"]
    assert sampler.k_neighbors == min(5, counts.min() - 1)
    _, resampled = sampler.fit_resample(x, y)
    assert np.bincount(resampled, minlength=4).tolist() == [counts.max()] * 4
    # the reported metrics are the saved (SMOTE-trained) pipeline's on val, as scikit-learn scores them
    # (measured accuracy 0.35 on 20 images, chance 0.25: too few images for a bar to mean anything)
    val = load_classification(data).split("val")
    probs = predict_probs(pipeline, extract_features([s.path for s in val], "hog", 32, progress=False), 4)
    truth, predicted = [s.label for s in val], probs.argmax(axis=1)
    assert result.metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-6)
    assert result.metrics["confusion_matrix"] == confusion_matrix(truth, predicted, labels=range(4)).tolist()


def test_smote_needs_two_images_per_class() -> None:
    with pytest.raises(DataError, match="class 'b' has 1 training image"):
        build_pipeline("logreg", [5, 1], ["a", "b"], smote=True)
    with pytest.raises(DataError, match="only one class"):
        build_pipeline("logreg", [5, 0], ["a", "b"])


def test_cli_with_run_writes_the_comparison(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    deep = tmp_path / "deep"
    deep.mkdir()
    deep_metrics = {
        "accuracy": 0.99,
        "f1_macro": 0.98,
        "per_class": {},
        "test": {"accuracy": 0.97, "f1_macro": 0.96},
    }
    (deep / "metrics.json").write_text(json.dumps(deep_metrics))
    argv = ["baseline", "--data", str(small), "--model", "knn", "--imgsz", "32", "--run", str(deep)]
    code = main([*argv, "--project", str(tmp_path / "runs"), "--no-progress", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    saved = json.loads((deep / "comparisons" / "baseline-hog-knn.json").read_text())
    assert saved["features"] == "hog" and saved["model"] == "knn" and saved["run_dir"] == out["run_dir"]
    assert saved["metrics"]["accuracy"] == out["metrics"]["accuracy"]
    assert saved["metrics"]["test"]["accuracy"] == out["metrics"]["test"]["accuracy"]
    assert saved["seconds"] > 0
    assert out["comparison"]["val"]["accuracy"] == {"deep": 0.99, "baseline": out["metrics"]["accuracy"]}
    assert out["comparison"]["test"]["f1_macro"]["deep"] == 0.96
    assert (deep / "report.html").is_file()
    assert main(["baseline", "--data", str(small), "--model", "nb", "--project", str(tmp_path / "r2")]) == 0
    assert "deep vs baseline" not in capsys.readouterr().out


def test_bad_input(small: Path, shapes_csv: Path, tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="single-label"):
        baseline(shapes_csv, project=tmp_path, **QUIET)
    with pytest.raises(ConfigError, match="choose one of: logreg, svm, rf, nb, knn"):
        baseline(small, model="xgboost", project=tmp_path, **QUIET)
    with pytest.raises(ConfigError, match="choose one of: hog, pixels"):
        baseline(small, features="sift", project=tmp_path, **QUIET)
    assert main(["baseline", "--data", str(small), "--model", "svc", "--project", str(tmp_path)]) == 2
    with pytest.raises(DataError, match="no such run folder"):
        baseline(small, run=tmp_path / "missing", project=tmp_path, **QUIET)
    (tiny_folder / "red" / "broken.png").write_bytes(b"")
    with pytest.raises(BadImageError, match="broken.png"):
        baseline(tiny_folder, project=tmp_path, **QUIET)
    (tiny_folder / "red" / "broken.png").unlink()
    for image in (tiny_folder / "blue").iterdir():
        image.unlink()
    (tiny_folder / "blue").rmdir()
    with pytest.raises(DataError, match="at least two classes"):
        baseline(tiny_folder, project=tmp_path, **QUIET)
    assert not list(tmp_path.glob("baseline-*"))  # failures leave no half-made run folder
