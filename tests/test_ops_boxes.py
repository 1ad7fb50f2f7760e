"""Box ops against hand-computed cases, torchvision, a plain soft-NMS loop and ``ensemble_boxes``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision

from foveal.errors import ConfigError
from foveal.ops.boxes import (
    batched_nms,
    box_iou,
    box_iou_numpy,
    clip_boxes,
    generalized_box_iou,
    nms,
    soft_nms,
    weighted_boxes_fusion,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def random_boxes(n: int, seed: int, size: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_iou_and_giou_hand_cases() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 4.0, 1.0]])
    # overlap 1, union 7; identical; disjoint
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))
    # hull areas 9, 4, 8: giou = iou - (hull - union) / hull
    expected = torch.tensor([[1 / 7 - 2 / 9, 1.0, 0.0 - (8 - 5) / 8]])
    assert torch.allclose(generalized_box_iou(a, b), expected)
    assert box_iou(a, b[:0]).shape == (1, 0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(3), b)


def test_numpy_iou_is_the_tensor_iou() -> None:
    a, b = random_boxes(20, 1).double(), random_boxes(30, 2).double()
    assert np.array_equal(box_iou_numpy(a.numpy(), b.numpy()), box_iou(a, b).numpy())
    assert box_iou_numpy(a.numpy(), np.zeros((0, 4))).shape == (20, 0)
    point = np.array([[1.0, 1.0, 1.0, 1.0]])  # empty union: 0, where torchvision gives NaN
    assert box_iou_numpy(point, point).tolist() == [[0.0]]


def test_format_conversion_and_clip() -> None:
    xyxy = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    assert torch.equal(xyxy_to_xywh(xyxy), torch.tensor([[1.0, 2.0, 3.0, 6.0]]))
    assert torch.equal(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 30.0], [10.0, 5.0, 20.0, 15.0]])
    clipped = clip_boxes(boxes, height=20, width=40)
    assert torch.equal(clipped, torch.tensor([[0.0, 0.0, 40.0, 20.0], [10.0, 5.0, 20.0, 15.0]]))
    assert boxes[0, 0] == -5  # input untouched


def test_nms_equals_torchvision() -> None:
    boxes = random_boxes(200, seed=0)
    scores = torch.rand(200, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(2))
    assert torch.equal(nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.equal(
        batched_nms(boxes, scores, labels, 0.4), torchvision.ops.batched_nms(boxes, scores, labels, 0.4)
    )


def reference_soft_nms(boxes, scores, labels, method, sigma, iou_thr, score_thr):
    """Plain-Python soft-NMS (Bodla et al. 2017): a list loop, one box at a time."""

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    pool = [(i, s) for i, s in enumerate(scores) if s >= score_thr]
    keep, kept = [], []
    while pool:
        best = max(range(len(pool)), key=lambda j: (pool[j][1], -pool[j][0]))
        i, s = pool.pop(best)
        keep.append(i)
        kept.append(s)
        new_pool = []
        for j, sj in pool:
            if labels is None or labels[j] == labels[i]:
                o = iou(boxes[i], boxes[j])
                if method == "linear":
                    sj = sj * (1 - o) if o > iou_thr else sj
                else:
                    sj = sj * math.exp(-(o * o) / sigma)
            if sj >= score_thr:
                new_pool.append((j, sj))
        pool = new_pool
    return keep, kept


def test_soft_nms_hand_cases() -> None:
    # box 1 overlaps box 0 with IoU 0.6 (area 100 each, intersection 75), box 2 is far away
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.5, 0.0, 12.5, 10.0], [50.0, 50.0, 60.0, 60.0]])
    iou01 = 75 / 125
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, new = soft_nms(boxes, scores, method="linear", iou_threshold=0.3)
    assert keep.tolist() == [0, 2, 1]
    assert torch.allclose(new, torch.tensor([0.9, 0.7, 0.8 * (1 - iou01)]))
    keep, new = soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    g = 0.8 * math.exp(-(iou01**2) / 0.5)  # 0.389 < 0.7: box 2 comes second
    assert keep.tolist() == [0, 2, 1]
    assert torch.allclose(new, torch.tensor([0.9, 0.7, g]))
    # linear below its threshold: no decay; class-aware: other labels never decay
    keep, new = soft_nms(boxes, scores, method="linear", iou_threshold=0.7)
    assert keep.tolist() == [0, 1, 2] and torch.allclose(new, scores)
    keep, new = soft_nms(boxes, scores, labels=torch.tensor([0, 1, 0]), method="gaussian")
    assert keep.tolist() == [0, 1, 2] and torch.allclose(new, scores)
    # score threshold drops the decayed box
    keep, new = soft_nms(boxes, scores, method="gaussian", score_threshold=0.5)
    assert keep.tolist() == [0, 2]
    with pytest.raises(ConfigError, match="gausian"):
        soft_nms(boxes, scores, method="gausian")


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("class_aware", [False, True])
def test_soft_nms_equals_reference_loop(method: str, class_aware: bool) -> None:
    for seed in range(3):
        boxes = random_boxes(120, seed=seed, size=60)
        scores = torch.rand(120, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
        labels = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(seed + 20))
        lab = labels if class_aware else None
        keep, new = soft_nms(boxes, scores, lab, method=method, sigma=0.4, iou_threshold=0.3)
        ref_keep, ref_scores = reference_soft_nms(
            boxes.double().tolist(),
            scores.tolist(),
            None if lab is None else lab.tolist(),
            method,
            0.4,
            0.3,
            0.001,
        )
        assert keep.tolist() == ref_keep
        assert np.allclose(new.numpy(), ref_scores, rtol=1e-12, atol=1e-12)
        assert (new[:-1] >= new[1:]).all()  # sorted by new score


def test_soft_nms_empty() -> None:
    keep, new = soft_nms(torch.zeros((0, 4)), torch.zeros(0))
    assert keep.shape == (0,) and new.shape == (0,)


def random_models(seed: int, n_models: int, width: float, height: float):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (15, 2))
    sizes = rng.uniform(0.05, 0.3, (15, 2))
    out = []
    for _ in range(n_models):
        n = int(rng.integers(5, 25))
        k = rng.integers(0, 15, n)
        c = centres[k] + rng.normal(0, 0.02, (n, 2))
        s = sizes[k] * rng.uniform(0.8, 1.2, (n, 2))
        norm = np.clip(np.concatenate([c - s / 2, c + s / 2], axis=1), 0, 1)
        scores = rng.uniform(0.05, 1.0, n)
        labels = rng.integers(0, 3, n)
        out.append((norm, scores, labels))
    return out


@pytest.mark.parametrize("conf_type", ["avg", "max", "box_and_model_avg", "absent_model_aware_avg"])
def test_wbf_equals_ensemble_boxes(conf_type: str) -> None:
    eb = pytest.importorskip("ensemble_boxes")
    width, height = 640.0, 480.0
    scale = np.array([width, height, width, height])
    for seed in range(4):
        models = random_models(seed, n_models=3, width=width, height=height)
        weights = [1.0, 2.0, 0.5] if seed % 2 else None
        norm, scores, labels = zip(*models)
        ref_boxes, ref_scores, ref_labels = eb.weighted_boxes_fusion(
            list(norm), list(scores), list(labels), weights=weights, iou_thr=0.55, skip_box_thr=0.1,
            conf_type=conf_type,
        )  # fmt: skip
        boxes, out_scores, out_labels = weighted_boxes_fusion(
            [torch.as_tensor(b * scale) for b in norm],
            [torch.as_tensor(s) for s in scores],
            [torch.as_tensor(lab) for lab in labels],
            weights=weights,
            iou_threshold=0.55,
            skip_box_threshold=0.1,
            conf_type=conf_type,
            image_size=(height, width),
        )
        assert len(boxes) == len(ref_boxes) > 0
        np.testing.assert_allclose(boxes.numpy() / scale, ref_boxes, atol=1e-5)
        np.testing.assert_allclose(out_scores.numpy(), ref_scores, atol=1e-5)
        np.testing.assert_array_equal(out_labels.numpy(), ref_labels.astype(np.int64))


def test_wbf_hand_case() -> None:
    boxes = [torch.tensor([[10.0, 10.0, 50.0, 50.0]]), torch.tensor([[12.0, 14.0, 54.0, 50.0]])]
    scores = [torch.tensor([0.9]), torch.tensor([0.6])]
    labels = [torch.tensor([1]), torch.tensor([1])]
    fused, fused_scores, fused_labels = weighted_boxes_fusion(boxes, scores, labels)
    expected = (0.9 * boxes[0][0] + 0.6 * boxes[1][0]) / 1.5
    assert torch.allclose(fused, expected[None])
    assert torch.allclose(fused_scores, torch.tensor([0.75]))  # (0.9 + 0.6) / 2 models
    assert fused_labels.tolist() == [1]
    _, max_scores, _ = weighted_boxes_fusion(boxes, scores, labels, conf_type="max")
    assert torch.allclose(max_scores, torch.tensor([0.9]))
    # a different label never fuses
    fused, _, _ = weighted_boxes_fusion(boxes, scores, [torch.tensor([1]), torch.tensor([2])])
    assert len(fused) == 2
    empty = weighted_boxes_fusion([torch.zeros((0, 4))], [torch.zeros(0)], [torch.zeros(0)])
    assert [t.shape[0] for t in empty] == [0, 0, 0]
    with pytest.raises(ConfigError, match="weights"):
        weighted_boxes_fusion(boxes, scores, labels, weights=[1.0])
