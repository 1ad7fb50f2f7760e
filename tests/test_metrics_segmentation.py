"""Segmentation metrics agree with numpy, scikit-learn and torchmetrics references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from torchmetrics.classification import MulticlassJaccardIndex

from foveal.errors import DataError
from foveal.metrics.segmentation import confusion_matrix, mean_over_present, segmentation_metrics

IGNORE = 255
NAMES = ["background", "cat", "dog", "bird", "fish"]


def _masks(seed: int = 0, n: int = 3, h: int = 12, w: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (pred, target) masks over 5 classes: class 3 never occurs, class 4 only in predictions
    or only in targets, and about 15% of the target pixels are ignored."""
    rng = np.random.default_rng(seed)
    target = rng.choice([0, 1, 2, 4], size=(n, h, w), p=[0.4, 0.3, 0.25, 0.05])
    pred = np.where(rng.random((n, h, w)) < 0.6, target, rng.choice([0, 1, 2], size=(n, h, w)))
    pred[0, 0, :3] = 4
    target[rng.random((n, h, w)) < 0.15] = IGNORE
    return torch.from_numpy(pred).long(), torch.from_numpy(target).long()


def test_confusion_matrix_matches_sklearn() -> None:
    pred, target = _masks()
    cm = confusion_matrix(pred, target, num_classes=5)
    valid = (target != IGNORE).numpy()
    expected = sk_confusion_matrix(target.numpy()[valid], pred.numpy()[valid], labels=range(5))
    assert cm.dtype == torch.int64 and cm.shape == (5, 5)
    np.testing.assert_array_equal(cm.numpy(), expected)
    assert int(cm.sum()) == int(valid.sum())
    halves = confusion_matrix(pred[:1], target[:1], 5) + confusion_matrix(pred[1:], target[1:], 5)
    np.testing.assert_array_equal(halves.numpy(), expected)  # additive over batches


def test_metrics_match_numpy_sets() -> None:
    pred, target = _masks(seed=1)
    metrics = segmentation_metrics(confusion_matrix(pred, target, 5), NAMES)
    p, t = pred.numpy(), target.numpy()
    valid = t != IGNORE
    ious, dices = [], []
    for c, name in enumerate(NAMES):
        in_pred, in_target = (p == c) & valid, (t == c) & valid
        tp = (in_pred & in_target).sum()
        union = (in_pred | in_target).sum()
        stats = metrics["per_class"][name]
        assert stats["support"] == in_target.sum() and stats["predicted"] == in_pred.sum()
        if union == 0:
            assert stats["iou"] is None and stats["dice"] is None
            continue
        ious.append(tp / union)
        dices.append(2 * tp / (in_pred.sum() + in_target.sum()))
        assert stats["iou"] == pytest.approx(ious[-1], abs=1e-7)
        assert stats["dice"] == pytest.approx(dices[-1], abs=1e-7)
        precision = stats["precision"]
        assert precision == (pytest.approx(tp / in_pred.sum(), abs=1e-7) if in_pred.sum() else None)
        assert stats["recall"] == (pytest.approx(tp / in_target.sum(), abs=1e-7) if in_target.sum() else None)
    assert metrics["present_classes"] == len(ious) == 4
    assert metrics["miou"] == pytest.approx(np.mean(ious), abs=1e-7)
    assert metrics["dice"] == pytest.approx(np.mean(dices), abs=1e-7)
    assert metrics["pixel_accuracy"] == pytest.approx((p == t)[valid].mean(), abs=1e-7)
    assert metrics["confusion_matrix"] == confusion_matrix(pred, target, 5).tolist()
    json.dumps(metrics, allow_nan=False)


def test_per_class_iou_matches_torchmetrics() -> None:
    pred, target = _masks(seed=2)
    metrics = segmentation_metrics(confusion_matrix(pred, target, 5).numpy(), NAMES)
    reference = MulticlassJaccardIndex(num_classes=5, ignore_index=IGNORE, average=None)(pred, target)
    for c, name in enumerate(NAMES):
        if c == 3:  # absent everywhere: torchmetrics scores it 0, foveal leaves it out (None)
            assert metrics["per_class"][name]["iou"] is None
        else:
            assert metrics["per_class"][name]["iou"] == pytest.approx(reference[c].item(), abs=1e-6)
    present = torch.tensor([0, 1, 2, 4])
    assert metrics["miou"] == pytest.approx(reference[present].mean().item(), abs=1e-6)


def test_empty_and_perfect_matrices() -> None:
    empty = segmentation_metrics(np.zeros((2, 2), dtype=np.int64), ["a", "b"])
    assert empty["miou"] is None and empty["dice"] is None and empty["pixel_accuracy"] is None
    assert empty["present_classes"] == 0
    perfect = segmentation_metrics(torch.tensor([[5, 0], [0, 7]]), ["a", "b"])
    assert perfect["miou"] == perfect["dice"] == perfect["pixel_accuracy"] == 1.0
    assert isinstance(perfect["miou"], float)


def test_mean_over_present() -> None:
    assert mean_over_present([0.5, None, 1.0]) == 0.75
    assert mean_over_present([None, None]) is None


def test_bad_inputs_raise() -> None:
    pred, target = _masks(seed=3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(pred[:, :5], target, 5)
    target[0, 0, 0], pred[0, 0, 0] = 1, 7
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(pred, target, 5)
    target[0, 0, 0] = 9
    with pytest.raises(DataError, match="0..4"):
        confusion_matrix(pred, target, 5)
    with pytest.raises(ValueError, match="class names"):
        segmentation_metrics(np.zeros((3, 3)), NAMES)
