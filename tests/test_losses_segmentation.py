"""Segmentation losses match hand-written formulas and the torch references, and skip ignored pixels."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from foveal.errors import ConfigError, DataError
from foveal.losses.segmentation import (
    build_segmentation_loss,
    parse_loss_spec,
    soft_dice_loss,
    soft_jaccard_loss,
)

IGNORE = 255
EPS = 1e-6


def _batch(binary: bool, seed: int = 0, b: int = 2, c: int = 3, h: int = 6, w: int = 5):
    gen = torch.Generator().manual_seed(seed)
    channels = 1 if binary else c
    logits = torch.randn(b, channels, h, w, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 2 if binary else c, (b, h, w), generator=gen)
    targets[torch.rand(b, h, w, generator=gen) < 0.2] = IGNORE
    return logits, targets


def _numpy_soft(logits: torch.Tensor, targets: torch.Tensor, binary: bool) -> tuple[np.ndarray, ...]:
    """Per-class (sum p*t, sum p^2, sum t^2) straight from the definitions, with numpy."""
    x = logits.numpy()
    t = targets.numpy()
    valid = t != IGNORE
    if binary:
        probs = [1.0 / (1.0 + np.exp(-x[:, 0]))]
        onehots = [(t == 1).astype(np.float64)]
    else:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        soft = e / e.sum(axis=1, keepdims=True)
        probs = [soft[:, k] for k in range(x.shape[1])]
        onehots = [(t == k).astype(np.float64) for k in range(x.shape[1])]
    inter = np.array([(p * y)[valid].sum() for p, y in zip(probs, onehots, strict=True)])
    p_sq = np.array([(p**2)[valid].sum() for p in probs])
    t_sq = np.array([(y**2)[valid].sum() for y in onehots])
    return inter, p_sq, t_sq


@pytest.mark.parametrize("binary", [False, True])
def test_dice_and_jaccard_match_numpy_formulas(binary: bool) -> None:
    logits, targets = _batch(binary)
    inter, p_sq, t_sq = _numpy_soft(logits, targets, binary)
    dice = np.mean(1 - (2 * inter + EPS) / (p_sq + t_sq + EPS))
    jaccard = np.mean(1 - (inter + EPS) / (p_sq + t_sq - inter + EPS))
    assert soft_dice_loss(logits, targets, binary=binary).item() == pytest.approx(dice, rel=1e-9)
    assert soft_jaccard_loss(logits, targets, binary=binary).item() == pytest.approx(jaccard, rel=1e-9)
    assert 0 < jaccard < 1 and dice < jaccard  # the two losses differ: the test can tell them apart


def test_dice_class_weights_give_weighted_class_mean() -> None:
    logits, targets = _batch(False, seed=3)
    inter, p_sq, t_sq = _numpy_soft(logits, targets, False)
    weights = np.array([0.2, 1.0, 3.0])
    per_class = 1 - (2 * inter + EPS) / (p_sq + t_sq + EPS)
    expected = (per_class * weights).sum() / weights.sum()
    got = soft_dice_loss(logits, targets, binary=False, class_weights=torch.tensor(weights))
    assert got.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("binary", [False, True])
def test_perfect_prediction_gives_zero_loss(binary: bool) -> None:
    _, targets = _batch(binary, seed=1)
    targets[0, 0, 0] = IGNORE
    safe = targets.clamp(max=1 if binary else 2)
    if binary:
        logits = (safe.double() * 2 - 1).unsqueeze(1) * 60.0
    else:
        targets[targets == 2] = 1  # class 2 absent from the target and (almost) from the prediction
        safe = targets.clamp(max=2)
        logits = F.one_hot(safe, 3).permute(0, 3, 1, 2).double() * 60.0
    loss = build_segmentation_loss("ce+dice+jaccard+focal", binary=binary, num_classes=2 if binary else 3)(
        logits, targets
    )
    for name, value in loss.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("term", ["ce", "dice", "jaccard", "focal"])
def test_ignored_pixels_change_nothing(binary: bool, term: str) -> None:
    logits, targets = _batch(binary, seed=2)
    weights = torch.tensor([0.5, 2.0] if binary else [0.5, 2.0, 1.0])
    loss_fn = build_segmentation_loss(term, binary=binary, num_classes=len(weights), class_weights=weights)
    changed = logits.clone()
    ignored = (targets == IGNORE).unsqueeze(1).expand_as(logits)
    changed[ignored] = torch.randn(int(ignored.sum()), dtype=torch.float64) * 10
    assert int(ignored.sum()) > 0
    changed.requires_grad_(True)
    value = loss_fn(changed, targets)[term]
    assert value.item() == pytest.approx(loss_fn(logits, targets)[term].item(), rel=1e-12)
    value.backward()
    assert torch.all(changed.grad[ignored] == 0)
    assert changed.grad[~ignored].abs().sum() > 0


def test_weighted_sum_and_per_term_values() -> None:
    logits, targets = _batch(False, seed=4)
    out = build_segmentation_loss("0.5*ce+dice", binary=False, num_classes=3)(logits, targets)
    assert set(out) == {"loss", "ce", "dice"}
    ce = F.cross_entropy(logits, targets, ignore_index=IGNORE)
    dice = soft_dice_loss(logits, targets, binary=False)
    assert out["ce"].item() == pytest.approx(ce.item(), rel=1e-12)
    assert out["dice"].item() == pytest.approx(dice.item(), rel=1e-12)
    assert out["loss"].item() == pytest.approx(0.5 * ce.item() + dice.item(), rel=1e-12)


def test_ce_term_matches_torch_references() -> None:
    logits, targets = _batch(False, seed=5)
    weights = torch.tensor([0.3, 1.0, 2.5])
    got = build_segmentation_loss("ce", binary=False, num_classes=3, class_weights=weights)(logits, targets)
    expected = F.cross_entropy(logits, targets, weight=weights.double(), ignore_index=IGNORE)
    assert got["loss"].item() == pytest.approx(expected.item(), rel=1e-9)

    logits, targets = _batch(True, seed=5)
    valid = targets != IGNORE
    x, y = logits[:, 0][valid], targets[valid].double()
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    got = build_segmentation_loss("ce", binary=True, num_classes=2)(logits, targets)
    assert got["ce"].item() == pytest.approx(bce.mean().item(), rel=1e-9)
    pixel_w = torch.tensor([0.25, 4.0], dtype=torch.float64)[targets[valid]]
    weights = torch.tensor([0.25, 4.0])
    weighted = build_segmentation_loss("ce", binary=True, num_classes=2, class_weights=weights)
    expected = (bce * pixel_w).sum() / pixel_w.sum()
    assert weighted(logits, targets)["ce"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_term_matches_references() -> None:
    logits, targets = _batch(False, seed=6)
    gamma0 = build_segmentation_loss("focal", binary=False, num_classes=3, focal_gamma=0.0)
    ce = F.cross_entropy(logits, targets, ignore_index=IGNORE)
    assert gamma0(logits, targets)["focal"].item() == pytest.approx(ce.item(), rel=1e-9)

    logits, targets = _batch(True, seed=6)
    valid = targets != IGNORE
    expected = sigmoid_focal_loss(logits[:, 0][valid], targets[valid].double(), alpha=-1, gamma=2.0)
    got = build_segmentation_loss("focal", binary=True, num_classes=2)(logits, targets)
    assert got["focal"].item() == pytest.approx(expected.mean().item(), rel=1e-9)


@pytest.mark.parametrize("binary", [False, True])
def test_gradients_flow_through_every_term(binary: bool) -> None:
    logits, targets = _batch(binary, seed=7)
    logits = logits.float().requires_grad_(True)
    out = build_segmentation_loss("ce+dice+jaccard+focal", binary=binary, num_classes=2 if binary else 3)(
        logits, targets
    )
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_half_precision_logits_are_scored_in_float32() -> None:
    logits, targets = _batch(False, seed=11, h=32, w=32)
    half = logits.to(torch.bfloat16)
    loss_fn = build_segmentation_loss("ce+dice+jaccard", binary=False, num_classes=3)
    out = loss_fn(half, targets)
    reference = loss_fn(half.float(), targets)
    for name, value in out.items():
        assert value.dtype == torch.float32 and value.item() == reference[name].item(), name


def test_all_pixels_ignored_gives_zero_not_nan() -> None:
    logits, targets = _batch(False, seed=8)
    targets[:] = IGNORE
    logits.requires_grad_(True)
    out = build_segmentation_loss("ce+dice+jaccard+focal", binary=False, num_classes=3)(logits, targets)
    assert all(value.item() == 0.0 for value in out.values())
    out["loss"].backward()


def test_spec_parsing_and_errors() -> None:
    assert parse_loss_spec(" 0.5*CE + dice ") == [("ce", 0.5), ("dice", 1.0)]
    assert parse_loss_spec("focal+2*jaccard") == [("focal", 1.0), ("jaccard", 2.0)]
    with pytest.raises(ConfigError, match="did you mean: dice"):
        parse_loss_spec("ce+dise")
    for bad in ("x*ce", "-1*ce", "0*dice", "ce+", "ce*0.5", "ce+ce", "nan*ce"):
        with pytest.raises(ConfigError):
            parse_loss_spec(bad)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ConfigError, match="num_classes 2"):
        build_segmentation_loss("ce", binary=True, num_classes=3)
    with pytest.raises(ConfigError, match="class_weights"):
        build_segmentation_loss("ce", binary=False, num_classes=3, class_weights=torch.ones(2))
    logits, targets = _batch(False, seed=9)
    loss_fn = build_segmentation_loss("ce", binary=False, num_classes=3)
    with pytest.raises(ValueError, match="logits"):
        loss_fn(logits[:, :2], targets)
    targets[0, 0, 0] = 7
    with pytest.raises(DataError, match="0..2"):
        loss_fn(logits, targets)


def test_loss_is_picklable() -> None:
    logits, targets = _batch(False, seed=10)
    weights = torch.ones(3)
    loss_fn = build_segmentation_loss("ce+0.3*jaccard", binary=False, num_classes=3, class_weights=weights)
    clone = pickle.loads(pickle.dumps(loss_fn))
    assert clone(logits, targets)["loss"].item() == loss_fn(logits, targets)["loss"].item()
