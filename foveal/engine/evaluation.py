"""``foveal.evaluate`` and ``foveal.predict``: a checkpoint on labelled data, or on image files."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
) -> dict[str, Any]:
    """Metrics of checkpoint ``weights`` (a path, or a model from :func:`foveal.load`) on ``split`` of
    ``data`` (same keys as a run's metrics.json). ``plots`` (a folder) also writes the task's plots.
    """
    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task)
    samples = drop_unreadable(loaded.task.load_eval_data(str(data), split, fmt), on_bad_image)
    kept, _ = run_model(loaded.task, loaded.model, samples, batch, workers, device)
    metrics = loaded.task.compute_metrics(kept)
    if plots is not None:
        metrics["plots"] = loaded.task.plots(kept, metrics, str(plots))
    return {**metrics, "split": split, "weights": str(loaded.path)}


def predict(
    weights: str | Path | Loaded,
    sources: Sequence[str] | str,
    *,
    out: str | Path | None = None,
    task: str | None = None,
    topk: int = 5,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    on_bad_image: str = "error",
    render: bool = False,
) -> list[dict[str, Any]]:
    """Predict every image in ``sources`` (files, folders, globs) with checkpoint ``weights`` (a path, or
    a model from :func:`foveal.load`, which saves re-loading it for every call).

    Returns one dict per image: {"path", **prediction}. With ``out``, writes ``predictions.json``,
    ``predictions.csv`` and (with ``render``) overlay PNGs into that folder; ``out="auto"`` picks a
    new folder ``runs/<task>/predict[-N]`` so earlier predictions are never overwritten.
    """
    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task)
    if out == "auto":
        out = prediction_folder(loaded)
    paths = expand_sources([sources] if isinstance(sources, str) else list(sources))
    samples = drop_unreadable([Sample(str(p)) for p in paths], on_bad_image)
    _, predictions = run_model(
        loaded.task, loaded.model, samples, batch, workers, device, keep=False, topk=topk
    )
    rows = [{"path": s.path, **p.to_dict()} for s, p in zip(samples, predictions)]
    if out is not None:
        _write_predictions(Path(out), rows)
        log.info("predictions written to %s (predictions.json, predictions.csv)", out)
        if render:
            from foveal.data.imageio import load_rgb

            (Path(out) / "overlays").mkdir(exist_ok=True)
            for i, (sample, prediction) in enumerate(zip(samples, predictions)):
                image = loaded.task.render(load_rgb(sample.path), prediction)
                image.save(Path(out) / "overlays" / f"{i:05d}_{Path(sample.path).stem}.png")
    return rows


def prediction_folder(loaded: Loaded) -> Path:
    """A new folder ``runs/<task>/predict[-N]`` (earlier predictions are never overwritten)."""
    from foveal.engine.rundir import new_run_dir

    return new_run_dir(Path("runs") / loaded.task.name, "predict")


def _write_predictions(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "predictions.json", dumps(rows, indent=1))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "labels", "scores"])
    for row in rows:
        writer.writerow(
            [
                row["path"],
                ";".join(row.get("labels", [])),
                ";".join(f"{s:.6f}" for s in row.get("scores", [])),
            ]
        )
    atomic_write_text(out / "predictions.csv", buffer.getvalue())
