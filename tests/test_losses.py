"""Focal loss and the classification-loss factory against torch / torchvision references."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from foveal.errors import ConfigError
from foveal.losses.focal import FocalLoss, build_classification_loss, focal_loss


def _data(seed: int = 0, n: int = 16, c: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2
    hard = torch.randint(0, c, (n,), generator=g)
    soft = torch.rand(n, c, generator=g).softmax(dim=1)
    return logits, hard, soft


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("target_kind", ["hard", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gamma_zero_equals_cross_entropy(smoothing: float, target_kind: str, reduction: str) -> None:
    logits, hard, soft = _data()
    targets = hard if target_kind == "hard" else soft
    expected = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction)
    got = focal_loss(logits, targets, gamma=0.0, label_smoothing=smoothing, reduction=reduction)
    torch.testing.assert_close(got, expected)


def test_softmax_focal_matches_formula_and_down_weights_easy_samples() -> None:
    logits, hard, _ = _data(1)
    alpha = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.25])
    p_true = logits.softmax(dim=1).gather(1, hard[:, None]).squeeze(1)
    expected = -alpha[hard] * (1 - p_true) ** 2 * p_true.log()
    torch.testing.assert_close(focal_loss(logits, hard, gamma=2.0, alpha=alpha, reduction="none"), expected)
    ce = F.cross_entropy(logits, hard, reduction="none")
    focal = focal_loss(logits, hard, gamma=2.0, reduction="none")
    assert bool((focal < ce).all())
    assert float(focal_loss(logits, hard, gamma=2.0, alpha=0.25)) == pytest.approx(0.25 * float(focal.mean()))


@pytest.mark.parametrize("alpha", [None, 0.25, 0.8])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 1.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multilabel_equals_torchvision(alpha: float | None, gamma: float, reduction: str) -> None:
    logits, _, soft = _data(2)
    targets = (soft > 0.2).float()
    expected = sigmoid_focal_loss(
        logits, targets, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    got = focal_loss(logits, targets, gamma=gamma, alpha=alpha, multilabel=True, reduction=reduction)
    torch.testing.assert_close(got, expected)


def test_multilabel_tensor_alpha_weighs_each_label() -> None:
    logits, _, soft = _data(3)
    targets = (soft > 0.2).float()
    alpha = torch.tensor([1.0, 2.0, 0.0, 0.5, 1.0])
    base = sigmoid_focal_loss(logits, targets, alpha=-1, reduction="none")
    got = focal_loss(logits, targets, alpha=alpha, multilabel=True, reduction="none")
    torch.testing.assert_close(got, base * alpha)


def test_focal_gradients_flow() -> None:
    logits, hard, _ = _data(4)
    logits.requires_grad_(True)
    focal_loss(logits, hard).backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all()) and logits.grad.abs().sum() > 0


def test_focal_loss_module_pickles_and_moves_alpha() -> None:
    logits, hard, _ = _data(5)
    module = FocalLoss(gamma=1.0, alpha=torch.ones(5) * 2)
    restored = pickle.loads(pickle.dumps(module))
    torch.testing.assert_close(
        restored(logits, hard), focal_loss(logits, hard, gamma=1.0, alpha=torch.ones(5) * 2)
    )
    assert "alpha" in dict(module.named_buffers())
    torch.testing.assert_close(FocalLoss(alpha=0.5)(logits, hard), focal_loss(logits, hard, alpha=0.5))


def test_build_ce_matches_cross_entropy_with_weights_and_soft_targets() -> None:
    logits, hard, soft = _data(6)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    loss = build_classification_loss("ce", multilabel=False, class_weights=weights, label_smoothing=0.1)
    for targets in (hard, soft):
        expected = F.cross_entropy(logits, targets, weight=weights, label_smoothing=0.1)
        torch.testing.assert_close(loss(logits, targets), expected)
    assert build_classification_loss("auto", multilabel=False)(logits, hard) == pytest.approx(
        float(F.cross_entropy(logits, hard))
    )


def test_build_bce_multilabel_and_one_hot() -> None:
    logits, hard, soft = _data(7)
    targets = (soft > 0.2).float()
    loss = build_classification_loss("bce", multilabel=True)
    torch.testing.assert_close(loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    auto = build_classification_loss("auto", multilabel=True)
    torch.testing.assert_close(auto(logits, targets), loss(logits, targets))
    single = build_classification_loss("bce", multilabel=False, label_smoothing=0.2)
    smoothed = F.one_hot(hard, 5).float() * 0.8 + 0.1
    torch.testing.assert_close(single(logits, hard), F.binary_cross_entropy_with_logits(logits, smoothed))
    weights = torch.tensor([1.0, 0.0, 2.0, 1.0, 1.0])
    weighted = build_classification_loss("bce", multilabel=True, class_weights=weights)
    expected = F.binary_cross_entropy_with_logits(logits, targets, weight=weights)
    torch.testing.assert_close(weighted(logits, targets), expected)


def test_build_focal_uses_gamma_and_class_weights() -> None:
    logits, hard, soft = _data(8)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    loss = build_classification_loss("focal", multilabel=False, class_weights=weights, gamma=1.0)
    torch.testing.assert_close(loss(logits, hard), focal_loss(logits, hard, gamma=1.0, alpha=weights))
    targets = (soft > 0.2).float()
    ml = build_classification_loss("focal", multilabel=True)
    torch.testing.assert_close(
        ml(logits, targets), sigmoid_focal_loss(logits, targets, alpha=-1, reduction="mean")
    )


@pytest.mark.parametrize("name", ["ce", "bce", "focal"])
def test_built_losses_pickle(name: str) -> None:
    logits, hard, _ = _data(9)
    loss = build_classification_loss(name, multilabel=False, class_weights=torch.ones(5))
    restored = pickle.loads(pickle.dumps(loss))
    torch.testing.assert_close(restored(logits, hard), loss(logits, hard))


def test_build_rejects_bad_names_and_combinations() -> None:
    with pytest.raises(ConfigError, match="use loss 'bce' or 'focal'"):
        build_classification_loss("ce", multilabel=True)
    with pytest.raises(ConfigError, match="did you mean: focal"):
        build_classification_loss("focall", multilabel=False)
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_classification_loss("ce", multilabel=False, label_smoothing=1.5)
    with pytest.raises(ConfigError, match="reduction"):
        focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="avg")
