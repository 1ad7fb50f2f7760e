"""``foveal.evaluate`` and ``foveal.predict``: a checkpoint on labelled data, or on image files."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foveal.atomic import atomic_write_text
from foveal.data.checks import drop_unreadable
from foveal.data.sample import Sample
from foveal.engine.checkpoint import Loaded, load
from foveal.engine.inference import expand_sources, run_model
from foveal.serialize import dumps

log = logging.getLogger("foveal")


def evaluate(
    weights: str | Path | Loaded,
    data: str | Path,
    *,
    split: str = "val",
    task: str | None = None,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    fmt: str = "auto",
    on_bad_image: str = "error",
    plots: str | Path | None = None,
    tta: str | bool | None = None,
    errors: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of checkpoint ``weights`` (a path, or a model from :func:`foveal.load`) on ``split`` of
    ``data`` (same keys as a run's metrics.json). ``plots`` (a folder) also writes the task's plots.
    ``tta``: test-time augmentation views (see ``foveal.engine.merge``), e.g. "hflip" or "hflip,vflip".
    ``errors`` (a folder): the error analysis of the same pass
    (``foveal.engine.error_analysis.write_errors``: errors.json and its plots); the metrics gain
    "errors" ({"json", "plots"}).
    """
    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task)
    samples = drop_unreadable(loaded.task.load_eval_data(str(data), split, fmt), on_bad_image)
    kept, predictions = run_model(loaded.task, with_tta(loaded, tta), samples, batch, workers, device)
    metrics = loaded.task.compute_metrics(kept)
    if plots is not None:
        metrics["plots"] = loaded.task.plots(kept, metrics, str(plots), samples, predictions)
    if errors is not None:
        from foveal.engine.error_analysis import write_errors

        metrics["errors"] = write_errors(loaded.task, kept, metrics, samples, predictions, errors)
    return {**metrics, "split": split, "weights": str(loaded.path)}


def predict(
    weights: str | Path | Loaded,
    sources: Sequence[str] | str,
    *,
    out: str | Path | None = None,
    task: str | None = None,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    on_bad_image: str = "error",
    render: bool = False,
    tta: str | bool | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Predict every image in ``sources`` (files, folders, globs) with checkpoint ``weights`` (a path, or
    a model from :func:`foveal.load`, which saves re-loading it for every call).

    ``options`` go to the task's post-processing (classify: ``topk``; segment: ``instances``,
    ``min_size``, ``fill_holes``, ``open_radius``, ``close_radius``). Returns one dict per image:
    {"path", **prediction} (segmentation rows carry the class mask as a numpy array under "mask").
    With ``out``, writes ``predictions.json`` and ``predictions.csv`` (arrays left out) and the
    task's per-image files (segment: mask and overlay PNGs; ``render``: overlays for every task)
    into that folder; ``out="auto"`` picks a new folder ``runs/<task>/predict[-N]``. ``tta``: as in
    :func:`evaluate`.
    """
    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task)
    if out == "auto":
        out = prediction_folder(loaded)
    paths = expand_sources([sources] if isinstance(sources, str) else list(sources))
    samples = drop_unreadable([Sample(str(p)) for p in paths], on_bad_image)
    _, predictions = run_model(
        loaded.task, with_tta(loaded, tta), samples, batch, workers, device, keep=False, **options
    )
    rows = []
    for i, (sample, prediction) in enumerate(zip(samples, predictions)):
        prediction = loaded.task.finalize(prediction, sample)
        row = {"path": sample.path, **prediction.to_dict(), "summary": prediction.summary()}
        if out is not None:
            stem = f"{i:05d}_{Path(sample.path).stem}"
            row.update(loaded.task.save_prediction(prediction, sample, Path(out), stem, render))
        rows.append(row)
    if out is not None:
        _write_predictions(Path(out), rows)
        loaded.task.write_predictions(rows, Path(out))
        log.info("predictions written to %s (predictions.json, predictions.csv)", out)
    return rows


def with_tta(loaded: Loaded, tta: str | bool | None) -> torch.nn.Module:
    """The loaded model, wrapped to merge the ``tta`` views when asked."""
    from foveal.engine.merge import MergedModel, parse_tta

    views = parse_tta(tta)
    return MergedModel(loaded.task, [loaded.model], views) if views else loaded.model


def prediction_folder(loaded: Loaded) -> Path:
    """A new folder ``runs/<task>/predict[-N]`` (earlier predictions are never overwritten)."""
    from foveal.engine.rundir import new_run_dir

    return new_run_dir(Path("runs") / loaded.task.name, "predict")


def json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their array values (masks), for JSON and CSV output."""
    return [{k: v for k, v in row.items() if not isinstance(v, np.ndarray)} for row in rows]


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return dumps(value)
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _write_predictions(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = json_rows(rows)
    atomic_write_text(out / "predictions.json", dumps(rows, indent=1))
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column, "")) for column in columns])
    atomic_write_text(out / "predictions.csv", buffer.getvalue())
