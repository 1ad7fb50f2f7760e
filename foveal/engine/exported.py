"""Predict with exported files: onnxruntime (CPU) for ``.onnx``, TorchScript for ``.ts``.

:func:`load_exported` returns the same :class:`~foveal.engine.checkpoint.Loaded` as a checkpoint,
whose model is a :class:`GraphModel`: it feeds the file (in chunks of its static batch, or image by
image for per-image graphs) and turns the outputs back into what the eager model returns through the
task's ``from_graph``. Evaluation, prediction, TTA and calibration therefore run the same code for
every format.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from foveal.errors import CheckpointError, ConfigError

log = logging.getLogger("foveal")
Runner = Callable[[Tensor], list[Tensor]]
FORMAT_VERSION = 1  # of the metadata foveal.export writes
EXPORT_SUFFIXES = (".onnx", ".ts", ".torchscript")


class GraphModel(nn.Module):
    """An exported graph behind the eager model's interface: (B, 3, H, W) normalised images -> what
    the task's ``forward`` returns. ``doc``: the file's metadata; ``runner``: input tensor -> outputs."""

    def __init__(self, task: Any, runner: Runner, doc: dict[str, Any], path: Path) -> None:
        super().__init__()
        self.task, self.runner, self.doc, self.path = task, runner, doc, path
        shape = doc["input"]["shape"]
        self.batch = shape[0] if isinstance(shape[0], int) and not doc["per_image"] else None
        self.size = tuple(shape[2:]) if all(isinstance(s, int) for s in shape[2:]) else None
        self.dtype = torch.float16 if doc["input"]["dtype"] == "float16" else torch.float32

    def raw(self, images: Tensor) -> list[dict[str, Tensor]]:
        """The file's named outputs: one dict per call (a chunk of its static batch, or one image)."""
        if self.size is not None and tuple(images.shape[-2:]) != self.size:
            raise ConfigError(
                f"{self.path}: exported for {self.size[0]}x{self.size[1]} inputs, got "
                f"{images.shape[-2]}x{images.shape[-1]} (e.g. from --tta scale); export with --dynamic"
            )
        images = images.to(self.dtype).contiguous()
        step = self.chunk(len(images))
        parts = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            n = len(chunk)
            if n < step:  # a static batch: pad the last chunk with zeros, then drop their outputs
                chunk = torch.cat([chunk, chunk.new_zeros(step - n, *chunk.shape[1:])])
            values = self.runner(chunk)
            if step > 1 and n < step:
                values = [v[:n] for v in values]
            parts.append({name: _float(v) for name, v in zip(self.doc["outputs"], values, strict=True)})
        return parts

    def chunk(self, n: int) -> int:
        """Images per call of the file for a batch of ``n``: 1 (per-image graphs), the static batch,
        or all ``n``."""
        return 1 if self.doc["per_image"] else (self.batch or n)

    def forward(self, images: Tensor) -> Any:
        return self.task.from_graph(self.raw(images), self.doc["settings"])

    def __getstate__(self) -> dict[str, Any]:
        raise ConfigError(
            f"{self.path}: an exported model runs in one process (its runtime session does not move "
            "to others); drop --devices, or pass the .ckpt for several processes"
        )


def _float(value: Tensor) -> Tensor:
    return value.float() if value.is_floating_point() else value


def onnx_runner(path: Path, threads: int | None) -> tuple[Runner, dict[str, Any]]:
    """An onnxruntime CPU session of ``path`` (``threads`` intra-op threads, default torch's count)
    and the file's metadata document."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for damaged or foreign files
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable ONNX file ({first}); export it again") from err
    doc = parse_metadata(session.get_modelmeta().custom_metadata_map.get("foveal"), path)
    name = session.get_inputs()[0].name

    def run(images: Tensor) -> list[Tensor]:
        return [torch.from_numpy(v) for v in session.run(None, {name: images.cpu().numpy()})]

    return run, doc


def torchscript_runner(path: Path, threads: int | None) -> tuple[Runner, dict[str, Any]]:
    """A TorchScript module of ``path`` (``threads``: torch's intra-op threads, when given) and the
    file's metadata document."""
    extra = {"foveal.json": ""}
    try:
        with warnings.catch_warnings():  # torch.jit's deprecation notice is not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as err:  # torch.jit raises RuntimeError and others for damaged files
        raise CheckpointError(
            f"{path}: not a readable TorchScript file ({type(err).__name__}); export it again"
        ) from err
    doc = parse_metadata(extra["foveal.json"].decode() if isinstance(extra["foveal.json"], bytes)
                         else extra["foveal.json"], path)  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    try:  # oneDNN conv fusions (not serialisable, so applied here): 2-3x faster than the frozen trace
        module = torch.jit.optimize_for_inference(module)
    except Exception as err:  # scripted models with control flow it does not handle keep their graph
        log.debug("%s: optimize_for_inference left out: %s", path, err)

    def run(images: Tensor) -> list[Tensor]:
        with torch.inference_mode():
            found = module(images)
        return [found] if torch.is_tensor(found) else list(found)

    return run, doc


def open_exported(
    path: str | Path, task: str | None = None, threads: int | None = None
) -> tuple[Any, GraphModel, dict[str, Any]]:
    """An exported file (``.onnx``: onnxruntime; ``.ts``/``.torchscript``: TorchScript) as its task,
    a :class:`GraphModel` and the checkpoint config it recorded; ``task`` (if given) must match."""
    from foveal.tasks import get_task, task_names

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found; pass a file written by `foveal export`")
    runner, doc = (onnx_runner if path.suffix == ".onnx" else torchscript_runner)(path, threads)
    found = doc.get("task")
    if found not in task_names():
        raise CheckpointError(f"{path}: exported model of unknown task '{found}'; it needs a newer foveal")
    if task is not None and task != found:
        raise CheckpointError(
            f"{path}: this is a '{found}' model, not '{task}'; use --task {found} or a {task} model"
        )
    task_obj = get_task(found)(get_task(found).Meta.from_dict(doc["meta"], source=str(path)))
    return task_obj, GraphModel(task_obj, runner, doc, path), doc.get("config", {})


def parse_metadata(text: str | None, path: Path) -> dict[str, Any]:
    """The metadata document of ``path``'s ``foveal`` entry; one-line errors when absent or foreign."""
    if not text:
        raise CheckpointError(
            f"{path}: no foveal metadata in this file; export it with `foveal export --weights CKPT`, "
            "or run it with its own runtime (foveal needs the task, classes and input size it records)"
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path}: damaged foveal metadata ({err.msg}); export the checkpoint again"
        ) from err
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: foveal export metadata version {version!r} is not readable by this foveal "
            f"(reads up to {FORMAT_VERSION}); upgrade foveal or export again"
        )
    return doc
