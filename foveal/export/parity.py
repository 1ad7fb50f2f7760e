"""The parity check every export runs: the exported file against its eager model on real images.

Two measures: the max |diff| of the graph's raw outputs (eager graph vs file, per output), and the
task's agreement of the predictions (``Task.export_agreement``: top-1 agreement, mask IoU, box mAP of
the export's detections against the eager model's, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from foveal.data.sample import Sample
from foveal.engine.inference import expand_sources, run_model
from foveal.engine.loaders import make_loader
from foveal.errors import ConfigError
from foveal.models.graph import ExportGraph


@dataclass(frozen=True)
class Tolerance:
    """An output value passes when |export - eager| <= ``atol`` + ``rtol`` x |eager|; the predictions
    when the task's agreement >= ``agreement``."""

    atol: float = 1e-4
    rtol: float = 1e-4
    agreement: float = 0.99

    @classmethod
    def default(cls, half: bool) -> Tolerance:
        """float32: 1e-4; float16 files: 1e-2 and an agreement of 0.95."""
        return cls(1e-2, 1e-2, 0.95) if half else cls()


def parity_samples(
    loaded: Any, data: str | Path | None, images: Sequence[str] | None, n: int, split: str = "val"
) -> tuple[list[Sample], str]:
    """Up to ``n`` images to check on and where they come from: ``images`` (files, folders, globs),
    else ``split`` of ``data``, else of the dataset the checkpoint was trained on."""
    if images:
        paths = expand_sources(list(images))[:n]
        return [Sample(str(p)) for p in paths], f"{len(paths)} given images"
    source = data if data is not None else loaded.config.get("data")
    if not source or not Path(str(source)).exists():
        raise ConfigError(
            f"no images for the parity check: the training data {source!r} is not here; pass --data "
            "DATASET or --images FILES (real images the export is checked on)"
        )
    task = loaded.task
    try:
        samples = task.load_eval_data(str(source), split)
    except Exception:  # a dataset without that split: its training images are still real images
        samples = task.load_eval_data(str(source), "train")
        split = "train"
    return samples[:n], f"{min(n, len(samples))} {split} images of {source}"


def raw_diffs(
    graph: ExportGraph, exported: Any, task: Any, samples: list[Sample], batch: int, rtol: float
) -> dict[str, Any]:
    """Per float output, over ``samples`` (eval transform), of the eager ``graph`` and the exported
    model's ``raw`` outputs: the max |diff|, the max |eager| and the max of |diff| - ``rtol`` x |eager|
    ("excess"). Row outputs (``graph.rows``) are compared as sets, rows matched one to one (same
    labels, least difference); rows without a partner count in ``count_mismatches``."""
    found: dict[str, dict[str, float]] = {}
    mismatches = 0
    with torch.inference_mode():
        for images, _ in make_loader(task, samples, "val", batch, 0):
            parts = exported.raw(images)
            step = exported.chunk(len(images))
            for index, theirs in enumerate(parts):
                chunk = images[index * step : (index + 1) * step].to(exported.dtype)
                mine = dict(zip(graph.outputs, graph.module(chunk), strict=True))
                pairs = _image_rows(mine, theirs, graph) if graph.rows else [(mine, theirs)]
                for a_rows, b_rows in pairs:
                    a_rows, b_rows, unmatched = (
                        _match_rows(a_rows, b_rows) if graph.rows else (a_rows, b_rows, 0)
                    )
                    mismatches += unmatched
                    for name, a in a_rows.items():
                        if not a.is_floating_point():
                            continue
                        a, b = a.float(), b_rows[name].float()
                        entry = found.setdefault(name, {"max_abs_diff": 0.0, "max_abs": 0.0, "excess": 0.0})
                        if a.numel():
                            diff = (a - b).abs()
                            entry["max_abs_diff"] = max(entry["max_abs_diff"], float(diff.max()))
                            entry["max_abs"] = max(entry["max_abs"], float(a.abs().max()))
                            entry["excess"] = max(entry["excess"], float((diff - a.abs() * rtol).max()))
    return {"outputs": found, "count_mismatches": mismatches}


def _image_rows(
    mine: dict[str, Tensor], theirs: dict[str, Tensor], graph: ExportGraph
) -> list[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """Per image, its (rows, ...) outputs of both models."""
    if graph.per_image:
        return [(mine, theirs)]
    n = len(next(iter(mine.values())))
    return [({k: v[i] for k, v in mine.items()}, {k: v[i] for k, v in theirs.items()}) for i in range(n)]


def _match_rows(
    a: dict[str, Tensor], b: dict[str, Tensor]
) -> tuple[dict[str, Tensor], dict[str, Tensor], int]:
    """The rows of ``a`` and ``b`` paired one to one (Hungarian on the largest |diff| over the small float
    outputs; rows with different integer outputs, e.g. labels, never pair) and the unpaired count."""
    from scipy.optimize import linear_sum_assignment

    def features(rows: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        def flat(v: Tensor) -> Tensor:
            return v.flatten(1) if v.ndim > 1 else v[:, None]

        # rows pair on their small outputs (boxes, scores, keypoints); large ones (masks) are compared only
        small = [v for v in rows.values() if v.is_floating_point() and v.shape[1:].numel() <= 64]
        floats = [flat(v.float()) for v in small]
        ints = [flat(v).double() for v in rows.values() if not v.is_floating_point()]
        n = len(next(iter(rows.values())))
        return (torch.cat(floats, 1) if floats else torch.zeros(n, 0)), (
            torch.cat(ints, 1) if ints else torch.zeros(n, 0, dtype=torch.float64)
        )

    fa, ia = features(a)
    fb, ib = features(b)
    if not len(fa) or not len(fb):
        return {k: v[:0] for k, v in a.items()}, {k: v[:0] for k, v in b.items()}, abs(len(fa) - len(fb))
    cost = (fa[:, None] - fb[None]).abs().amax(-1) if fa.shape[1] else torch.zeros(len(fa), len(fb))
    if ia.shape[1]:
        cost = cost + 1e12 * ((ia[:, None] - ib[None]).abs().amax(-1) > 0)
    rows, cols = linear_sum_assignment(cost.double().numpy())
    keep = cost[rows, cols] < 1e12
    rows, cols = torch.as_tensor(rows[keep.numpy()]), torch.as_tensor(cols[keep.numpy()])
    unmatched = max(len(fa), len(fb)) - len(rows)
    return {k: v[rows] for k, v in a.items()}, {k: v[cols] for k, v in b.items()}, unmatched


def check_parity(
    loaded: Any,
    graph: ExportGraph,
    exported: Any,
    samples: list[Sample],
    tolerance: Tolerance,
    batch: int = 16,
) -> dict[str, Any]:
    """The parity report of ``exported`` (a ``Loaded`` of the file) against ``loaded`` on ``samples``:
    raw output diffs, the task's agreement, the tolerance and whether it ``passed`` (with reasons)."""
    if not samples:
        raise ConfigError("no images for the parity check; pass --data DATASET or --images FILES")
    task = loaded.task
    raw = raw_diffs(graph, exported.model, task, samples, batch, tolerance.rtol)
    reference = run_model(task, loaded.model, samples, batch, 0, "cpu", keep=False)[1]
    candidate = run_model(task, exported.model, samples, batch, 0, "cpu", keep=False)[1]
    name, value = task.export_agreement(reference, candidate)
    loose = graph.onnx_atol if exported.model.doc["format"] == "onnx" else {}
    atol = {out: max(tolerance.atol, loose.get(out, 0.0)) for out in raw["outputs"]}
    reasons = [
        f"{out}: max |diff| {d['max_abs_diff']:.3g} exceeds {atol[out]:g} + {tolerance.rtol:g} x |value|"
        for out, d in raw["outputs"].items()
        if d["excess"] > atol[out]
    ]
    if value < tolerance.agreement:
        reasons.append(f"{name} {value:.4f} is below {tolerance.agreement:g}")
    for entry in raw["outputs"].values():
        entry.pop("excess")
    worst = max((d["max_abs_diff"] for d in raw["outputs"].values()), default=0.0)
    return {
        "images": len(samples),
        "max_abs_diff": worst,
        "outputs": raw["outputs"],
        "count_mismatches": raw["count_mismatches"],
        "agreement": {"name": name, "value": value},
        "tolerance": {
            "atol": tolerance.atol,
            "rtol": tolerance.rtol,
            "agreement": tolerance.agreement,
            "atol_per_output": {k: v for k, v in atol.items() if v != tolerance.atol},
        },  # fmt: skip
        "passed": not reasons,
        "reasons": reasons,
    }
