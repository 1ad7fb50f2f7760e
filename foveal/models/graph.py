"""What a model exports: the graph module, its named outputs and how the runtime feeds it.

``foveal export`` writes :attr:`ExportGraph.module` (not the training model) to ONNX or TorchScript;
the task's ``from_graph`` turns the graph's outputs back into what the eager model's ``forward``
returns, so post-processing, metrics, TTA and calibration are the same code for every format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass
class ExportGraph:
    """``module``: (B, 3, H, W) normalised float images -> a tuple of tensors named ``outputs``.

    ``per_image``: the graph takes one image (B = 1) and its outputs have one row per object (the
    R-CNNs); the runtime calls it image by image. ``exporter``: "dynamo" (``torch.export``) or
    "torchscript" (the TorchScript-based ONNX exporter, for models with data-dependent control flow).
    ``settings``: plain values the task's ``from_graph`` needs beside the graph (thresholds).
    ``decode``: one sentence for users on where decoding and NMS happen (stored in the metadata).
    ``script``: TorchScript by ``torch.jit.script`` of the module (else ``torch.jit.trace``).
    ``rows``: the outputs are sets of rows, one per candidate object (dim 1 of (B, k, ...) outputs,
    dim 0 of per-image outputs), whose order among near-equal scores is arbitrary: the parity check
    compares them as sets (rows matched one to one). ``onnx_atol``: per-output absolute tolerances of
    the parity check for ONNX files, where the ONNX version of an op differs from the eager one by
    design (stated in the export's report)."""

    module: nn.Module
    outputs: tuple[str, ...]
    per_image: bool = False
    exporter: str = "dynamo"
    settings: dict[str, Any] = field(default_factory=dict)
    decode: str = "the graph's outputs are the model's raw outputs"
    script: bool = False
    rows: bool = False
    onnx_atol: dict[str, float] = field(default_factory=dict)


class TupleGraph(nn.Module):
    """``fn(model, images)`` as a module with ``model`` as a submodule (its weights are the graph's)."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module, Tensor], tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return self.fn(self.model, images)
