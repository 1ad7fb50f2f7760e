"""What a saliency map explains, per task: one differentiable scalar of the model's output per image.

- classify: the target class's logit (gradient methods) and probability (occlusion; softmax, or
  sigmoid for multilabel). Target: the predicted class unless ``--target``.
- segment: the sum of the target class's logits over a region (gradient methods) and the mean of its
  probability over that region (occlusion). Region: the pixels predicted as the target class on the
  unperturbed image (kept fixed while explaining), or ``--region x0,y0,x1,y1`` (image pixels). Target:
  the most frequent predicted non-background class unless ``--target``; when only background is
  predicted, the non-background class of highest mean probability over the whole image.
- detect (CenterNet): for detection ``--box K`` (index into the image's detections with score >=
  ``conf``, best first; default 0), the class heatmap logit at the detection's centre cell (gradient
  methods) and its sigmoid, the detection score (occlusion). torchvision detectors: the detection's
  score (softmax of the box head), for gradcam and gradients only (their detection list changes with
  the input, so perturbation and path methods cannot follow one box).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from foveal.errors import ConfigError, did_you_mean
from foveal.tasks.base import Task

ALL_METHODS = ("occlusion", "gradients", "integrated-gradients", "gradcam")


@dataclass
class Objective:
    """The scalar explained for one image.

    ``score(x)``: (B, 3, H, W) -> (B,) differentiable logit-like value (gradients, integrated gradients,
    Grad-CAM); ``prob(x)``: (B,) its probability (occlusion measures its drop). ``target``: class name;
    ``probability``: ``prob`` of the unperturbed image; ``box``: xyxy input pixels of the detection or
    region the scalar concerns (None for a whole image); ``info``: JSON-able details for explain.json.
    """

    score: Callable[[Tensor], Tensor]
    prob: Callable[[Tensor], Tensor]
    target: str
    probability: float
    predicted: str
    predicted_probability: float
    box: tuple[float, float, float, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = ALL_METHODS


def prepare_image(task: Task, path: str | Path) -> tuple[Tensor, Image.Image]:
    """(1, 3, imgsz, imgsz) normalised input of the image at ``path`` (the task's predict transform)
    and the decoded RGB image."""
    from foveal.data.imageio import load_rgb

    image = load_rgb(path)
    return task.predict_input(image)[None], image


def class_index(task: Task, name: str) -> int:
    """Index of class ``name``; ConfigError listing the classes when it is not one."""
    names = task.class_names
    if name not in names:
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        raise ConfigError(
            f"--target '{name}': not a class of this model{did_you_mean(name, names)}; classes: {shown}"
        )
    return names.index(name)


def objective(
    task: Task,
    model: nn.Module,
    x: Tensor,
    image_size: tuple[int, int],
    target: str | None = None,
    box: int | None = None,
    region: str | Sequence[float] | None = None,
    conf: float = 0.25,
) -> Objective:
    """The :class:`Objective` of ``task`` for input ``x`` (1, 3, S, S) of an image of ``image_size``
    (width, height); ``region`` (segment) is in that image's pixels. The task's ``explain_kind`` picks
    the objective: one output ("vector"), a class's pixels ("map") or one detection ("objects")."""
    if task.explain_kind == "vector":
        _only(task, box=box, region=region)
        return _vector(task, model, x, target)
    if task.explain_kind == "map":
        _only(task, box=box)
        return _segment(task, model, x, target, _region(region, image_size, x.shape[-1]))
    if task.explain_kind == "objects":
        _only(task, region=region)
        return _detect(task, model, x, target, 0 if box is None else box, conf)
    raise task.unsupported("foveal explain")


def _only(task: Task, **given: Any) -> None:
    for option, value in given.items():
        if value is not None:
            raise ConfigError(f"--{option} does not apply to a {task.name} model; leave it out")


def _vector(task: Any, model: nn.Module, x: Tensor, target: str | None) -> Objective:
    """One of the model's outputs (``Task.explain_scores``): a class logit (occlusion: its probability),
    or a regression target's value; by default the largest."""
    with torch.no_grad():
        probs = task.explain_scores(model(x))[1][0]
    predicted = int(probs.argmax())
    t = predicted if target is None else class_index(task, target)
    names = task.class_names

    def score(batch: Tensor) -> Tensor:
        return task.explain_scores(model(batch))[0][:, t]

    def prob(batch: Tensor) -> Tensor:
        return task.explain_scores(model(batch))[1][:, t]

    info = {"scalar": f"output '{names[t]}' (classify: its logit; occlusion: its probability)"}
    return Objective(
        score, prob, names[t], float(probs[t]), names[predicted], float(probs[predicted]), None, info
    )


def _region(region: str | Sequence[float] | None, image_size: tuple[int, int], side: int) -> tuple | None:
    """``--region x0,y0,x1,y1`` in image pixels -> xyxy in model-input pixels (or None)."""
    if region is None:
        return None
    try:
        values = [float(v) for v in (region.split(",") if isinstance(region, str) else region)]
    except ValueError:
        values = []
    width, height = image_size
    if len(values) != 4 or not (0 <= values[0] < values[2] <= width and 0 <= values[1] < values[3] <= height):
        raise ConfigError(
            f"--region {region}: expected x0,y0,x1,y1 image pixels with 0 <= x0 < x1 <= {width} "
            f"and 0 <= y0 < y1 <= {height}"
        )
    sx, sy = side / width, side / height
    return (values[0] * sx, values[1] * sy, values[2] * sx, values[3] * sy)


def _segment(task: Any, model: nn.Module, x: Tensor, target: str | None, region: tuple | None) -> Objective:
    names = task.class_names

    def logit_map(out: Tensor, t: int) -> Tensor:  # (B, C', H, W) -> (B, H, W)
        return task.explain_maps(out)[0][:, t]

    def prob_maps(out: Tensor) -> Tensor:  # (B, C, H, W) probabilities of every class
        return task.explain_maps(out)[1]

    with torch.no_grad():
        probs = prob_maps(model(x))[0]
        cmap = probs.argmax(0)
    counts = torch.bincount(cmap.flatten(), minlength=len(names)).float()
    counts[0] = 0
    fallback = counts.sum() == 0 and target is None
    if target is not None:
        t = class_index(task, target)
    elif not fallback:
        t = int(counts.argmax())
    else:
        t = int(probs[1:].mean((1, 2)).argmax()) + 1 if len(names) > 1 else 0
    h, w = cmap.shape
    mask = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    whole = False
    if region is not None:
        x0, y0, x1, y1 = region
        mask[int(y0) : max(int(y0) + 1, round(y1)), int(x0) : max(int(x0) + 1, round(x1))] = True
        where = "the --region box"
    else:
        mask = cmap == t
        where = f"the {int(mask.sum())} pixels predicted as '{names[t]}'"
        if not mask.any():
            mask = torch.ones_like(mask)
            where = f"the whole image (no pixel is predicted as '{names[t]}')"
            whole = True
    weight = mask.float()

    def score(batch: Tensor) -> Tensor:
        return (logit_map(model(batch), t) * weight).sum((1, 2))

    def prob(batch: Tensor) -> Tensor:
        return (prob_maps(model(batch))[:, t] * weight).sum((1, 2)) / weight.sum()

    p = float((probs[t] * weight).sum() / weight.sum())
    top = int(counts.argmax()) if counts.sum() > 0 else 0
    top_p = float(probs[top][cmap == top].mean()) if (cmap == top).any() else float(probs[top].mean())
    info = {
        "scalar": f"sum of class '{names[t]}' logits over {where} (occlusion: mean probability there)",
        "region_pixels": int(mask.sum()),
        "predicted_pixels": {
            names[i]: int(c) for i, c in enumerate(torch.bincount(cmap.flatten(), minlength=len(names)))
        },
    }
    ys, xs = torch.nonzero(mask, as_tuple=True)
    box = (float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1)
    return Objective(score, prob, names[t], p, names[top], top_p, None if whole else box, info)


def _detect(task: Any, model: nn.Module, x: Tensor, target: str | None, k: int, conf: float) -> Objective:
    from foveal.models.centernet import CenterNet, decode
    from foveal.models.detection import TorchvisionDetector

    names = task.class_names
    wanted = None if target is None else class_index(task, target)
    if isinstance(model, CenterNet):
        with torch.no_grad():
            maps = model.maps(x)
        side = tuple(x.shape[-2:])
        det = decode(maps, [side], conf, model.max_det, model.topk, model.stride, model.nms_iou)[0]
    elif isinstance(model, TorchvisionDetector):
        with torch.no_grad():
            det = model(x)[0]
    else:
        raise ConfigError(
            f"explain does not support detector {type(model).__name__}; it supports CenterNet and "
            "torchvision detectors (tv:..., *_resnet18)"
        )
    keep = torch.nonzero(det["scores"] >= conf).flatten()
    if wanted is not None:
        keep = keep[det["labels"][keep] == wanted]
    keep = keep[torch.argsort(det["scores"][keep], descending=True)]
    of = f" of class '{target}'" if target else ""
    if not len(keep):
        raise ConfigError(f"no detections{of} with score >= {conf} in this image; lower --conf")
    if not 0 <= k < len(keep):
        raise ConfigError(
            f"--box {k}: out of range; this image has {len(keep)} detections{of} with score >= {conf} "
            f"(use --box 0..{len(keep) - 1})"
        )
    index = int(keep[k])
    label, det_score = int(det["labels"][index]), float(det["scores"][index])
    box = tuple(float(v) for v in det["boxes"][index])
    info: dict[str, Any] = {
        "box_index": k,
        "detections": len(keep),
        "label": names[label],
        "score": det_score,
    }
    if isinstance(model, CenterNet):
        heat = maps["heatmap"][0, label].float().sigmoid()
        cell = int((heat - det_score).abs().flatten().argmin())
        cy, cx = divmod(cell, heat.shape[-1])

        def score(batch: Tensor) -> Tensor:
            return model.maps(batch)["heatmap"][:, label, cy, cx]

        def prob(batch: Tensor) -> Tensor:
            return score(batch).sigmoid()

        info["scalar"] = (
            f"heatmap logit of class '{names[label]}' at the box's centre cell (row {cy}, col {cx})"
        )
        methods = ALL_METHODS
    else:

        def score(batch: Tensor) -> Tensor:
            return torch.stack([model(batch[i : i + 1])[0]["scores"][index] for i in range(len(batch))])

        prob = score
        info["scalar"] = f"score of detection {k} (box head softmax of class '{names[label]}')"
        methods = ("gradients", "gradcam")
    return Objective(score, prob, names[label], det_score, names[label], det_score, box, info, methods)


def image_box(box: Sequence[float] | None, side: int, image_size: tuple[int, int]) -> list[float] | None:
    """xyxy ``box`` in model-input pixels (``side`` x ``side``) -> xyxy in the image's pixels."""
    if box is None:
        return None
    sx, sy = image_size[0] / side, image_size[1] / side
    return [round(float(v) * s, 2) for v, s in zip(box, (sx, sy, sx, sy), strict=True)]


def as_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of ``image``."""
    return np.asarray(image.convert("RGB"))
