"""The contract every own registered model keeps, checked over the registry (as timm's tests do over
``list_models()`` and segmentation-models-pytorch's ``BaseModelTester`` over its architectures).

Per family, what ``foveal.models.registry.build_model`` promises:
- classify: (B, 3, H, W) -> (B, C) float logits, a plain Tensor in training and eval;
- segment: (B, 3, H, W) -> (B, C, H, W) float logits at the input size (any H, W);
- detect / instance / pose: torchvision's interface: ``model(images, targets)`` in training returns a
  dict of finite loss terms, ``model(images)`` in eval one dict per image with ``boxes`` (N, 4) float
  xyxy inside the image, ``scores`` (N,) float in [0, 1] (descending), ``labels`` (N,) int64 0-based,
  plus ``masks`` (N, H, W) float probabilities (instance) or ``keypoints`` (N, K, 3) (pose).
Every model: one training step reaches every parameter with a finite gradient, and two builds under
the same seed give identical weights and identical outputs. Detailed per-model behaviour stays in
test_models*.py and test_centernet.py; this file is the systematic sweep, so a newly registered model
is checked without editing it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.models.registry import build_model, list_models

FAMILIES = ("classify", "segment", "detect", "instance", "pose")
NUM_CLASSES = 3
NUM_KEYPOINTS = 3
BATCH = 2
# Two input sizes (H, W); the second is not square and not a multiple of 16 or 32, so padding, cropping
# and the x/y order of box clipping are exercised. 32 px is the smallest size every family handles.
SIZES = ((32, 32), (40, 56))
# Options that make a model cheap on CPU and, for detectors, let random weights keep detections
# (a score threshold of 0), so the box checks do not pass on empty outputs.
OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("smallresnet", "classify"): {"width": 8},
    ("smallresnet_se", "classify"): {"width": 8},
    ("unet", "segment"): {"width": 4},
    ("gcn", "segment"): {"channels": 8, "kernel_size": 3},
    ("centernet", "detect"): {"width": 8, "conf": 0.0, "max_det": 20},
    ("centernet", "pose"): {"width": 8, "conf": 0.0, "max_det": 20, "num_keypoints": NUM_KEYPOINTS},
    ("fasterrcnn_resnet18", "detect"): {"box_score_thresh": 0.0, "box_detections_per_img": 20},
    ("maskrcnn_resnet18", "instance"): {"box_score_thresh": 0.0, "box_detections_per_img": 20},
    ("keypointrcnn_resnet18", "pose"): {
        "box_score_thresh": 0.0,
        "box_detections_per_img": 20,
        "num_keypoints": NUM_KEYPOINTS,
    },
}
OWN = [(name, task) for name, task, _ in list_models() if ":" not in name]


def _id(case: tuple[str, str]) -> str:
    return f"{case[1]}-{case[0]}"


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core machine spinning OpenMP threads slow small convolutions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(name: str, task: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    options = dict(OPTIONS.get((name, task), {}))
    if task in ("detect", "instance", "pose"):
        options["imgsz"] = max(SIZES[-1])  # foveal's detect task passes imgsz to every detector
    return build_model(name, NUM_CLASSES, task=task, **options)


def _images(size: tuple[int, int], seed: int = 1) -> Tensor:
    return torch.randn(BATCH, 3, *size, generator=torch.Generator().manual_seed(seed))


def _det_targets(task: str, size: tuple[int, int]) -> list[dict[str, Tensor]]:
    """One or two objects per image, inside (H, W), with masks / keypoints where the task has them."""
    h, w = size
    targets = []
    for i in range(BATCH):
        boxes = torch.tensor([[2.0, 3.0, w / 2, h / 2], [w / 3, h / 4, w - 2.0, h - 1.0]])[: i + 1]
        target = {"boxes": boxes, "labels": torch.tensor([i % NUM_CLASSES, (i + 1) % NUM_CLASSES])[: i + 1]}
        if task == "instance":
            masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8)
            for m, (x0, y0, x1, y1) in zip(masks, boxes.long().tolist()):
                m[y0:y1, x0:x1] = 1
            target["masks"] = masks
        if task == "pose":
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            kps = torch.stack([boxes[:, :2] + 1, centre, boxes[:, 2:] - 1], 1)  # (N, K, 2) inside the box
            visible = torch.tensor([[2.0], [2.0], [0.0]]).expand(len(boxes), NUM_KEYPOINTS, 1)
            target["keypoints"] = torch.cat([kps, visible], -1)
        targets.append(target)
    return targets


def _loss(model: nn.Module, task: str, x: Tensor) -> Tensor:
    """Training-mode forward of ``x`` to one scalar loss, as foveal's tasks compute it."""
    if task in ("detect", "instance", "pose"):
        terms = model.train()(x, _det_targets(task, tuple(x.shape[-2:])))
        assert isinstance(terms, dict) and terms
        for key, value in terms.items():
            assert value.ndim == 0 and torch.isfinite(value), (key, value)
        return terms["loss"] if "loss" in terms else sum(terms.values())
    out = model.train()(x)
    assert type(out) is Tensor  # no aux-logit tuples or dicts in training
    if task == "classify":
        assert out.shape == (BATCH, NUM_CLASSES)
        return F.cross_entropy(out, torch.arange(BATCH) % NUM_CLASSES)
    assert out.shape == (BATCH, NUM_CLASSES, *x.shape[-2:])
    target = torch.randint(NUM_CLASSES, (BATCH, *x.shape[-2:]), generator=torch.Generator().manual_seed(2))
    return F.cross_entropy(out, target)


def _check_detections(outputs: Any, task: str, size: tuple[int, int]) -> None:
    h, w = size
    assert isinstance(outputs, list) and len(outputs) == BATCH
    for det in outputs:
        assert isinstance(det, dict)
        extra = {"instance": {"masks"}, "pose": {"keypoints"}}.get(task, set())
        assert {"boxes", "scores", "labels"} | extra <= set(det)
        n = len(det["scores"])
        assert n > 0  # a score threshold of 0 keeps detections; empty outputs would check nothing
        boxes, scores, labels = det["boxes"], det["scores"], det["labels"]
        assert boxes.shape == (n, 4) and boxes.dtype == torch.float32 and torch.isfinite(boxes).all()
        assert scores.shape == (n,) and scores.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert ((labels >= 0) & (labels < NUM_CLASSES)).all()
        assert ((scores >= 0) & (scores <= 1)).all() and (scores[:-1] >= scores[1:]).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        if task == "instance":
            masks = det["masks"]
            assert masks.shape == (n, h, w) and masks.dtype == torch.float32
            assert ((masks >= 0) & (masks <= 1)).all()
        if task == "pose":
            kps = det["keypoints"]
            assert kps.shape == (n, NUM_KEYPOINTS, 3) and kps.dtype == torch.float32
            assert torch.isfinite(kps).all()


def _eval_outputs(model: nn.Module, x: Tensor) -> Any:
    with torch.no_grad():
        return model.eval()(x)


def _assert_same_outputs(a: Any, b: Any) -> None:
    if isinstance(a, Tensor):
        assert torch.equal(a, b)
        return
    assert len(a) == len(b)
    for da, db in zip(a, b, strict=True):
        assert set(da) == set(db)
        for key in da:
            assert torch.equal(da[key], db[key]), key


def test_every_family_has_own_models_with_descriptions() -> None:
    rows = [row for row in list_models() if ":" not in row[0]]
    for task in FAMILIES:
        assert [n for n, t, _ in rows if t == task], f"no own {task} model registered"
    for name, task, description in rows:
        assert task in FAMILIES, (name, task)  # a family this file does not know yet: extend the checks
        assert description.strip() and description != name, (name, task)
    assert len(set(OWN)) == len(OWN)
    assert set(OPTIONS) <= set(OWN)  # no stale options for models that are gone


@pytest.mark.parametrize("case", OWN, ids=_id)
def test_eval_outputs_per_family(case: tuple[str, str]) -> None:
    name, task = case
    model = _build(name, task)
    for size in SIZES:
        x = _images(size)
        out = _eval_outputs(model, x)
        if task == "classify":
            assert type(out) is Tensor and out.shape == (BATCH, NUM_CLASSES) and out.dtype == torch.float32
        elif task == "segment":
            assert type(out) is Tensor and out.shape == (BATCH, NUM_CLASSES, *size)
            assert out.dtype == torch.float32
        else:
            _check_detections(out, task, size)
            continue
        assert torch.isfinite(out).all()
        # eval mode: each image's output does not depend on the rest of the batch (BatchNorm statistics)
        torch.testing.assert_close(_eval_outputs(model, x[1:]), out[1:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", OWN, ids=_id)
def test_training_step_reaches_every_parameter(case: tuple[str, str]) -> None:
    name, task = case
    model = _build(name, task)
    params = dict(model.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    loss = _loss(model, task, _images(SIZES[-1]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    assert sum(float(p.grad.abs().sum()) for p in params.values()) > 0
    # a plain SGD step changes the output: the gradients are those of the output actually computed
    before = _eval_outputs(model, _images(SIZES[0]))
    with torch.no_grad():
        for p in params.values():
            p -= 0.1 * p.grad
    after = _eval_outputs(model, _images(SIZES[0]))
    if isinstance(before, Tensor):
        assert not torch.equal(before, after)
    else:
        assert any(not torch.equal(b["scores"], a["scores"]) for b, a in zip(before, after, strict=True))


@pytest.mark.parametrize("case", OWN, ids=_id)
def test_deterministic_under_a_seed(case: tuple[str, str]) -> None:
    name, task = case
    a, b = _build(name, task, seed=7), _build(name, task, seed=7)
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    x = _images(SIZES[-1])
    _assert_same_outputs(_eval_outputs(a, x), _eval_outputs(b, x))
    other = _build(name, task, seed=8).state_dict()
    assert any(not torch.equal(state_a[k], other[k]) for k in state_a if state_a[k].is_floating_point())
