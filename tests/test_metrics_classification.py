"""classification_metrics against scikit-learn on fixed random predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from foveal.errors import ConfigError
from foveal.metrics.classification import classification_metrics, confusion_matrix_normalised

TOL = 1e-6


def _single_label_data(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, c)
    return logits.softmax(dim=1), targets


def _check_single_label(result: dict, probs: torch.Tensor, targets: torch.Tensor, preds: np.ndarray) -> None:
    y, p = targets.numpy(), probs.numpy().astype(np.float64)
    c = p.shape[1]
    assert result["n"] == len(y)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, preds), abs=TOL)
    macro = skm.precision_recall_fscore_support(y, preds, average="macro", zero_division=0)
    assert result["precision_macro"] == pytest.approx(macro[0], abs=TOL)
    assert result["recall_macro"] == pytest.approx(macro[1], abs=TOL)
    assert result["f1_macro"] == pytest.approx(macro[2], abs=TOL)
    per = skm.precision_recall_fscore_support(y, preds, labels=range(c), average=None, zero_division=0)
    for i, row in enumerate(result["per_class"].values()):
        assert [row["precision"], row["recall"], row["f1"]] == pytest.approx(
            [per[0][i], per[1][i], per[2][i]], abs=TOL
        )
        assert row["support"] == per[3][i]
        if row["support"]:
            assert row["ap"] == pytest.approx(skm.average_precision_score(y == i, p[:, i]), abs=TOL)
            assert row["auroc"] == pytest.approx(skm.roc_auc_score(y == i, p[:, i]), abs=TOL)
    assert result["confusion_matrix"] == skm.confusion_matrix(y, preds, labels=range(c)).tolist()
    json.dumps(result, allow_nan=False)


def test_multiclass_matches_sklearn() -> None:
    probs, targets = _single_label_data(300, 4, seed=0)
    result = classification_metrics(probs, targets, "multiclass", ["a", "b", "c", "d"])
    _check_single_label(result, probs, targets, probs.argmax(1).numpy())
    y, p = targets.numpy(), probs.numpy().astype(np.float64)
    assert result["auroc"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=TOL
    )
    assert result["average_precision"] == pytest.approx(
        skm.average_precision_score(np.eye(4)[y], p, average="macro"), abs=TOL
    )
    assert 0.3 < result["accuracy"] < 0.9  # informative, not trivially perfect


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_matches_sklearn(threshold: float) -> None:
    probs, targets = _single_label_data(200, 2, seed=1)
    result = classification_metrics(probs, targets, "binary", ["neg", "pos"], threshold=threshold)
    preds = (probs[:, 1] >= threshold).long().numpy()
    _check_single_label(result, probs, targets, preds)
    y, p1 = targets.numpy(), probs[:, 1].numpy().astype(np.float64)
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(y, p1), abs=TOL)
    assert result["average_precision"] == pytest.approx(skm.average_precision_score(y, p1), abs=TOL)


@pytest.mark.parametrize("threshold", [0.5, [0.3, 0.4, 0.5, 0.6, 0.7]])
def test_multilabel_matches_sklearn(threshold: float | list[float]) -> None:
    g = torch.Generator().manual_seed(2)
    targets = (torch.rand(300, 5, generator=g) < 0.35).long()
    probs = torch.sigmoid(torch.randn(300, 5, generator=g) + 1.5 * (2 * targets - 1))
    names = [f"label{i}" for i in range(5)]
    result = classification_metrics(probs, targets, "multilabel", names, threshold=threshold)
    y, p = targets.numpy(), probs.numpy().astype(np.float64)
    preds = (p >= np.asarray(threshold, dtype=np.float32)).astype(int)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, preds), abs=TOL)
    assert result["hamming_accuracy"] == pytest.approx(1 - skm.hamming_loss(y, preds), abs=TOL)
    assert result["f1_samples"] == pytest.approx(
        skm.f1_score(y, preds, average="samples", zero_division=0), abs=TOL
    )
    macro = skm.precision_recall_fscore_support(y, preds, average="macro", zero_division=0)
    assert [result["precision_macro"], result["recall_macro"], result["f1_macro"]] == pytest.approx(
        macro[:3], abs=TOL
    )
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"), abs=TOL)
    assert result["average_precision"] == pytest.approx(
        skm.average_precision_score(y, p, average="macro"), abs=TOL
    )
    per = skm.precision_recall_fscore_support(y, preds, average=None, zero_division=0)
    aps = skm.average_precision_score(y, p, average=None)
    aurocs = skm.roc_auc_score(y, p, average=None)
    for i, row in enumerate(result["per_class"].values()):
        expected = [per[0][i], per[1][i], per[2][i], aps[i], aurocs[i]]
        assert [row["precision"], row["recall"], row["f1"], row["ap"], row["auroc"]] == pytest.approx(
            expected, abs=TOL
        )
        assert row["support"] == per[3][i]
    assert result["confusion_matrix"] == skm.multilabel_confusion_matrix(y, preds).tolist()
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_perfect_predictions_score_one(kind: str) -> None:
    c = 2 if kind == "binary" else 4
    if kind == "multilabel":
        targets = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]])
        probs = targets.float()
    else:
        targets = torch.arange(12) % c
        probs = torch.nn.functional.one_hot(targets, c).float()
    result = classification_metrics(probs, targets, kind, [f"c{i}" for i in range(c)])
    keys = ["accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc", "average_precision"]
    keys += ["hamming_accuracy", "f1_samples"] if kind == "multilabel" else []
    assert [result[k] for k in keys] == [1.0] * len(keys)
    assert all(row["f1"] == row["ap"] == row["auroc"] == 1.0 for row in result["per_class"].values())


def test_multiclass_with_a_class_absent_from_targets() -> None:
    probs, targets = _single_label_data(300, 4, seed=3)
    targets[targets == 2] = 0  # class "c" never occurs; the model still predicts it sometimes
    result = classification_metrics(probs, targets, "multiclass", ["a", "b", "c", "d"])
    preds = probs.argmax(1).numpy()
    assert (preds == 2).any()
    _check_single_label(result, probs, targets, preds)
    y, p = targets.numpy(), probs.numpy().astype(np.float64)
    assert result["per_class"]["c"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
        "ap": None,
        "auroc": None,
    }
    present = [0, 1, 3]  # sklearn's multiclass roc_auc_score raises here; we average over present classes
    expected_auroc = np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in present])
    expected_ap = skm.average_precision_score(np.eye(4)[y][:, present], p[:, present], average="macro")
    assert result["auroc"] == pytest.approx(expected_auroc, abs=TOL)
    assert result["average_precision"] == pytest.approx(expected_ap, abs=TOL)


def test_multilabel_with_a_label_never_present_or_predicted() -> None:
    g = torch.Generator().manual_seed(4)
    targets = (torch.rand(100, 3, generator=g) < 0.5).long()
    probs = torch.rand(100, 3, generator=g)
    targets[:, 1] = 0
    probs[:, 1] = 0.1
    result = classification_metrics(probs, targets, "multilabel", ["x", "y", "z"])
    y, p = targets.numpy(), probs.numpy().astype(np.float64)
    preds = (p >= 0.5).astype(int)
    assert result["f1_macro"] == pytest.approx(
        skm.f1_score(y, preds, average="macro", zero_division=0), abs=TOL
    )
    assert result["per_class"]["y"]["auroc"] is None and result["per_class"]["y"]["ap"] is None
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(y[:, [0, 2]], p[:, [0, 2]]), abs=TOL)


def test_auroc_is_none_when_no_class_is_defined() -> None:
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4]])
    result = classification_metrics(probs, torch.tensor([0, 0]), "binary", ["neg", "pos"])
    assert result["auroc"] is None and result["average_precision"] is None
    # class 1 is neither a target nor predicted: sklearn (and we) leave it out of the macro average
    assert result["f1_macro"] == skm.f1_score([0, 0], [0, 0], average="macro", zero_division=0) == 1.0
    assert result["per_class"]["neg"]["ap"] == 1.0


def test_bad_inputs_raise() -> None:
    probs, targets = _single_label_data(10, 3, seed=5)
    with pytest.raises(ConfigError, match="multiclas"):
        classification_metrics(probs, targets, "multiclas", ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        classification_metrics(probs, targets, "multiclass", ["a", "b"])
    with pytest.raises(ConfigError, match="threshold"):
        classification_metrics(
            probs, (probs > 0.3).long(), "multilabel", ["a", "b", "c"], threshold=[0.5, 0.5]
        )


def test_confusion_matrix_normalised_rows() -> None:
    cm = [[2, 2, 0], [0, 0, 0], [1, 0, 3]]
    expected = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.25, 0.0, 0.75]])
    np.testing.assert_allclose(confusion_matrix_normalised(cm), expected)
    stacked = confusion_matrix_normalised([[[3, 1], [0, 0]]])
    np.testing.assert_allclose(stacked, [[[0.75, 0.25], [0.0, 0.0]]])
