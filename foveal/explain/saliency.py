"""Saliency maps with Captum: occlusion, gradients, integrated gradients and Grad-CAM; ``foveal explain``.

Each method explains one scalar per image (see :mod:`foveal.explain.targets`: a class logit or
probability, a segmentation region's logit sum, a detection's heatmap peak) and returns an (H, W) map
at the model input's size, larger = more evidence for the target:

- ``occlusion`` (Captum ``Occlusion``): the drop of the target's *probability* when a square window is
  replaced by the baseline 0 (the mean colour after normalisation), averaged over the windows covering
  each pixel, then over window sizes (default ~1/8 and ~1/4 of the image side, stride half a window);
- ``gradients`` (Captum ``Saliency``): |d score / d pixel|, max over the colour channels;
- ``integrated-gradients`` (Captum ``IntegratedGradients``): attributions from a black image (pixel
  value 0, normalised) with ``steps`` Gauss-Legendre steps, summed over channels; their sum equals
  score(x) - score(black) up to the reported ``convergence_delta``;
- ``gradcam`` (Captum ``LayerGradCam``): ReLU(sum_k mean(d score / d A_k) A_k) on a conv layer's output
  A (default: :func:`foveal.explain.features.default_layer`), upsampled bilinearly to the input size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foveal.errors import ConfigError, check_choice
from foveal.explain.targets import ALL_METHODS

Scalar = Callable[[Tensor], Tensor]


def default_windows(side: int) -> list[int]:
    """Occlusion window sides for an image of ``side`` px: ~1/8 and ~1/4 of it (at least 1 px)."""
    return sorted({max(1, round(side / 8)), max(1, round(side / 4))})


def occlusion_map(
    prob: Scalar, x: Tensor, windows: Sequence[int] | int | None = None, stride: int | None = None
) -> tuple[Tensor, dict[str, Any]]:
    """Occlusion saliency of ``prob`` ((B, 3, H, W) -> (B,)) for ``x`` (1, 3, H, W): (H, W) map and the
    windows/strides used. Each window size gives Captum's mean probability drop per pixel; the map is
    their mean."""
    from captum.attr import Occlusion

    side = min(x.shape[-2:])
    sizes = (
        default_windows(side) if windows is None else [windows] if isinstance(windows, int) else list(windows)
    )
    if not sizes or any(int(w) < 1 or int(w) > side for w in sizes) or (stride is not None and stride < 1):
        raise ConfigError(
            f"--window {windows} / --stride {stride}: windows must be 1..{side} px, stride >= 1"
        )
    c, per_eval = x.shape[1], max(1, min(64, 2**22 // x[0].numel()))
    maps, strides = [], []
    for w in sizes:
        s = stride or max(1, int(w) // 2)
        attr = Occlusion(prob).attribute(
            x,
            sliding_window_shapes=(c, int(w), int(w)),
            strides=(c, s, s),
            baselines=0.0,
            perturbations_per_eval=per_eval,
        )
        maps.append(attr[0].mean(0))
        strides.append(s)
    return torch.nan_to_num(torch.stack(maps).mean(0)), {
        "windows": [int(w) for w in sizes],
        "strides": strides,
    }


def gradients_map(score: Scalar, x: Tensor) -> Tensor:
    """|d score / d x| of ``x`` (1, 3, H, W), max over channels: (H, W)."""
    from captum.attr import Saliency

    return Saliency(score).attribute(x.clone().requires_grad_(True), abs=True)[0].amax(0)


def integrated_gradients_map(
    score: Scalar, x: Tensor, baseline: Tensor, steps: int = 32
) -> tuple[Tensor, float]:
    """Integrated gradients of ``score`` from ``baseline`` (same shape as ``x``, (1, 3, H, W)): the (H, W)
    channel sum of the attributions, and Captum's convergence delta (sum of attributions minus
    score(x) - score(baseline))."""
    from captum.attr import IntegratedGradients

    attr, delta = IntegratedGradients(score).attribute(
        x,
        baselines=baseline,
        n_steps=steps,
        return_convergence_delta=True,
        internal_batch_size=min(steps, 64),
    )
    return attr[0].sum(0), float(delta.reshape(-1)[0])


def gradcam_map(score: Scalar, x: Tensor, layer: nn.Module) -> Tensor:
    """Grad-CAM of ``score`` on ``layer``'s output for ``x`` (1, 3, H, W): ReLU of the gradient-weighted
    channel sum (weights = spatial mean of the gradients), bilinearly upsampled to (H, W)."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(score, layer).attribute(x.clone().requires_grad_(True), relu_attributions=True)
    if cam.ndim != 4:
        raise ConfigError(
            f"layer {type(layer).__name__} has no (B, C, h, w) output for Grad-CAM; pick a conv layer"
        )
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[0, 0].detach()


def mass_in_box(saliency: np.ndarray | Tensor, box: Sequence[float]) -> float:
    """Fraction of the positive saliency mass of an (H, W) map inside the xyxy pixel ``box`` (pixels
    from floor(x0) to ceil(x1) - 1); NaN when the map has no positive value."""
    sal = np.clip(np.asarray(saliency, dtype=np.float64), 0, None)
    total = sal.sum()
    if total <= 0:
        return float("nan")
    x0, y0, x1, y1 = (
        int(np.floor(box[0])),
        int(np.floor(box[1])),
        int(np.ceil(box[2])),
        int(np.ceil(box[3])),
    )
    return float(sal[max(0, y0) : y1, max(0, x0) : x1].sum() / total)


def saliency_stats(saliency: np.ndarray, box: Sequence[float] | None = None) -> dict[str, Any]:
    """JSON-able summary of an (H, W) map: min, max, mean, positive mass, peak and centre of mass of the
    positive part (x, y pixels); with ``box`` also ``mass_in_box`` and ``box_area_fraction``."""
    pos = np.clip(saliency, 0, None)
    total = float(pos.sum())
    py, px = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    stats: dict[str, Any] = {
        "min": float(saliency.min()),
        "max": float(saliency.max()),
        "mean": float(saliency.mean()),
        "positive_mass": total,
        "peak_xy": [int(px), int(py)],
    }
    if total > 0:
        ys, xs = np.indices(saliency.shape)
        stats["centre_of_mass_xy"] = [
            round(float((pos * xs).sum() / total), 2),
            round(float((pos * ys).sum() / total), 2),
        ]
    if box is not None:
        h, w = saliency.shape
        stats["mass_in_box"] = mass_in_box(saliency, box)
        stats["box_area_fraction"] = float((box[2] - box[0]) * (box[3] - box[1]) / (h * w))
    return stats


def parse_methods(method: str | Sequence[str]) -> list[str]:
    """'gradcam,occlusion' or a list -> checked, de-duplicated method names in order."""
    names = [m.strip() for m in (method.split(",") if isinstance(method, str) else method) if m.strip()]
    if not names:
        raise ConfigError(f"--method is empty; choose from {', '.join(ALL_METHODS)}")
    return list(dict.fromkeys(check_choice("saliency method", m, ALL_METHODS) for m in names))


@dataclass
class ExplainResult:
    """``overlays``: one PNG per image (a row per method); ``rows``: JSON-able summaries per image (as
    in ``explain.json``); ``maps``: per image, method -> (H, W) float32 saliency at the image's size."""

    out: Path
    json_path: Path
    overlays: list[Path]
    rows: list[dict[str, Any]]
    maps: list[dict[str, np.ndarray]] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "json": str(self.json_path), "images": self.rows}


def explain(
    weights: str | Path,
    sources: str | Sequence[str],
    *,
    method: str | Sequence[str] = "gradcam",
    target: str | None = None,
    layer: str | None = None,
    out: str | Path | None = None,
    window: int | Sequence[int] | None = None,
    stride: int | None = None,
    steps: int = 32,
    box: int | None = None,
    region: str | Sequence[float] | None = None,
    conf: float = 0.25,
    device: str = "auto",
    project: str | Path | None = None,
    name: str | None = None,
) -> ExplainResult:
    """Saliency maps of a checkpoint's predictions on image files/folders/globs ``sources``.

    ``method``: one or more of occlusion, gradients, integrated-gradients, gradcam (comma list).
    ``target``: class to explain (default: the predicted one; detect: only boxes of that class).
    ``layer``: Grad-CAM module name. ``window``/``stride``: occlusion window side(s) and stride in
    input pixels. ``steps``: integrated-gradients steps. ``box``: detect, index of the detection
    (score >= ``conf``, best first; default 0). ``region``: segment, ``x0,y0,x1,y1`` image pixels.
    Writes ``<out>/<image stem>.png`` (original | heatmap | overlay, a row per method) and
    ``<out>/explain.json``; ``out`` defaults to ``<run>/explain``, else a new ``runs/<task>/explain[-N]``,
    or with ``project``/``name`` a new ``PROJECT/NAME`` (see ``features.output_folder``).
    """
    from foveal.atomic import atomic_write_text
    from foveal.engine.checkpoint import load
    from foveal.engine.inference import expand_sources, pick_device
    from foveal.engine.rundir import check_out
    from foveal.explain.features import default_layer, find_layer, output_folder, plot_saliency
    from foveal.explain.targets import image_box, objective, prepare_image
    from foveal.serialize import dumps

    methods = parse_methods(method)
    check_out(out, project, name)
    if steps < 1:
        raise ConfigError(f"--steps {steps}: integrated gradients needs at least 1 step")
    paths = expand_sources([sources] if isinstance(sources, (str, Path)) else list(sources))
    dev = pick_device(device)
    loaded = load(weights, device=dev)
    model, task = loaded.model, loaded.task
    for module in model.modules():  # in-place activations would overwrite the maps Grad-CAM reads
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    model.requires_grad_(False)  # only input and activation gradients are needed
    in_run = out is None and project is None and name is None
    out_dir = Path(out) if out is not None else output_folder(loaded.path, task.name, project, name)
    mean = torch.tensor(task.meta.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(task.meta.std, device=dev).view(1, 3, 1, 1)
    layer_name, layer_module = layer, None
    overlays, rows, all_maps, stems = [], [], [], set()
    for path in paths:
        x, image = prepare_image(task, path)
        x = x.to(dev)
        obj = objective(task, model, x, image.size, target, box, region, conf)
        missing = [m for m in methods if m not in obj.methods]
        if missing:
            raise ConfigError(
                f"--method {','.join(missing)} is not supported for {type(model).__name__}; "
                f"use {', '.join(obj.methods)}"
            )
        if "gradcam" in methods and layer_module is None:
            layer_name = layer_name or default_layer(model, task.explain_kind, partial(model, x))
            layer_module = find_layer(model, layer_name)
        maps, stats = {}, {}
        img_box = image_box(obj.box, x.shape[-1], image.size)
        for name in methods:
            extra: dict[str, Any] = {}
            if name == "occlusion":
                sal, extra = occlusion_map(obj.prob, x, window, stride)
            elif name == "gradients":
                sal = gradients_map(obj.score, x)
            elif name == "integrated-gradients":
                sal, delta = integrated_gradients_map(obj.score, x, ((0 - mean) / std).expand_as(x), steps)
                extra = {"steps": steps, "baseline": "black", "convergence_delta": delta}
            else:
                sal = _gradcam(obj.score, x, layer_module, layer_name)
                extra = {"layer": layer_name}
            sal = F.interpolate(sal[None, None].float(), (image.height, image.width), mode="bilinear")[0, 0]
            maps[name] = sal.cpu().numpy().astype(np.float32)
            stats[name] = {**saliency_stats(maps[name], img_box), **extra}
        stem = _unique(Path(path).stem, stems)
        row = {
            "path": str(path),
            "task": task.name,
            "predicted": {"class": obj.predicted, "probability": round(obj.predicted_probability, 5)},
            "target": {"class": obj.target, "probability": round(obj.probability, 5)},
            **({"box": img_box} if img_box is not None else {}),
            **obj.info,
            "methods": stats,
        }
        row["overlay"] = str(plot_saliency(image, maps, row, out_dir / f"{stem}.png"))
        overlays.append(Path(row["overlay"]))
        rows.append(row)
        all_maps.append(maps)
    summary = {"weights": str(loaded.path), "task": task.name, "methods": methods, "images": rows}
    json_path = atomic_write_text(out_dir / "explain.json", dumps(summary, indent=1))
    from foveal.report.html import refresh_report

    if in_run:
        refresh_report(weights)  # the run's report gains the saliency examples
    return ExplainResult(out_dir, json_path, overlays, rows, all_maps)


def _gradcam(score: Scalar, x: Tensor, layer: nn.Module, name: str) -> Tensor:
    """:func:`gradcam_map` with a one-line error for a layer the explained output does not depend on."""
    try:
        return gradcam_map(score, x, layer)
    except RuntimeError as err:
        if "not have been used in the graph" not in str(err) and "does not require grad" not in str(err):
            raise
        raise ConfigError(
            f"--layer {name}: the explained output does not depend on this layer; pick one on its path "
            "(the default is the last conv layer that feeds it)"
        ) from err


def _unique(stem: str, taken: set[str]) -> str:
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name
