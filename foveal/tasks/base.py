"""The Task contract: what every task (classify, segment, detect, regress, ...) provides.

The engine, CLI, evaluation (cv, TTA, ensembles, calibration, error analysis), explain, data tools and
reports talk to tasks only through this class, so a new task is one new module implementing it and
one entry in ``foveal.tasks.TASKS``. What predicting needs (class names, input size, normalisation,
model name, target statistics, ...) lives in ``meta``, a typed :class:`TaskMeta` dataclass the task
builds complete in :meth:`Task.load_data`, stored in checkpoints as plain values.

Hooks with a default either work for every task or raise "not supported for --task X"; the abstract
ones are what a task must write. A task may own its training step (``manual_optimization``, e.g.
two models and two optimisers for a GAN) and its optimisers (``configure_optimizers``); a task whose
target is an image returns it from ``item``; a task without labels leaves ``Sample`` labels empty.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from PIL import Image
from torch import Tensor, nn

from foveal.config import TrainConfig
from foveal.data.imageio import load_rgb
from foveal.data.sample import Sample
from foveal.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resolve_aug
from foveal.errors import CheckpointError, ConfigError
from foveal.models.graph import ExportGraph, TupleGraph

if TYPE_CHECKING:
    from typing_extensions import Self


@runtime_checkable
class Prediction(Protocol):
    """One image's prediction, as ``Task.postprocess`` returns it: a plain dataclass whose ``to_dict``
    is JSON-serialisable (numpy arrays such as masks aside, which the writers leave out of JSON/CSV)
    and whose ``summary`` is one short line for people."""

    def to_dict(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


@dataclass(frozen=True)
class PredictOption:
    """A post-processing option of ``Task.postprocess`` (a ``foveal predict`` flag ``--<name>``)."""

    name: str
    type: type
    default: Any
    help: str


@dataclass(frozen=True)
class DemoRecipe:
    """How ``foveal demo`` runs a task on synthetic shapes: the ``foveal data synth`` format, images,
    epochs and training options; the glob of test images (under the data folder) it predicts, with
    the ``predict`` options."""

    fmt: str
    n: int
    epochs: int
    test_images: str
    options: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class TaskMeta:
    """The state a task needs to predict, built complete by the task. ``temperature`` is the output
    temperature ``foveal calibrate`` fits (1: uncalibrated); it is applied in one place,
    ``foveal.engine.calibrated``, never inside a task's ``forward``."""

    task: str
    model: str
    imgsz: int
    model_options: dict[str, Any] = field(default_factory=dict)
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    aug: dict[str, Any] | None = None
    temperature: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints, ``weights_only=True`` loading)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "checkpoint") -> Self:
        """The meta of plain ``values`` (a checkpoint's); unknown or missing fields: CheckpointError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise CheckpointError(
                f"{source}: task meta has unknown field(s) {', '.join(unknown)}; it was written by a "
                "newer foveal: upgrade foveal to load it"
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise CheckpointError(
                f"{source}: task meta lacks {', '.join(missing)}; the checkpoint is damaged or not from "
                "foveal: retrain, or pass a best.ckpt written by foveal"
            )
        return cls(**dict(values))

    @classmethod
    def common(cls, config: TrainConfig, **values: Any) -> dict[str, Any]:
        """The fields every task takes from ``config`` (model resolved), plus ``values``."""
        return {
            "task": config.task,
            "model": config.model,
            "imgsz": config.imgsz,
            "model_options": dict(config.model_options),
            "aug": resolved_aug(config),
            **values,
        }


def resolved_aug(config: TrainConfig) -> dict[str, Any]:
    """``config.aug`` as a full option dict; ``auto`` (before ``foveal.engine.aug_probe`` resolved it)
    is the task's ``default_aug``."""
    from foveal.tasks import get_task

    return resolve_aug(get_task(config.task).default_aug if config.aug == "auto" else config.aug)


class Task(ABC):
    """One computer-vision task.

    ``monitor`` names the validation metric that selects the best checkpoint; ``mode`` says whether
    larger ('max') or smaller ('min') is better. ``model_family`` is the model-registry family the
    task's models come from (``foveal models --task``); ``dataset_kind`` the dataset layout the data
    tools read for it (``foveal.data.index``); ``count_unit`` is what label counts count;
    ``default_aug`` the augmentation preset that ``--aug auto`` (the default) starts from, its flips
    kept only where a probe finds they keep the labels (``foveal.engine.aug_probe``).
    ``coco_iou_types`` are the COCO evaluations of its predictions ('bbox', 'segm', 'keypoints'), which
    ``foveal val --predictions RESULTS.json`` computes; empty: results files are not supported.
    ``headline_metrics`` are the metrics side-by-side tables show (``foveal ensemble``; the monitored
    one when empty). ``tune_space`` is the search space ``foveal tune`` uses when none is given (the
    YAML mapping of ``foveal.analysis.search_space``).
    """

    name: ClassVar[str]
    monitor: ClassVar[str]
    mode: ClassVar[str] = "max"
    Meta: ClassVar[type[TaskMeta]] = TaskMeta
    model_family: ClassVar[str]
    count_unit: ClassVar[str] = "images"
    dataset_kind: ClassVar[str]
    predict_options: ClassVar[tuple[PredictOption, ...]] = ()
    manual_optimization: ClassVar[bool] = False
    explain_kind: ClassVar[str | None] = None
    default_aug: ClassVar[str] = "light"
    demo: ClassVar[DemoRecipe | None] = None
    coco_iou_types: ClassVar[tuple[str, ...]] = ()
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    tune_space: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
            "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "optimizer": ["adamw", "sgd"],
            "momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "sgd"}},
            "aug": ["auto", "none", "light", "medium"],
        }
    )

    def __init__(self, meta: TaskMeta | Mapping[str, Any]) -> None:
        self.meta = meta if isinstance(meta, self.Meta) else self.Meta.from_dict(meta)

    def unsupported(self, what: str) -> ConfigError:
        """The error for a hook this task does not implement."""
        return ConfigError(f"{what} is not supported for --task {self.name}")

    @property
    def class_names(self) -> list[str]:
        """Names of the model's outputs: classes (regression: targets); [] when it has none."""
        return list(getattr(self.meta, "class_names", []))

    @property
    def channels_last(self) -> bool:
        """Whether the engine may store the model channels-last (faster convolutions on CPU and GPU)."""
        return True

    @classmethod
    def demo_summary(
        cls, val: dict[str, Any], test: dict[str, Any], rows: list[dict[str, Any]], data: Path
    ) -> list[tuple[str, Any]]:
        """The demo's summary lines from the best checkpoint's ``val`` and ``test`` metrics and the
        prediction ``rows`` of a few test images of ``data``."""
        return [(f"val {cls.monitor}", val[cls.monitor]), (f"test {cls.monitor}", test[cls.monitor])]

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    def default_model(cls, imgsz: int) -> str:
        """The registry's default model of this task's family for images of ``imgsz`` pixels."""
        from foveal.models.registry import default_model

        return default_model(cls.model_family, imgsz)

    @classmethod
    def check_model(cls, name: str) -> None:
        """Fail fast on a model name the registry cannot build for this task."""
        from foveal.models.registry import check_model_name

        check_model_name(name, cls.model_family)

    @classmethod
    @abstractmethod
    def load_data(cls, config: TrainConfig) -> tuple[dict[str, list[Sample]], TaskMeta]:
        """Read the dataset: samples per split and the complete task meta (``config.model`` resolved)."""

    @abstractmethod
    def load_eval_data(self, data: str, split: str, fmt: str = "auto") -> list[Sample]:
        """Read one split of ``data`` against this task's classes (for val/evaluate)."""

    @abstractmethod
    def transforms(self, split: str) -> Callable:
        """The transform for 'train', 'val', 'test' or 'predict'."""

    @abstractmethod
    def item(self, sample: Sample, transform: Callable) -> tuple[Tensor, Any]:
        """Decode ``sample`` and return (image tensor (3,H,W), encoded target)."""

    def predict_input(self, image: Image.Image) -> Tensor:
        """(3, S, S) model input of one decoded image, with the predict transform."""
        return self.transforms("predict")(image)

    def collate(self, batch: Sequence[tuple[Tensor, Any]]) -> tuple[Tensor, Any]:
        """Stack a list of items into a batch."""
        return torch.utils.data.default_collate(batch)

    def batch_transform(self) -> Callable[[Tensor, Any], tuple[Tensor, Any]] | None:
        """An optional batch-level augmentation (e.g. MixUp/CutMix) for training."""
        return None

    def balance_labels(self, samples: Sequence[Sample]) -> list[list[int]]:
        """The class indices each sample carries, for ``--balance oversample|undersample``."""
        raise self.unsupported("--balance oversample|undersample")

    def label_counts(self, samples: Sequence[Sample]) -> dict[str, int]:
        """Labels per class name over ``samples`` (in ``count_unit``), for the run's data summary;
        the default counts image labels and objects without decoding any file."""
        names, counts = self.class_names, {}
        for sample in samples:
            if isinstance(sample.label, list | int):
                found = sample.label if isinstance(sample.label, list) else [sample.label]
            else:
                found = [o["label"] for o in sample.objects or [] if "label" in o]
            for index in found:
                counts[names[index]] = counts.get(names[index], 0) + 1
        return counts

    def target_summary(self, sample: Sample) -> Any:
        """``sample``'s target in user terms for JSON (class name(s), values by name); None if none."""
        return None

    # -- model, loss, training ----------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model for this task's meta."""

    def forward(self, model: nn.Module, images: Tensor, targets: Any = None) -> Any:
        """Run ``model`` on a (B, 3, H, W) batch. Models that compute their losses themselves in
        training mode (torchvision detectors) also get ``targets``; the default ignores them."""
        return model(images)

    def criterion(self) -> nn.Module | None:
        """The loss module (its buffers, e.g. class weights, follow the model to its device: the
        engine owns it as a submodule); None when the model computes its losses itself."""
        return None

    @abstractmethod
    def loss(self, outputs: Any, targets: Any, criterion: nn.Module | None) -> dict[str, Tensor]:
        """Loss terms of ``criterion`` (from :meth:`criterion`); key 'loss' is the total minimised
        (validation may return no 'loss')."""

    def training_step(self, module: Any, batch: tuple[Tensor, Any], batch_idx: int) -> Tensor | None:
        """With ``manual_optimization``: the whole step on the LightningModule ``module`` (its
        ``optimizers()``, ``manual_backward``; e.g. a GAN's two models). Otherwise unused."""
        raise self.unsupported("a task-owned training step")

    def configure_optimizers(self, module: Any) -> Any:
        """Optimisers (and schedules) in Lightning's forms, or None for the engine's (``--optimizer``,
        ``--scheduler`` over ``module.model``'s parameters)."""
        return None

    # -- metrics ------------------------------------------------------------------------------
    @abstractmethod
    def step_outputs(self, outputs: Any, targets: Any) -> dict[str, Tensor]:
        """Per-batch tensors to keep for epoch-level metrics (concatenated along dim 0)."""

    @abstractmethod
    def compute_metrics(self, kept: dict[str, Tensor]) -> dict[str, Any]:
        """Exact metrics over a whole split from the concatenated ``step_outputs``."""

    def plots(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        out_dir: str,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Any] = (),
    ) -> list[str]:
        """Write the task's evaluation plots (PNG) into ``out_dir``; return their paths.

        ``samples`` and their ``predictions`` (from ``postprocess``) allow example grids.
        """
        return []

    def error_analysis(
        self,
        kept: dict[str, Tensor],
        metrics: dict[str, Any],
        samples: Sequence[Sample],
        predictions: Sequence[Any],
        plots_dir: Path,
        n: int = 16,
    ) -> tuple[dict[str, Any], list[str]] | None:
        """The error report of one evaluated split (JSON-able; ``errors.json``) and the paths of its
        plots written into ``plots_dir``, from what evaluation computed; None: the task has none."""
        return None

    # -- explanations (foveal explain) --------------------------------------------------------
    # ``explain_kind`` says which objective ``foveal explain`` builds: "vector" (one differentiable
    # score per output: ``explain_scores``), "map" (per-pixel class logits, ``class_map``) or
    # "objects" (one detection); None: explain is not supported.
    def explain_scores(self, outputs: Any) -> tuple[Tensor, Tensor]:
        """(B, K) differentiable scores of ``forward`` outputs (logits; regression: values) and the
        (B, K) values occlusion measures (probabilities; regression: values), for "vector" tasks."""
        raise self.unsupported("foveal explain")

    def explain_maps(self, outputs: Any) -> tuple[Tensor, Tensor]:
        """(B, K, H, W) differentiable per-class logit maps of ``forward`` outputs and the (B, K, H, W)
        class probabilities whose argmax is the predicted class map, for "map" tasks."""
        raise self.unsupported("foveal explain")

    # -- calibration, TTA and ensembles -------------------------------------------------------
    def temper(self, outputs: Any, temperature: float) -> Any:
        """``forward`` outputs with the output temperature applied (logits / T, or scores on a logit
        scale); ``foveal.engine.calibrated`` calls it, once per model."""
        raise self.unsupported("calibration (a temperature)")

    def calibration_pairs(self, outputs: Any, targets: Any) -> tuple[Tensor, Tensor]:
        """Raw (untempered) logits (N, K) and targets of one batch for fitting a temperature: class
        indices (N,) for softmax calibration, or 0/1 (N, K) when ``calibration_multilabel``."""
        raise self.unsupported("calibration")

    @property
    def calibration_multilabel(self) -> bool:
        """Whether the calibrated probabilities are sigmoids (True) or a softmax (False)."""
        return False

    def unview(self, outputs: Any, view: Any, viewed: tuple[int, int], size: tuple[int, int]) -> Any:
        """Map ``forward`` outputs of a TTA view (``foveal.engine.merge.View``) of the (H, W) = ``size``
        batch, which the model saw at ``viewed`` (h, w), back to the original geometry."""
        raise self.unsupported("--tta")

    def merge(self, outputs: list[Any], weights: list[float], method: str = "mean") -> Any:
        """Merge several ``forward`` outputs of one batch (TTA views, ensemble members) into one."""
        raise self.unsupported("--tta and ensembles")

    @property
    def single_label(self) -> bool:
        """Whether outputs are single-label class probabilities (stacked ensembles, log-loss weights)."""
        return False

    def single_label_probabilities(self, kept: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(N, C) class probabilities and (N,) target indices of kept outputs (``single_label`` tasks)."""
        raise self.unsupported("single-label class probabilities (--method stack)")

    def kept_from_probabilities(self, probs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Kept outputs (as ``step_outputs`` makes them) of (N, C) probabilities, for a stacked ensemble."""
        raise self.unsupported("--method stack")

    # -- active learning (foveal active) ------------------------------------------------------
    # ``active_fixed_units``: whether the units of ``active_probabilities`` are the same in every
    # forward pass of an image (the image, its pixels), which MC-dropout scores need; detected boxes
    # are not.
    active_fixed_units: ClassVar[bool] = True

    def active_probabilities(self, outputs: Any) -> list[Tensor]:
        """Per image of a ``forward`` batch, the (M, K) class probabilities of the M units its
        uncertainty is read from (classify: the image; segment: its pixels; detect: its boxes, K = 2),
        for ``foveal active``'s least-confidence, margin, entropy and BALD scores."""
        raise self.unsupported("foveal active's uncertainty strategies")

    # -- export (foveal export, and the runtimes that run the exported files) --------------------
    def export_graph(self, model: nn.Module) -> ExportGraph:
        """The graph ``foveal export`` writes for ``model`` (eval mode). The default: ``forward`` of a
        model that returns one tensor, output "output"; tasks whose models return more override it."""

        def single(module: nn.Module, images: Tensor) -> tuple[Tensor, ...]:
            outputs = self.forward(module, images)
            if not torch.is_tensor(outputs):
                raise ConfigError(
                    f"{type(module).__name__} returns {type(outputs).__name__}, not a tensor: "
                    f"--task {self.name} has no export graph for it"
                )
            return (outputs,)

        return ExportGraph(TupleGraph(model, single), ("output",))

    def from_graph(self, outputs: list[dict[str, Tensor]], settings: Mapping[str, Any]) -> Any:
        """What ``forward`` returns, from an exported graph's named outputs: one dict per graph call (a
        chunk of the batch, or one image for ``per_image`` graphs), in order; ``settings``: the
        graph's (``ExportGraph.settings``)."""
        return torch.cat([part["output"] for part in outputs])

    def export_agreement(self, reference: Sequence[Any], candidate: Sequence[Any]) -> tuple[str, float]:
        """(name, value in [0, 1]) of how well an export's predictions (``postprocess`` of the same
        images) agree with the eager model's ``reference``; 1 means the same predictions."""
        raise self.unsupported("the export parity check")

    # -- prediction ---------------------------------------------------------------------------
    @abstractmethod
    def postprocess(self, outputs: Any, **options: Any) -> list[Prediction]:
        """Raw model outputs for a batch -> one :class:`Prediction` per image (``options``: the
        task's ``predict_options``)."""

    def finalize(self, prediction: Any, size: tuple[int, int]) -> Any:
        """Map a prediction made at model input size back to the original image of ``size`` (width,
        height) pixels (e.g. resize a mask, scale boxes); images from files and video frames alike."""
        return prediction

    def track_boxes(self, prediction: Any) -> tuple[Any, Any, Any] | None:
        """The boxes a tracker follows in one finalised prediction: (N, 4) xyxy pixels, (N,) scores,
        (N,) class indices as numpy arrays; None when the task's predictions have no boxes (video
        prediction then refuses ``--track``)."""
        return None

    def table_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The predictions.csv row of one JSON prediction row (e.g. one column per target)."""
        return row

    def write_predictions(self, rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
        """Write task-specific files over all predicted images (e.g. a COCO results file); return paths."""
        return []

    def save_prediction(
        self, prediction: Any, sample: Sample, out_dir: Path, stem: str, render: bool
    ) -> dict[str, str]:
        """Write per-image prediction files into ``out_dir`` (an overlay when ``render``); return
        {column: file path} entries for the predictions table."""
        if not render:
            return {}
        from foveal.atomic import atomic_write

        path = out_dir / "overlays" / f"{stem}.png"
        overlay = self.render(load_rgb(sample.path), prediction)
        atomic_write(path, lambda handle: overlay.save(handle, format="PNG"))
        return {"overlay": str(path)}

    @abstractmethod
    def render(self, image: Image.Image, prediction: Any) -> Image.Image:
        """An overlay of ``prediction`` on ``image`` for people to look at."""
