"""CenterNet: target encoding, decoding, loss, torchvision-style interface, registry, and that it learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from foveal.data.synthetic import generate
from foveal.errors import DataError
from foveal.models.centernet import (
    PRIOR_BIAS,
    CenterNet,
    centernet_loss,
    decode,
    encode_targets,
    focal_heatmap_loss,
    gaussian_radius,
)
from foveal.models.registry import build_model, default_model, list_models
from foveal.ops.boxes import box_iou


def _cornernet_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """The reference: ``gaussian_radius`` of CenterNet's src/lib/utils/image.py (numpy, verbatim maths)."""
    a1, b1 = 1, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def _perfect_outputs(encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw maps a perfect model would give: heatmap logits of the encoded heatmap, exact regressions."""
    heat = encoded["heatmap"].clamp(1e-6, 1 - 1e-6)
    out = {"heatmap": torch.log(heat / (1 - heat)), "size": encoded["size"], "offset": encoded["offset"]}
    if "keypoints" in encoded:
        out["keypoints"] = encoded["keypoints"]
    return out


def _sorted(boxes: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    order = np.lexsort(boxes.numpy().T[::-1])  # by x0, then y0, ...
    return (boxes[order], *(o[order] for o in others))


def test_gaussian_radius_matches_cornernet_reference() -> None:
    sizes = [(1.0, 1.0), (3.0, 7.0), (10.0, 4.5), (16.0, 16.0)]
    h, w = torch.tensor(sizes, dtype=torch.float64).T
    expected = [_cornernet_radius(a, b) for a, b in sizes]
    assert gaussian_radius(h, w).tolist() == pytest.approx(expected, rel=1e-9)


def test_encode_heatmap_peaks_gaussians_and_masks() -> None:
    # Two squares of class 2 whose Gaussians overlap, one circle of class 0; stride 4, 12 x 10 map.
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 8.0, 52.0, 40.0], [0.0, 30.0, 9.0, 47.0]])
    enc = encode_targets([{"boxes": boxes, "labels": torch.tensor([2, 2, 0])}], 3, 12, 10, 4)
    heat = enc["heatmap"][0]
    assert heat.shape == (3, 12, 10) and heat[1].abs().sum() == 0
    # centres (24, 24) -> cell (6, 6), (36, 24) -> (6, 9), (4.5, 38.5) -> (9, 1): peaks exactly 1
    assert heat[2, 6, 6] == 1 and heat[2, 6, 9] == 1 and heat[0, 9, 1] == 1
    assert int((heat == 1).sum()) == 3
    radius = math.floor(_cornernet_radius(8.0, 8.0))  # 8 x 8 cells
    sigma = (2 * radius + 1) / 6
    assert heat[2, 6, 7].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    # between the two squares the larger of the two Gaussians wins (cell (6, 8): 2 from one, 1 from other)
    assert heat[2, 6, 8].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert heat[2, 6, 6 - radius] > 0 and heat[2, 6, 6 - radius - 1] == 0  # truncated beyond the radius
    mask = enc["mask"][0]
    assert mask.sum() == 3 and mask[6, 6] == 1 and mask[6, 9] == 1 and mask[9, 1] == 1
    assert enc["size"][0, :, 9, 1].tolist() == pytest.approx([math.log(9 / 4), math.log(17 / 4)])
    assert enc["offset"][0, :, 9, 1].tolist() == pytest.approx([0.125, 0.625])
    assert enc["boxes"][0, :, 6, 9].tolist() == boxes[1].tolist()


def test_encode_shared_centre_cell_keeps_smallest_box_and_skips_empty_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [12.0, 12.0, 20.0, 20.0], [5.0, 5.0, 5.0, 9.0]])
    keypoints = torch.tensor([[[1.0, 2.0, 2.0]], [[14.0, 18.0, 1.0]], [[5.0, 5.0, 2.0]]])
    target = {"boxes": boxes, "labels": torch.tensor([0, 1, 0]), "keypoints": keypoints}
    for order in ([0, 1, 2], [2, 1, 0]):
        t = {key: v[order] for key, v in target.items()}
        enc = encode_targets([t], 2, 8, 8, 4, num_keypoints=1)
        assert enc["mask"].sum() == 1 and enc["mask"][0, 4, 4] == 1  # both centres (16, 16) -> cell (4, 4)
        assert enc["heatmap"][0, 0, 4, 4] == 1 and enc["heatmap"][0, 1, 4, 4] == 1  # both peaks stay
        assert enc["size"][0, :, 4, 4].tolist() == pytest.approx([math.log(2.0), math.log(2.0)])  # 8 px box
        assert enc["keypoints"][0, :, 4, 4].tolist() == pytest.approx([-0.5, 0.5])  # (14, 18) - (16, 16)
        assert enc["keypoint_mask"][0, 0, 4, 4] == 1 and enc["keypoint_mask"].sum() == 1
        assert int((enc["heatmap"] == 1).sum()) == 2  # the zero-width box is left out


@pytest.mark.parametrize(
    ("image_size", "stride"), [((70, 50), 4), ((61, 45), 4), ((64, 64), 4), ((75, 83), 8)]
)
def test_encode_decode_round_trip(image_size: tuple[int, int], stride: int) -> None:
    h, w = image_size
    boxes = torch.tensor(
        [
            [3.0, 5.0, 20.0, 18.0],  # odd size 17 x 13
            [10.0, 10.0, 40.0, 42.0],  # even size 30 x 32
            [12.5, 30.25, 33.0, 45.75],  # sub-pixel corners
            [0.0, 0.0, 7.0, 4.0],  # tiny, at the corner
            [w - 21.0, h - 19.0, float(w), float(h)],  # touching the bottom/right border (padded region)
            [20.0, 18.0, 44.0, 44.0],  # overlaps box 1 with the same class, centre in another cell
        ]
    )
    labels = torch.tensor([0, 3, 1, 2, 1, 3])
    keypoints = torch.stack([boxes[:, :2], boxes[:, 2:], (boxes[:, :2] + boxes[:, 2:]) / 2], 1)
    keypoints = torch.cat([keypoints, torch.full((6, 3, 1), 2.0)], -1)
    out_h, out_w = math.ceil(h / 32) * 32 // stride, math.ceil(w / 32) * 32 // stride  # the model pads to 32
    target = {"boxes": boxes, "labels": labels, "keypoints": keypoints}
    enc = encode_targets(
        [target, {"boxes": boxes.flip(0), "labels": labels.flip(0), "keypoints": keypoints.flip(0)}],
        4,
        out_h,
        out_w,
        stride,
        3,
    )
    dets = decode(_perfect_outputs(enc), (h, w), conf=0.5, stride=stride)
    for det, flipped in zip(dets, (False, True)):
        assert det["labels"].dtype == torch.int64 and det["scores"].min() > 0.99
        got_boxes, got_labels, got_kps = _sorted(det["boxes"], det["labels"], det["keypoints"])
        exp_boxes, exp_labels, exp_kps = _sorted(boxes, labels, keypoints)
        assert len(got_boxes) == len(boxes), flipped
        assert (got_boxes - exp_boxes).abs().max() < 1e-3
        assert torch.equal(got_labels, exp_labels)
        assert (got_kps[..., :2] - exp_kps[..., :2]).abs().max() < 1e-3


def test_loss_is_finite_with_zero_objects() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 40, 36)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    assert set(CenterNet(3, width=8).train()(images, [empty, empty])) == {"loss", "heatmap", "size", "offset"}
    model = CenterNet(3, width=8, giou_weight=1.0).train()
    losses = model(images, [empty, empty])
    assert set(losses) == {"loss", "heatmap", "size", "offset", "giou"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss"] > 0 and losses["size"] == 0 and losses["offset"] == 0 and losses["giou"] == 0
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_focal_loss_matches_hand_computed_case() -> None:
    # one peak (p = 0.8), one negative near it (gt 0.5, p = 0.3), one far negative (gt 0, p = 0.1)
    p = torch.tensor([0.8, 0.3, 0.1]).view(1, 1, 1, 3)
    gt = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    expected = -(math.log(0.8) * 0.2**2 + math.log(0.7) * 0.3**2 * 0.5**4 + math.log(0.9) * 0.1**2 * 1.0)
    assert focal_heatmap_loss(torch.logit(p), gt).item() == pytest.approx(expected, rel=1e-5)
    # saturated logits stay finite (sigmoid clamped to [1e-4, 1 - 1e-4])
    assert torch.isfinite(focal_heatmap_loss(torch.tensor([-200.0, 200.0, 200.0]).view(1, 1, 1, 3), gt))


def test_loss_terms_of_perfect_outputs_are_small() -> None:
    boxes = torch.tensor([[4.0, 6.0, 30.0, 22.0], [20.0, 20.0, 31.0, 37.0]])
    enc = encode_targets([{"boxes": boxes, "labels": torch.tensor([0, 1])}], 2, 8, 8, 4)
    losses = centernet_loss(_perfect_outputs(enc), enc, stride=4, giou_weight=1.0)
    assert losses["size"] == 0 and losses["offset"] == 0 and losses["giou"].abs() < 1e-5
    prior = centernet_loss({**_perfect_outputs(enc), "heatmap": torch.full((1, 2, 8, 8), PRIOR_BIAS)}, enc)
    assert losses["heatmap"] < 0.01 and prior["heatmap"] > 100 * losses["heatmap"]


def test_decode_keeps_local_maxima_only() -> None:
    logits = torch.full((1, 2, 4, 4), -10.0)
    logits[0, 0, 1, 1], logits[0, 0, 1, 2] = 3.0, 2.0  # adjacent: only the higher survives
    logits[0, 1, 1, 2] = 1.0  # another class at the same cell: kept
    logits[0, 0, 3, 3] = 0.0  # isolated, score 0.5
    size = torch.full((1, 2, 4, 4), math.log(2.0))  # 2 cells = 8 px
    det = decode(
        {"heatmap": logits, "size": size, "offset": torch.full((1, 2, 4, 4), 0.5)}, (16, 16), conf=0.3
    )[0]
    assert det["scores"].tolist() == pytest.approx(torch.sigmoid(torch.tensor([3.0, 1.0, 0.0])).tolist())
    assert det["labels"].tolist() == [0, 1, 0]
    expected = [[2.0, 2.0, 10.0, 10.0], [6.0, 2.0, 14.0, 10.0], [10.0, 10.0, 16.0, 16.0]]
    assert det["boxes"].flatten().tolist() == pytest.approx(
        torch.tensor(expected).flatten().tolist(), abs=1e-5
    )
    assert (
        len(
            decode({"heatmap": logits, "size": size, "offset": size}, (16, 16), conf=0.3, max_det=2)[0][
                "boxes"
            ]
        )
        == 2
    )


def test_eval_forward_shapes_and_dtypes() -> None:
    torch.manual_seed(0)
    model = CenterNet(5, width=8, max_det=7, conf=0.0).eval()
    with torch.no_grad():
        dets = model(torch.randn(2, 3, 50, 70))
        listed = model([torch.randn(3, 40, 30), torch.randn(3, 64, 20)])
    assert len(dets) == 2 and len(listed) == 2
    for det, (h, w) in zip([*dets, *listed], [(50, 70), (50, 70), (40, 30), (64, 20)]):
        assert set(det) == {"boxes", "scores", "labels"}
        n = len(det["scores"])
        assert n == 7
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 0 and det["labels"].max() < 5
        assert (det["scores"][:-1] >= det["scores"][1:]).all()
        b = det["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
    confident = CenterNet(5, width=8, conf=0.5).eval()
    with torch.no_grad():
        assert all((d["scores"] >= 0.5).all() for d in confident(torch.randn(2, 3, 32, 32)))


def test_training_without_targets_and_bad_labels_raise() -> None:
    model = CenterNet(2, width=8).train()
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(DataError, match="outside"):
        model(
            torch.randn(1, 3, 64, 64),
            [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([2])}],
        )


def test_registry_builds_centernet_and_defaults_to_it_for_small_images() -> None:
    model = build_model("centernet", 4, task="detect", width=16, imgsz=64)  # the task passes imgsz
    assert isinstance(model, CenterNet) and model.num_classes == 4
    assert ("centernet", "detect") in [(n, t) for n, t, _ in list_models(task="detect")]
    assert default_model("detect", 64) == "centernet"
    assert isinstance(model.backbone, torch.nn.Module) and isinstance(model.head, torch.nn.Module)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    assert not backbone_ids & {id(p) for p in model.head.parameters()}
    assert len(backbone_ids) + len(list(model.head.parameters())) == len(list(model.parameters()))
    assert torch.allclose(model.head.heatmap[-1].bias, torch.full((4,), PRIOR_BIAS))
    assert model.head.heatmap[-1].out_channels == 4
    assert model.head.size[-1].out_channels == 2 and model.head.offset[-1].out_channels == 2


@pytest.fixture
def one_thread():
    """One intra-op thread: these small convolutions gain little from two, and on a loaded 2-core machine
    two spinning OpenMP threads made this training ~30x slower (200 s instead of 7 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_overfits_a_batch_of_shapes_scenes(one_thread: None) -> None:
    torch.manual_seed(0)
    scenes = list(generate(8, imgsz=64, seed=3))
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    images = (images - 0.45) / 0.225
    targets = [
        {
            "boxes": torch.from_numpy(np.stack([o.box for o in s.objects])),
            "labels": torch.tensor([o.cls for o in s.objects]),
        }
        for s in scenes
    ]
    model = CenterNet(4, width=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = None
    for _ in range(100):
        loss = model.train()(images, targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 20  # measured 55-80x over 3 seeds
    with torch.no_grad():
        dets = model.eval()(images)
    hits = total = 0
    for det, target in zip(dets, targets):
        keep = det["scores"] >= 0.3
        iou = box_iou(target["boxes"], det["boxes"][keep])
        same = target["labels"][:, None] == det["labels"][keep][None]
        hits += int(((iou > 0.5) & same).any(1).sum())
        total += len(target["boxes"])
    assert hits >= 0.9 * total  # measured 19 of 19 objects (mean IoU 0.9) over 3 seeds
