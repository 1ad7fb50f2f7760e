"""Layers of a model and their feature maps: conv layer names, the default explained layer, the PNGs.

``list_layers`` names every ``nn.Conv2d`` of a model (``model.named_modules`` names, e.g.
``features.conv2``); ``conv_order`` runs one forward pass with hooks to get the order in which the
convolutions actually run and their output shapes; ``default_layer`` picks the layer Grad-CAM and
``foveal features`` use when no ``--layer`` is given (see its docstring). ``features`` writes a grid
PNG of one layer's feature maps for one image; the PNG's text metadata ``panels`` holds the number of
maps drawn. ``plot_saliency`` draws ``foveal explain``'s overlays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn

from foveal.atomic import atomic_write
from foveal.errors import ConfigError, did_you_mean

DPI = 100
_DETECTION_BRANCHES = ("heatmap", "size", "offset", "keypoints")  # CenterNet prediction heads
_PROJECTION = {"shortcut", "downsample"}  # residual 1x1 projections: they run after the block's main convs


def list_layers(model: nn.Module | str | Path) -> list[str]:
    """Names of the ``nn.Conv2d`` modules of ``model`` (a module, or a checkpoint / run folder), in
    definition (``named_modules``) order."""
    if not isinstance(model, nn.Module):
        from foveal.engine.checkpoint import load

        model = load(model).model
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (any module, not only convolutions); ConfigError listing conv
    layers (with close matches) when there is none."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    convs = list_layers(model)
    shown = ", ".join(
        convs[:3] + (["..."] if len(convs) > 6 else []) + convs[-3:] if len(convs) > 6 else convs
    )
    raise ConfigError(
        f"unknown layer '{name}'{did_you_mean(name, convs)}; conv layers of this model: {shown} "
        f"({len(convs)} in all; `foveal features --weights CKPT --list-layers` lists them)"
    )


def conv_order(model: nn.Module, run: Callable[[], object]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every ``nn.Conv2d`` in the order they run during ``run()`` (a call
    that does one forward pass of ``model``); a conv that runs twice is listed at its last call."""
    names = {module: name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    order: dict[str, tuple[int, ...]] = {}

    def hook(module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        name = names[module]
        order.pop(name, None)
        order[name] = tuple(output.shape)

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return list(order.items())


def _excluded(model: nn.Module, kind: str | None) -> set[str]:
    """Prefixes of the modules that predict outputs directly (their maps are the outputs themselves)."""
    if kind == "map":
        head = getattr(model, "head", None)
        if isinstance(head, nn.Module):
            return {name for name, module in model.named_modules() if module is head}
    if kind == "objects":
        head = getattr(model, "head", None)
        branches = {f"head.{b}" for b in _DETECTION_BRANCHES if isinstance(getattr(head, b, None), nn.Module)}
        if branches:
            return branches
    return set()


def default_layer(model: nn.Module, kind: str | None, run: Callable[[], object]) -> str:
    """The layer explained when no ``--layer`` is given: the last ``nn.Conv2d`` in forward order whose
    output is spatial (height and width > 1), leaving out residual projections (modules named
    ``shortcut``/``downsample``, which run after a block's main convs but carry only its skip path)
    and the layers that emit predictions directly:

    ``kind`` is the task's ``explain_kind``:

    - "vector" (classify, regress): any conv (such models end in a linear layer);
    - "map" (segment): convs outside the model's ``.head`` (the 1x1 classifier), i.e. the decoder's
      last conv;
    - "objects" (detect, instance, pose): for CenterNet the last decoder conv (the stride-4 map the
      heatmap/size/offset heads read); for torchvision detectors the last conv of ``backbone.body``
      (the deepest backbone stage).
    ``run()`` does one forward pass of ``model`` on a typical input.
    """
    prefix = ""
    if kind == "objects" and hasattr(getattr(model, "model", None), "backbone"):
        prefix = "model.backbone.body."
    excluded = _excluded(model, kind)
    candidates = [
        name
        for name, shape in conv_order(model, run)
        if len(shape) == 4
        and shape[-1] > 1
        and shape[-2] > 1
        and name.startswith(prefix)
        and not _PROJECTION.intersection(name.split("."))
        and not any(name == e or name.startswith(e + ".") for e in excluded)
    ]
    if not candidates:
        raise ConfigError(
            f"{type(model).__name__} has no convolution with a spatial output to explain; pass --layer NAME"
        )
    return candidates[-1]


def feature_maps(model: nn.Module, layer: nn.Module, run: Callable[[], object]) -> Tensor:
    """The output of ``layer`` for the first image of the forward pass ``run()``: (C, h, w) on CPU
    (a (C,) or (D,) output becomes (C, 1, 1)). ConfigError when ``layer`` does not run."""
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: Tensor | tuple) -> None:
        captured.append((output[0] if isinstance(output, tuple) else output).detach())

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    if not captured or not torch.is_tensor(captured[-1]):
        raise ConfigError(
            f"layer {type(layer).__name__} gave no tensor output in a forward pass; pick another"
        )
    maps = captured[-1][0].float().cpu()
    return maps.reshape(maps.shape[0], *maps.shape[1:], *[1] * (3 - maps.ndim)) if maps.ndim < 3 else maps


def plot_feature_grid(maps: Tensor | np.ndarray, title: str, out: str | Path, max_maps: int = 64) -> Path:
    """Draw the first ``max_maps`` of (C, h, w) ``maps``, each min-max normalised on its own (a constant
    map is drawn black), in a near-square grid (row-major, 1 px gaps) titled ``title``; the PNG's
    text metadata ``panels`` is the number of maps drawn."""
    maps = np.asarray(maps, dtype=np.float32)[: max(1, max_maps)]
    n, h, w = maps.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    norm = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
    mosaic = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        mosaic[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = norm[i]
    scale = min(8.0, max(3.0, 0.9 * cols)) / mosaic.shape[1]
    fig = Figure(figsize=(mosaic.shape[1] * scale, mosaic.shape[0] * scale + 0.4), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.4 / fig.get_figheight()))
    ax.imshow(mosaic, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    fig.text(0.5, 1.0 - 0.2 / fig.get_figheight(), title, ha="center", va="center", fontsize=8)
    return save_figure(fig, out, {"panels": str(n)})


def save_figure(fig: Figure, out: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Render ``fig`` (Agg, no pyplot) to a PNG at ``out`` atomically; ``metadata`` become PNG text."""
    FigureCanvasAgg(fig)
    return atomic_write(out, lambda handle: fig.savefig(handle, format="png", dpi=DPI, metadata=metadata))


def output_folder(
    checkpoint: str | Path, task: str, project: str | Path | None = None, name: str | None = None
) -> Path:
    """Where explanations of ``checkpoint`` (a ``task`` model) go: a new run folder ``PROJECT/NAME``
    when either is given (``foveal.engine.rundir.output_dir``); else ``<run>/explain`` when the
    checkpoint sits in ``<run>/checkpoints/`` of a run with config.yaml, else a new
    ``runs/<task>/explain[-N]``."""
    from foveal.engine.rundir import output_dir

    run = Path(checkpoint).parent.parent
    if project is None and name is None and (run / "config.yaml").is_file():
        return run / "explain"
    return output_dir(None, task, "explain", project, name)


def features(
    weights: str | Path,
    image: str | Path,
    *,
    layer: str | None = None,
    out: str | Path | None = None,
    max_maps: int = 64,
    device: str = "auto",
    project: str | Path | None = None,
    name: str | None = None,
) -> Path:
    """Write a grid PNG of ``layer``'s feature maps (default: :func:`default_layer`) for ``image``.

    Each of the first ``max_maps`` channels is min-max normalised on its own; the title names the
    layer and its output shape (C, h, w). ``out``: the PNG path (default
    ``<explain folder>/features-<layer>-<image stem>.png``, see :func:`output_folder`, which
    ``project``/``name`` choose). Returns it.
    """
    from foveal.engine.checkpoint import load
    from foveal.engine.inference import pick_device
    from foveal.engine.rundir import check_out
    from foveal.explain.targets import prepare_image

    if max_maps < 1:
        raise ConfigError(f"--max-maps {max_maps}: must be at least 1")
    check_out(out, project, name)
    target = pick_device(device)
    loaded = load(weights, device=target)
    model, task = loaded.model, loaded.task
    x, _ = prepare_image(task, image)
    x = x.to(target)

    def run() -> None:
        model(x)

    layer = layer if layer is not None else default_layer(model, task.explain_kind, run)
    maps = feature_maps(model, find_layer(model, layer), run)
    if out is None:
        folder = output_folder(loaded.path, task.name, project, name)
        out = folder / f"features-{layer.replace('.', '_')}-{Path(image).stem}.png"
    shown = min(max_maps, maps.shape[0])
    title = f"{layer}  output {tuple(maps.shape)}  ({shown} of {maps.shape[0]} maps)  {Path(image).name}"
    return plot_feature_grid(maps.numpy(), title, out, max_maps)


def plot_saliency(
    image: Image.Image, maps: dict[str, np.ndarray], row: dict[str, Any], out: str | Path
) -> Path:
    """One row per method of (H, W) ``maps`` at ``image``'s size: original | heatmap | overlay (jet,
    alpha 0.5), each map's positive part scaled to [0, 1]; ``row`` (an explain.json entry) gives the
    title (predicted and target class with probability) and the ``box`` drawn, if any."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    h, w = rgb.shape[:2]
    gap = max(1, w // 16)
    jet = colormaps["jet"]
    panels = []
    for sal in maps.values():
        pos = np.clip(sal, 0, None)
        heat = jet(pos / pos.max() if pos.max() > 0 else pos)[..., :3]
        white = np.ones((h, gap, 3), dtype=np.float32)
        panels.append(np.concatenate([rgb, white, heat, white, 0.5 * rgb + 0.5 * heat], axis=1))
        panels.append(np.ones((gap, panels[-1].shape[1], 3), dtype=np.float32))
    mosaic = np.concatenate(panels[:-1], axis=0)
    scale = 7.5 / mosaic.shape[1]
    head = 0.5
    fig = Figure(figsize=(7.5, mosaic.shape[0] * scale + head), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - head / fig.get_figheight()))
    ax.imshow(np.clip(mosaic, 0, 1), interpolation="nearest")
    ax.set_axis_off()
    box = row.get("box")
    for i, (name, sal) in enumerate(maps.items()):
        top = i * (h + gap)
        label = f"{name} (max {float(sal.max()):.3g})"
        ax.text(w + gap + w / 2, top + h * 0.02, label, ha="center", va="top", fontsize=8, color="white")
        if box is not None:
            for j in range(3):
                xy = (box[0] + j * (w + gap) - 0.5, box[1] + top - 0.5)
                ax.add_patch(Rectangle(xy, box[2] - box[0], box[3] - box[1], fill=False, ec="white", lw=1))
    predicted, target = row["predicted"], row["target"]
    title = (
        f"{Path(row['path']).name}: predicted {predicted['class']} {predicted['probability']:.2f}"
        f" | target {target['class']} {target['probability']:.2f}"
    )
    if "box_index" in row:
        title += f" | box {row['box_index']}"
    lines = [title, "original | " + " / ".join(maps) + " | overlay"]
    top = 1.0 - 0.5 * head / fig.get_figheight()
    fig.text(0.5, top, "\n".join(lines), ha="center", va="center", fontsize=8)
    return save_figure(fig, out, {"methods": ",".join(maps)})
