"""Write an :class:`~foveal.models.graph.ExportGraph` as an ONNX or TorchScript file with metadata."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from foveal.errors import ExportError
from foveal.export.metadata import plain_props
from foveal.models.graph import ExportGraph
from foveal.serialize import dumps

_LOCATION = re.compile(r'File:? "?([^",\n]+?\.py)"?(?::|, line )(\d+)')


def _locations(err: BaseException) -> list[tuple[str, int]]:
    """(file, line) places in ``err`` and its causes: traceback frames, and the source lines the
    exporters quote in their messages (``# File: x.py:12 in forward``), outside torch itself."""
    found: list[tuple[str, int]] = []
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        found += [(f.f_code.co_filename, line) for f, line in traceback.walk_tb(err.__traceback__)]
        found += [(m.group(1), int(m.group(2))) for m in _LOCATION.finditer(str(err))]
        err = err.__cause__ or err.__context__
    return [
        (f, n)
        for f, n in found
        if not any(part in f for part in ("/torch/", "/onnxscript/", "/foveal/export/"))
    ]


def failing_layer(err: BaseException, root: nn.Module) -> str:
    """'Class (file:line)' of the layer of ``root`` whose ``forward`` holds a place of ``err`` outside
    torch: the layer the exporter could not convert; 'file:line' without such a layer; '' when none."""
    places = _locations(err)
    for filename, line in places:
        for module in root.modules():
            try:
                lines, first = inspect.getsourcelines(type(module).forward)
                source = inspect.getsourcefile(type(module).forward)
            except (OSError, TypeError):
                continue
            if (
                source
                and Path(source).resolve() == Path(filename).resolve()
                and first <= line < first + len(lines)
            ):
                return f"{type(module).__name__} ({Path(filename).name}:{line})"
    return f"{Path(places[0][0]).name}:{places[0][1]}" if places else ""


def export_failed(err: BaseException, what: str, root: nn.Module) -> ExportError:
    """A one-line ExportError naming the layer (when found) and the exporter's first message line."""
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
    layer = failing_layer(err, root)
    where = f" at layer {layer}" if layer else ""
    return ExportError(
        f"{what} failed{where}: {type(err).__name__}: {first[:200]}; the layer does not trace to a "
        "static graph (data-dependent Python control flow, numpy or .item() calls): rewrite it with "
        "tensor ops, or try the other --format"
    )


@contextlib.contextmanager
def _quiet_logs() -> Any:
    """torch.export and the ONNX exporter log failed graphs to stderr; they reach the user as one line."""
    loggers = [logging.getLogger(name) for name in ("torch", "torch.export", "torch.onnx", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' progress prints and warnings."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        _quiet_logs(),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def write_onnx(
    graph: ExportGraph,
    example: Tensor,
    path: Path,
    doc: dict[str, Any],
    *,
    dynamic: bool,
    opset: int | None,
    simplify: bool,
) -> int:
    """Export ``graph`` traced on ``example`` (B, 3, H, W) to ``path`` with ``doc`` as metadata;
    returns the opset written. ``dynamic``: batch (except per-image graphs), height and width are
    free axes; otherwise the file takes exactly ``example``'s shape."""
    import onnx

    names = list(graph.outputs)
    try:
        with _quiet():
            if graph.exporter == "dynamo":
                shapes = None
                if dynamic:
                    dim = torch.export.Dim
                    axes = {2: dim("height", min=32, max=8192), 3: dim("width", min=32, max=8192)}
                    if not graph.per_image:
                        axes[0] = dim("batch", min=1, max=4096)
                    shapes = ({**axes},)
                program = torch.onnx.export(
                    graph.module, (example,), None, dynamo=True, input_names=["images"], output_names=names,
                    opset_version=opset, dynamic_shapes=shapes, optimize=True, verbose=False,
                )  # fmt: skip
                model = program.model_proto
            else:
                axes = {"images": {2: "height", 3: "width"}} if dynamic else {}
                axes.update({name: {0: "objects"} for name in names})
                buffer = io.BytesIO()
                torch.onnx.export(
                    graph.module, (example,), buffer, dynamo=False, input_names=["images"],
                    output_names=names, opset_version=opset or 17, dynamic_axes=axes,
                )  # fmt: skip
                model = onnx.load_from_string(buffer.getvalue())
    except Exception as err:  # the exporters raise many types
        raise export_failed(err, "ONNX export", graph.module) from err
    if simplify:
        model = _simplify(model)
    version = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    doc["opset"] = version
    for key, value in plain_props({**doc, "opset": version}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(path))
    return int(version)


def _simplify(model: Any) -> Any:
    """Constant folding and dead-node removal (onnxscript's optimizer), checked by onnx's checker."""
    import onnx
    import onnxscript.optimizer

    with _quiet():
        model = onnxscript.optimizer.optimize(model)
    onnx.checker.check_model(model)
    return model


def write_torchscript(graph: ExportGraph, example: Tensor, path: Path, doc: dict[str, Any]) -> None:
    """``torch.jit.script`` (``graph.script``) or ``torch.jit.trace`` on ``example`` of the graph, saved
    to ``path`` with ``doc`` as the extra file ``foveal.json``."""
    try:
        with _quiet():
            if graph.script:
                module = torch.jit.script(graph.module)
            else:
                module = torch.jit.trace(graph.module, (example,), check_trace=False, strict=False)
            if not graph.script:  # frozen: weights as constants (the runtime adds oneDNN's fusions on load)
                module = torch.jit.freeze(module.eval())
    except Exception as err:  # torch.jit raises many types
        raise export_failed(err, "TorchScript export", graph.module) from err
    torch.jit.save(module, str(path), _extra_files={"foveal.json": dumps(doc)})
