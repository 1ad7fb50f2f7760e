"""Plot functions write valid PNGs atomically and survive awkward inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from foveal import atomic
from foveal.report import plots


def _assert_png(path: Path, min_side: int = 200) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= min_side and max(image.size) <= 6000
        assert len(set(np.asarray(image.convert("L")).ravel().tolist())) > 10  # something was drawn
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def _probs(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, targets


def test_plot_history_with_missing_keys(tmp_path: Path) -> None:
    history = [
        {"epoch": 0, "train/loss": 1.2, "lr": 0.1},
        {"epoch": 0, "val/loss": 1.3, "val/accuracy": 0.4, "val/f1_macro": 0.3},
        {"epoch": 1, "train/loss": 0.9, "lr": 0.05},
        {"epoch": 1, "val/loss": 1.0, "val/accuracy": 0.6},
        {"epoch": 2, "train/loss": 0.7, "val/loss": float("nan"), "val/accuracy": 0.7, "lr": 0.01},
    ]
    written = plots.plot_history(history, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["loss.png", "lr.png", "metrics.png"]
    for path in written:
        _assert_png(path)
    no_lr = plots.plot_history([{"train/loss": 1.0}, {"train/loss": 0.5}], tmp_path / "other")
    assert [p.name for p in no_lr] == ["loss.png"]
    assert plots.plot_history([], tmp_path / "empty") == []


@pytest.mark.parametrize(("n_classes", "normalise"), [(3, True), (3, False), (30, True)])
def test_plot_confusion_matrix(tmp_path: Path, normalise: bool, n_classes: int) -> None:
    rng = np.random.default_rng(0)
    density = 0.5 if n_classes < 10 else 0.1  # big matrices are mostly empty off the diagonal
    shape = (n_classes, n_classes)
    cm = (rng.random(shape) < density) * rng.integers(1, 20, shape) + 50 * np.eye(n_classes, dtype=int)
    cm[1] = 0  # a class absent from the targets
    names = [f"class_{i}" for i in range(n_classes)]
    out = plots.plot_confusion_matrix(cm.tolist(), names, tmp_path / "cm.png", normalise=normalise)
    assert out == tmp_path / "cm.png"
    _assert_png(out, min_side=400)
    with pytest.raises(ValueError, match="confusion matrix"):
        plots.plot_confusion_matrix(cm.tolist(), names[:-1], tmp_path / "bad.png")


@pytest.mark.parametrize("plot", [plots.plot_roc, plots.plot_pr])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_roc_and_pr_plots_with_an_absent_class(tmp_path: Path, plot, kind: str) -> None:
    if kind == "multilabel":
        rng = np.random.default_rng(1)
        targets = (rng.random((60, 4)) < 0.4).astype(int)
        targets[:, 2] = 0
        probs = rng.random((60, 4))
        names = ["w", "x", "y", "z"]
    else:
        c = 2 if kind == "binary" else 4
        probs, targets = _probs(60, c, seed=2)
        if kind == "multiclass":
            targets[targets == 2] = 0
        names = [f"c{i}" for i in range(c)]
    out = plot(probs, targets, kind, names, tmp_path / "sub" / "curve.png")
    _assert_png(out)


def test_plot_lr_find(tmp_path: Path) -> None:
    lrs = np.logspace(-6, 0, 50)
    losses = 2.0 - np.exp(-((np.log10(lrs) + 3) ** 2))
    _assert_png(plots.plot_lr_find(lrs.tolist(), losses.tolist(), 1e-3, tmp_path / "lr_find.png"))
    _assert_png(plots.plot_lr_find(lrs.tolist(), losses.tolist(), None, tmp_path / "lr_none.png"))
    with pytest.raises(ValueError, match="equal length"):
        plots.plot_lr_find([1e-3], [], None, tmp_path / "bad.png")


def test_overwrite_goes_through_a_temp_file_in_the_same_folder(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "lr.png"
    out.write_bytes(b"old contents")
    calls = []
    real_replace = os.replace

    def recording_replace(src, dst):
        calls.append((Path(src), Path(dst)))
        assert Path(dst).read_bytes() == b"old contents"  # the old file is intact until the swap
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    plots.plot_lr_find([1e-4, 1e-3, 1e-2], [1.0, 0.5, 2.0], 1e-3, out)
    ((src, dst),) = calls
    assert dst == out and src.parent == out.parent and src != out
    _assert_png(out)


def test_failed_render_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "cm.png"
    out.write_bytes(b"old contents")

    def failing_savefig(self, handle, *args, **kwargs):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], out)
    assert out.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png"]
