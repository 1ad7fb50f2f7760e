"""``foveal.export``: a checkpoint to ONNX or TorchScript, checked against its eager model."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from foveal.atomic import atomic_write_text
from foveal.errors import ConfigError, ExportError, check_choice
from foveal.export.metadata import SUFFIXES, build_metadata, input_shape
from foveal.export.parity import Tolerance, check_parity, parity_samples
from foveal.export.writers import write_onnx, write_torchscript
from foveal.serialize import dumps

log = logging.getLogger("foveal")


def export(
    weights: str | Path,
    fmt: str = "onnx",
    *,
    out: str | Path | None = None,
    opset: int | None = None,
    dynamic: bool = False,
    half: bool = False,
    simplify: bool = False,
    batch: int = 1,
    data: str | Path | None = None,
    images: Sequence[str] | None = None,
    check_images: int = 32,
    atol: float | None = None,
    rtol: float | None = None,
    min_agreement: float | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Export checkpoint ``weights`` as ``fmt`` ("onnx" or "torchscript") to ``out`` (default: beside
    the checkpoint, ``best.onnx`` / ``best.ts``) and check it against the eager model.

    The file takes (``batch``, 3, imgsz, imgsz) float32 images normalised as the metadata says
    (``dynamic``: any batch, height and width; a TorchScript trace: any batch; ``half``: float16) and
    carries the task, class names, input size, normalisation and post-processing settings as
    metadata. Then the parity check runs on ``check_images`` real images (``images``, else ``data``'s
    val split, else the training data's): max |diff| of the raw outputs within ``atol`` + ``rtol`` x
    |value| (1e-4; float16: 1e-2) and the task's agreement >= ``min_agreement`` (0.99; float16: 0.95).
    Its report goes into ``export.json`` beside the file (one entry per exported file). A file failing
    the check is kept only as ``NAME.failed.SUFFIX`` and an ExportError is raised; a failed export
    leaves no file. Returns the report (``file``, ``parity``, ...)."""
    from foveal.engine.checkpoint import load

    check_choice("--format", fmt, tuple(SUFFIXES))
    if batch < 1:
        raise ConfigError(f"--batch {batch}: must be >= 1")
    if fmt == "torchscript" and (opset is not None or simplify):
        raise ConfigError("--opset and --simplify are ONNX options; drop them for --format torchscript")
    loaded = load(weights)
    task = loaded.task
    target = Path(out) if out is not None else loaded.path.with_suffix(SUFFIXES[fmt])
    if target.suffix.lower() != SUFFIXES[fmt] and not (
        fmt == "torchscript" and target.suffix == ".torchscript"
    ):
        raise ConfigError(f"--out {target}: a {fmt} file must end in {SUFFIXES[fmt]}")
    samples, source = parity_samples(loaded, data, images, check_images)
    model = loaded.model.eval()
    if half:
        model = _half_copy(loaded)
    graph = task.export_graph(model)
    graph.module.eval()
    # a TorchScript trace keeps the traced height and width; its free batch is what the parity check
    # (batches of 16 and the rest) verifies
    traced = fmt == "torchscript" and not graph.script
    shape = input_shape(graph, task.meta.imgsz, batch, dynamic, sizes=not traced)
    example = torch.rand(1 if graph.per_image else batch, 3, task.meta.imgsz, task.meta.imgsz)
    example = example.to(torch.float16 if half else torch.float32)
    doc = build_metadata(loaded, graph, fmt, shape, half, opset)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    started = time.perf_counter()
    try:
        if fmt == "onnx":
            doc["opset"] = write_onnx(
                graph, example, tmp, doc, dynamic=dynamic, opset=opset, simplify=simplify
            )
        else:
            write_torchscript(graph, example, tmp, doc)
        seconds = time.perf_counter() - started
        exported = load(tmp, threads=threads)
        defaults = Tolerance.default(half)
        tolerance = Tolerance(
            defaults.atol if atol is None else atol,
            defaults.rtol if rtol is None else rtol,
            defaults.agreement if min_agreement is None else min_agreement,
        )
        graph.module.to(example.dtype)
        parity = check_parity(loaded, graph, exported, samples, tolerance)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = target if parity["passed"] else target.with_suffix(f".failed{target.suffix}")
    os.replace(tmp, final)
    os.chmod(final, 0o644)
    report = {
        "file": str(final),
        "format": fmt,
        "weights": str(loaded.path),
        "task": task.name,
        "model": task.meta.model,
        "bytes": final.stat().st_size,
        "export_seconds": round(seconds, 3),
        "input": doc["input"],
        "outputs": doc["outputs"],
        "decode": doc["decode"],
        "opset": doc.get("opset"),
        "half": half,
        "dynamic": dynamic,
        "checked_on": source,
        "parity": parity,
        "versions": _versions(fmt),
    }
    _record(final.parent / "export.json", final.name, report)
    if not parity["passed"]:
        raise ExportError(
            f"{final}: the export does not match {loaded.path}: {'; '.join(parity['reasons'])} "
            f"(report in {final.parent / 'export.json'}); the file is kept as {final.name} for inspection"
        )
    log.info("exported %s (parity: max |diff| %.3g, %s %.4f)", final, parity["max_abs_diff"],
             parity["agreement"]["name"], parity["agreement"]["value"])  # fmt: skip
    return report


def _half_copy(loaded: Any) -> torch.nn.Module:
    """A float16 copy of the loaded model (the eager float32 model stays the parity reference)."""
    import copy

    try:
        return copy.deepcopy(loaded.model).half().eval()
    except Exception as err:  # a model that does not convert
        raise ExportError(
            f"{loaded.path}: the model does not convert to float16 ({err}); drop --half"
        ) from err


def _record(path: Path, name: str, report: dict[str, Any]) -> None:
    """Add ``report`` as entry ``name`` of the ``export.json`` at ``path`` (written atomically)."""
    doc: dict[str, Any] = {}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("%s was not valid JSON; it is rewritten", path)
    doc[name] = report
    atomic_write_text(path, dumps(doc, indent=1))


def _versions(fmt: str) -> dict[str, str]:
    found = {"torch": torch.__version__}
    if fmt == "onnx":
        import onnx
        import onnxruntime

        found.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return found
