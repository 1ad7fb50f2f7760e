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
from foveal.data.imageio import image_size
from foveal.data.sample import Sample
from foveal.engine import distributed
from foveal.engine.checkpoint import Loaded, load
from foveal.engine.inference import expand_sources, run_model
from foveal.errors import ConfigError, did_you_mean
from foveal.serialize import dumps
from foveal.tasks.base import PredictOption, Task

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
    project: str | Path | None = None,
    name: str | None = None,
    compare_tta: str | bool | None = None,
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """Metrics of checkpoint ``weights`` (a path: ``.ckpt``, or an exported ``.onnx``/``.ts``, run by
    its runtime with ``threads`` CPU threads; or a model from :func:`foveal.load`) on ``split`` of
    ``data`` (same keys as a run's metrics.json). ``plots`` (a folder) also writes the task's plots.
    ``tta``: test-time augmentation views (see ``foveal.engine.merge``), e.g. "hflip" or "hflip,vflip".
    ``errors`` (a folder): the error analysis of the same pass (``foveal.engine.error_report.write_errors``:
    errors.json and its plots); the metrics gain "errors" ({"json", "plots"}). ``errors="auto"``: a new
    run folder ``PROJECT/NAME`` (``project``, ``name``; see ``foveal.engine.rundir.output_dir``), else
    the ``plots`` folder, else a new ``runs/<task>/errors[-N]``.
    ``compare_tta`` (views, as ``tta``): also evaluate with TTA; the metrics (of the single pass) gain
    "tta" (the TTA metrics) and, when ``weights`` belongs to a run folder, ``RUN/comparisons/tta.json``
    holds both and the run's report is rebuilt. ``devices`` x ``num_nodes`` > 1 with a DDP
    ``strategy``: the samples are shared out over that many processes (Lightning starts them; see
    ``foveal.engine.inference_ddp``); the metrics are the same, and only the first process writes files.
    """
    from foveal.engine.rundir import output_dir

    if tta and compare_tta:
        raise ConfigError("pass tta (evaluate with TTA) or compare_tta (with and without TTA), not both")
    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task, threads=threads)
    spread = {"devices": devices, "strategy": strategy, "num_nodes": num_nodes}
    if errors == "auto" and not distributed.is_worker_process():
        named = project is not None or name is not None
        errors = (
            plots
            if plots is not None and not named
            else output_dir(None, loaded.task.name, "errors", project, name)
        )
    elif project is not None or name is not None:
        raise ConfigError("--project/--name name the --errors folder; pass a bare --errors with them")
    samples = drop_unreadable(loaded.task.load_eval_data(str(data), split, fmt), on_bad_image)
    kept, predictions, samples = infer(loaded.task, with_tta(loaded, tta), samples, batch, workers, device,
                                       **spread)  # fmt: skip
    if distributed.is_worker_process():  # under torchrun/SLURM: the first process writes the files
        plots = errors = None
    metrics = loaded.task.compute_metrics(kept)
    if plots is not None:
        metrics["plots"] = loaded.task.plots(kept, metrics, str(plots), samples, predictions)
    if errors is not None:
        from foveal.engine.error_report import write_errors

        metrics["errors"] = write_errors(loaded.task, kept, metrics, samples, predictions, errors)
    metrics = {**metrics, "split": split, "weights": str(loaded.path)}
    if compare_tta:
        metrics["tta"] = _compare_tta(
            loaded, data, samples, metrics, compare_tta, batch, workers, device, spread
        )
    return metrics


def _compare_tta(
    loaded: Loaded,
    data: str | Path,
    samples: list[Sample],
    single: dict[str, Any],
    views: str | bool,
    batch: int,
    workers: int | None,
    device: str,
    spread: dict[str, Any],
) -> dict[str, Any]:
    """The metrics with TTA ``views`` on the same samples; saved beside the single pass as the run's
    comparisons/tta.json (when the checkpoint belongs to a run), whose report is rebuilt."""
    from foveal.report.html import refresh_report, run_folder

    kept = infer(loaded.task, with_tta(loaded, views), samples, batch, workers, device, **spread)[0]
    metrics = {**loaded.task.compute_metrics(kept), "split": single["split"], "weights": str(loaded.path)}
    run = run_folder(loaded.path)
    if run is not None and not distributed.is_worker_process():
        doc = {
            "tta": views,
            "split": single["split"],
            "data": str(data),
            "metrics": metrics,
            "single": single,
        }
        atomic_write_text(run / "comparisons" / "tta.json", dumps(doc, indent=1))
        refresh_report(run)
    return metrics


class Predictions(list):
    """What :func:`predict` returns: one dict per image, and ``out``, the folder they were written to
    (None when not written)."""

    out: Path | None = None


def registered_predict_options() -> dict[str, PredictOption]:
    """Every registered task's ``predict_options`` by name (the first task's, for a name several
    declare); a task whose module does not import is left out (logged)."""
    from foveal.tasks import get_task, task_names

    found: dict[str, PredictOption] = {}
    for task_name in task_names():
        try:
            task_cls = get_task(task_name)
        except (ImportError, AttributeError) as err:
            log.debug("task %s left out of the predict options: %s", task_name, err)
            continue
        for option in task_cls.predict_options:
            found.setdefault(option.name, option)
    return found


def predict_flag(name: str) -> str:
    """The command-line flag of a predict option ('max_det' -> '--max-det')."""
    return "--" + name.replace("_", "-")


def task_options(task: Task, options: dict[str, Any]) -> dict[str, Any]:
    """``task``'s post-processing options: its ``predict_options`` defaults updated with ``options``;
    an option of another task, or of none, is a ConfigError."""
    own = {option.name: option.default for option in task.predict_options}
    for key in options:
        if key in own:
            continue
        theirs = ", ".join(predict_flag(n) for n in own) or "none"
        if key in registered_predict_options():
            raise ConfigError(
                f"{predict_flag(key)} is not an option of a {task.name} model; its options: {theirs}"
            )
        raise ConfigError(
            f"unknown predict option '{key}'{did_you_mean(key, list(own))}; {task.name} options: {theirs}"
        )
    return {**own, **options}


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
    project: str | Path | None = None,
    name: str | None = None,
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    threads: int | None = None,
    **options: Any,
) -> Predictions:
    """Predict every image in ``sources`` (files, folders, globs) with checkpoint ``weights`` (a path:
    ``.ckpt``, or an exported ``.onnx``/``.ts`` run by its runtime with ``threads`` CPU threads; or a
    model from :func:`foveal.load`, which saves re-loading it for every call).

    ``options`` go to the task's post-processing: its ``predict_options`` (classify: ``topk``; segment:
    ``instances``, ``min_size``, ``fill_holes``, ``open_radius``, ``close_radius``; detect/instance/pose:
    ``conf``, ``iou``, ``max_det``); another task's option is a ConfigError. Returns one dict per image:
    {"path", **prediction} (segmentation rows carry the class mask as a numpy array under "mask"), as
    a list whose ``out`` is the folder written. With ``out``, writes ``predictions.json`` and
    ``predictions.csv`` (arrays left out) and the task's per-image files (segment: mask and overlay
    PNGs; ``render``: overlays for every task) into that folder; ``out="auto"`` (or ``project``/``name``)
    picks a new run folder ``PROJECT/NAME``, by default ``runs/<task>/predict[-N]`` (see
    ``foveal.engine.rundir.output_dir``). ``tta``, ``devices``, ``strategy``, ``num_nodes``: as in
    :func:`evaluate` (the processes but the first write nothing).
    """
    from foveal.engine.rundir import output_dir

    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task, threads=threads)
    options = task_options(loaded.task, options)
    if distributed.is_worker_process():
        out = project = name = None  # the first process writes the files
    if out == "auto" or (out is None and (project is not None or name is not None)):
        out = output_dir(None, loaded.task.name, "predict", project, name)
    elif out is not None:
        out = output_dir(out, loaded.task.name, "predict", project, name)
    paths = expand_sources([sources] if isinstance(sources, str) else list(sources))
    samples = drop_unreadable([Sample(str(p)) for p in paths], on_bad_image)
    spread = {"devices": devices, "strategy": strategy, "num_nodes": num_nodes}
    found = infer(loaded.task, with_tta(loaded, tta), samples, batch, workers, device, keep=False, **spread,
                  **options)  # fmt: skip
    rows = Predictions()
    by_sample = {id(sample): prediction for sample, prediction in zip(found[2], found[1], strict=True)}
    predictions = [by_sample[id(sample)] for sample in samples]  # back in the sources' order
    rows.out = None if out is None else Path(out)
    for i, (sample, prediction) in enumerate(zip(samples, predictions)):
        prediction = loaded.task.finalize(prediction, image_size(sample.path))
        row = {"path": sample.path, **prediction.to_dict(), "summary": prediction.summary()}
        if out is not None:
            stem = f"{i:05d}_{Path(sample.path).stem}"
            row.update(loaded.task.save_prediction(prediction, sample, Path(out), stem, render))
        rows.append(row)
    if out is not None:
        _write_predictions(Path(out), rows, loaded.task)
        loaded.task.write_predictions(rows, Path(out))
        log.info("predictions written to %s (predictions.json, predictions.csv)", out)
    return rows


def infer(
    task: Task,
    model: torch.nn.Module,
    samples: list[Sample],
    batch: int,
    workers: int | None,
    device: str,
    *,
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    keep: bool = True,
    **options: Any,
) -> tuple[dict[str, torch.Tensor], list[Any], list[Sample]]:
    """(kept outputs, predictions, samples in their order): ``run_model`` in this process, or over
    ``devices`` x ``num_nodes`` processes (gathered in every one)."""
    if isinstance(devices, int) and devices * max(1, num_nodes) > 1:
        from foveal.engine.inference_ddp import run_model_distributed

        return run_model_distributed(task, model, samples, batch=batch, workers=workers, device=device,
                                     devices=devices, strategy=strategy, num_nodes=num_nodes, keep=keep,
                                     **options)  # fmt: skip
    kept, predictions = run_model(task, model, samples, batch, workers, device, keep=keep, **options)
    return kept, predictions, list(samples)


def with_tta(loaded: Loaded, tta: str | bool | None) -> torch.nn.Module:
    """The loaded model, wrapped to merge the ``tta`` views when asked."""
    from foveal.engine.merge import MergedModel, parse_tta

    views = parse_tta(tta)
    return MergedModel(loaded.task, [loaded.model], views) if views else loaded.model


def prediction_folder(loaded: Loaded, project: str | Path | None = None, name: str | None = None) -> Path:
    """A new run folder for predictions: ``PROJECT/NAME``, by default ``runs/<task>/predict[-N]``
    (earlier predictions are never overwritten)."""
    from foveal.engine.rundir import output_dir

    return output_dir(None, loaded.task.name, "predict", project, name)


def json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their array values (masks), for JSON and CSV output."""
    return [{k: v for k, v in row.items() if not isinstance(v, np.ndarray)} for row in rows]


def csv_cell(value: Any) -> str:
    """One predictions.csv cell: lists joined by ';', dicts as JSON, floats to 6 decimals."""
    if isinstance(value, (list, tuple)):
        return ";".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return dumps(value)
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _write_predictions(out: Path, rows: list[dict[str, Any]], task: Task) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = json_rows(rows)
    atomic_write_text(out / "predictions.json", dumps(rows, indent=1))
    rows = [task.table_row(row) for row in rows]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(column, "")) for column in columns])
    atomic_write_text(out / "predictions.csv", buffer.getvalue())
