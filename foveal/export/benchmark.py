"""``foveal.benchmark``: latency and throughput of one checkpoint in every runtime foveal ships.

Eager PyTorch, TorchScript, onnxruntime (float32) and onnxruntime with int8 dynamic quantisation
(``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations quantised on the fly), at
each batch size, on the same threads. The exports are written to a temporary folder and each one's
parity against the eager model (the task's agreement) is measured on real images when there are any.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from foveal.errors import ConfigError
from foveal.serialize import dumps

log = logging.getLogger("foveal")
RUNTIMES = ("eager", "torchscript", "onnxruntime", "onnxruntime-int8")


def benchmark(
    weights: str | Path,
    *,
    batch: Sequence[int] = (1, 32),
    runtimes: Sequence[str] = RUNTIMES,
    threads: int | None = None,
    iterations: int = 20,
    warmup: int = 3,
    data: str | Path | None = None,
    images: Sequence[str] | None = None,
    check_images: int = 64,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Time ``weights`` in each of ``runtimes`` at each ``batch`` size: the median and p90 latency of
    ``iterations`` calls (after ``warmup``) on (B, 3, imgsz, imgsz) inputs and the throughput
    (images/s at the median), with ``threads`` CPU threads (default: torch's). When real images are
    found (``images``, ``data`` or the training data) each export's agreement with the eager model on
    up to ``check_images`` of them is reported, with the int8 model's metric on ``data`` when labelled.
    ``out``: also write the report as JSON there. Returns {"rows": [...], "agreement": {...}, ...}."""
    from foveal.engine.checkpoint import load
    from foveal.engine.inference import run_model
    from foveal.export.export import export
    from foveal.export.parity import parity_samples

    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ConfigError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    if not batch or min(batch) < 1:
        raise ConfigError(f"--batch {list(batch)}: batch sizes must be >= 1")
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    eager = load(weights)
    try:
        samples, source = parity_samples(eager, data, images, check_images)
    except ConfigError:
        samples, source = [], "none (no images found: pass --data or --images)"
    models: dict[str, Any] = {"eager": eager}
    rows: list[dict[str, Any]] = []
    agreement: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="foveal-bench-") as tmp:
        folder = Path(tmp)
        parity: dict[str, Any] = {}
        if "torchscript" in runtimes:
            models["torchscript"], parity["torchscript"] = _exported(
                export, eager, "torchscript", folder / "model.ts", samples, threads
            )
        if "onnxruntime" in runtimes or "onnxruntime-int8" in runtimes:
            onnx_path = folder / "model.onnx"
            models["onnxruntime"], parity["onnxruntime"] = _exported(
                export, eager, "onnx", onnx_path, samples, threads
            )
            if "onnxruntime-int8" in runtimes:
                models["onnxruntime-int8"] = _quantized(onnx_path, folder / "model.int8.onnx", threads)
        reference = (
            run_model(eager.task, eager.model, samples, 16, 0, "cpu", keep=False)[1] if samples else []
        )
        for name in runtimes:
            loaded = models[name]
            if samples and name != "eager":
                found = run_model(loaded.task, loaded.model, samples, 16, 0, "cpu", keep=False)[1]
                key, value = eager.task.export_agreement(reference, found)
                agreement[name] = {"name": key, "value": value}
            for size in batch:
                rows.append({"runtime": name, "batch": size, **_time(loaded, size, iterations, warmup)})
        metric = _int8_metric(models, data) if "onnxruntime-int8" in models and data is not None else None
    for row in rows:
        base = (
            next(r for r in rows if r["runtime"] == "eager" and r["batch"] == row["batch"])
            if "eager" in runtimes
            else None
        )
        row["speedup"] = round(base["median_ms"] / row["median_ms"], 3) if base else None
    report = {
        "weights": str(eager.path),
        "task": eager.task.name,
        "model": eager.task.meta.model,
        "imgsz": eager.task.meta.imgsz,
        "threads": threads,
        "iterations": iterations,
        "rows": rows,
        "agreement": agreement,
        "agreement_images": source,
        "parity": parity,
        "int8_metric": metric,
        "torch": torch.__version__,
    }
    if out is not None:
        from foveal.atomic import atomic_write_text

        atomic_write_text(Path(out), dumps(report, indent=1))
    return report


def _exported(
    export: Any, eager: Any, fmt: str, path: Path, samples: list, threads: int
) -> tuple[Any, dict[str, Any]]:
    """``eager`` exported as ``fmt`` (a free batch) and loaded, with its parity summary (on
    the real images, else two blank ones); a failed check is logged and the timing still runs."""
    from foveal.engine.checkpoint import load
    from foveal.errors import ExportError

    images = [s.path for s in samples] if samples else _blank_images(path.parent, eager)
    try:
        parity = export(eager.path, fmt, out=path, dynamic=True, images=images)["parity"]
    except ExportError as err:
        log.warning("%s", err)
        path = path.with_suffix(f".failed{path.suffix}")
        parity = json.loads((path.parent / "export.json").read_text())[path.name]["parity"]
    summary = {"max_abs_diff": parity["max_abs_diff"], "passed": parity["passed"], **parity["agreement"]}
    return load(path, threads=threads), summary


def _blank_images(folder: Path, eager: Any) -> list[str]:
    """Two grey images to run the export's check on when no real images are at hand."""
    from PIL import Image

    paths = []
    for i in range(2):
        path = folder / f"blank{i}.png"
        Image.new("RGB", (eager.task.meta.imgsz,) * 2, (127 + i, 127, 127)).save(path)
        paths.append(str(path))
    return paths


def _quantized(source: Path, target: Path, threads: int) -> Any:
    """int8 dynamic quantisation of the ONNX file ``source`` (metadata kept), loaded."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from foveal.engine.checkpoint import load

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the model (shape inference) is for static QDQ
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    model = onnx.load(str(target))
    if not any(p.key == "foveal" for p in model.metadata_props):
        for prop in onnx.load(str(source)).metadata_props:
            entry = model.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value
        onnx.save(model, str(target))
    return load(target, threads=threads)


def _time(loaded: Any, batch: int, iterations: int, warmup: int) -> dict[str, float]:
    """Median and p90 latency (ms) of the model on a (batch, 3, S, S) input, and images/s."""
    size = loaded.task.meta.imgsz
    images = torch.randn(batch, 3, size, size)
    timings = []
    with torch.inference_mode():
        for i in range(warmup + iterations):
            start = time.perf_counter()
            loaded.task.forward(loaded.model, images)
            if i >= warmup:
                timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    p90 = sorted(timings)[max(0, int(round(0.9 * len(timings))) - 1)]
    return {"median_ms": round(median * 1e3, 3), "p90_ms": round(p90 * 1e3, 3),
            "images_per_s": round(batch / median, 1)}  # fmt: skip


def _int8_metric(models: dict[str, Any], data: str | Path) -> dict[str, Any] | None:
    """The task's monitored metric on ``data``'s val split, eager vs int8 (None when not labelled)."""
    from foveal.engine.evaluation import evaluate

    try:
        found = {
            name: evaluate(models[name], data, workers=0, device="cpu")
            for name in ("eager", "onnxruntime-int8")
        }
    except Exception as err:  # unlabelled data or a split that is not there: no metric
        log.info("no int8 metric: %s", err)
        return None
    key = models["eager"].task.monitor
    return {"metric": key, "eager": found["eager"].get(key), "int8": found["onnxruntime-int8"].get(key)}
