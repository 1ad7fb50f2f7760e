"""The metadata an exported file carries: everything needed to predict with it, as plain JSON.

ONNX files hold it in ``metadata_props`` (key ``foveal``, plus the plain keys ``task``,
``class_names``, ``imgsz``, ``mean``, ``std``, ``input``, ``decode`` for other runtimes); TorchScript
files as the extra file ``foveal.json``.
"""

from __future__ import annotations

import json
from typing import Any

from foveal.engine.exported import FORMAT_VERSION
from foveal.models.graph import ExportGraph
from foveal.serialize import dumps

SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}


def input_shape(
    graph: ExportGraph, imgsz: int, batch: int, dynamic: bool, sizes: bool = True
) -> list[int | str]:
    """The graph input's shape: (B, 3, H, W) with names for the dynamic axes (``dynamic``: the batch,
    and the height and width when ``sizes``)."""
    first: int | str = 1 if graph.per_image else ("batch" if dynamic else batch)
    side: tuple[int | str, int | str] = ("height", "width") if dynamic and sizes else (imgsz, imgsz)
    return [first, 3, *side]


def build_metadata(
    loaded: Any, graph: ExportGraph, fmt: str, shape: list[int | str], half: bool, opset: int | None
) -> dict[str, Any]:
    """The metadata of ``loaded`` (a ``foveal.engine.checkpoint.Loaded``) exported as ``graph``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        foveal_version = version("foveal")
    except PackageNotFoundError:  # run from a source tree that is not installed
        foveal_version = "unknown"
    task = loaded.task
    meta = task.meta
    return {
        "format_version": FORMAT_VERSION,
        "foveal_version": foveal_version,
        "format": fmt,
        "task": task.name,
        "model": meta.model,
        "class_names": task.class_names,
        "imgsz": meta.imgsz,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "input": {
            "name": "images",
            "shape": shape,
            "dtype": "float16" if half else "float32",
            "layout": f"RGB, resized to {meta.imgsz}x{meta.imgsz}, values in [0, 1], then (x - mean) / std",
        },
        "outputs": list(graph.outputs),
        "per_image": graph.per_image,
        "settings": dict(graph.settings),
        "decode": graph.decode,
        "opset": opset,
        "postprocess": {option.name: option.default for option in task.predict_options},
        "meta": meta.to_dict(),
        "config": json.loads(dumps(loaded.config)),
        "source": str(loaded.path),
    }


def plain_props(doc: dict[str, Any]) -> dict[str, str]:
    """The ONNX ``metadata_props`` entries of ``doc``: ``foveal`` (all of it) and readable plain keys."""
    props = {"foveal": dumps(doc)}
    for key in ("task", "class_names", "imgsz", "mean", "std", "input", "decode", "outputs"):
        value = doc[key]
        props[key] = value if isinstance(value, str) else dumps(value)
    return props
