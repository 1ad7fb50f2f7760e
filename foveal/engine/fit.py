"""``foveal.train``: one training run from config to checkpoints, metrics, plots and report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foveal.atomic import atomic_write_text
from foveal.config import TrainConfig, save_yaml
from foveal.data.sample import Sample
from foveal.engine import distributed
from foveal.engine.rundir import new_run_dir, run_parent, safe_name
from foveal.engine.setup import build_module, prepare_run, resolve_config
from foveal.errors import CheckpointError, ConfigError
from foveal.serialize import dumps
from foveal.tasks.base import Task

if TYPE_CHECKING:
    from torch.utils.data import Sampler

    from foveal.engine.callbacks import History

log = logging.getLogger("foveal")


@dataclass
class TrainResult:
    """Where a run went and how it did: ``metrics`` are the best checkpoint's validation metrics;
    ``stopped_at``: the epoch after which ``epoch_end`` stopped it, else None."""

    run_dir: Path
    best: Path
    last: Path
    metrics: dict[str, Any]
    stopped_at: int | None = None


def _resume_target(resume: str | Path) -> tuple[Path, Path]:
    """(run folder, last checkpoint) for ``--resume RUN|CKPT``."""
    path = Path(resume).expanduser()
    ckpt = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    if not ckpt.is_file():
        raise CheckpointError(
            f"{resume}: no last checkpoint to resume (looked for {ckpt}); "
            "pass a run folder or its checkpoints/last.ckpt"
        )
    return ckpt.parent.parent, ckpt


def train(
    task: str | None = None,
    data: str | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    epoch_end: Callable[[int, dict[str, float]], bool] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a model; returns the run folder, checkpoints and best validation metrics.

    Parameters are the fields of ``TrainConfig`` (``epochs``, ``batch``, ``model``, ``lr``, ...);
    ``config`` is a YAML file of the same fields; ``resume`` continues a run from its last checkpoint.
    ``epoch_end(epoch, val_metrics)`` is called after each validation epoch (in the first process of a
    multi-process run); True stops the run there in every process (``foveal tune``'s pruning), and the
    run is not evaluated (``metrics`` empty, no report).
    """
    start = time.perf_counter()
    ckpt_path = None
    inherited = distributed.inherited_run()
    if inherited is not None:  # a process Lightning launched for the first one: that run, its config
        run_dir, ckpt_path = inherited
        cfg = resolve_config(run_dir / "config.yaml")
    elif resume is not None:
        run_dir, ckpt_path = _resume_target(resume)
        cfg = resolve_config(run_dir / "config.yaml", **options)
    else:
        cfg = resolve_config(config, task=task, data=data, **options)
    if cfg.data is None:
        raise ConfigError("no data given; pass --data PATH (a dataset folder or CSV), or run 'foveal demo'")
    distributed.check_distributed(cfg)  # before the data are read and the augmentation is probed
    task_obj, splits, cfg = prepare_run(cfg)
    import lightning as L

    from foveal.engine.callbacks import EpochHook, History
    from foveal.engine.data_module import TaskData
    from foveal.engine.trainer import build_trainer

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if resume is None and inherited is None:
        run_dir = _new_run(cfg)
    if distributed.processes(cfg) > 1:
        distributed.share_run(run_dir, ckpt_path)
        distributed.report_dead_processes(distributed.resume_hint(run_dir))
    history = History(run_dir / "history.json")
    module = build_module(task_obj, cfg)
    data = TaskData(task_obj, splits, cfg, partial(_sampler, task_obj, splits, cfg))  # picklable: ddp_spawn
    # every process of a multi-process run has the hook: it broadcasts the first one's decision
    hooks = [EpochHook(epoch_end)] if epoch_end is not None or distributed.processes(cfg) > 1 else []
    trainer = build_trainer(cfg, task_obj, run_dir, history, hooks, use_distributed_sampler=False)
    if cfg.lr == "auto":  # the first process only: the others read the suggestion from config.yaml
        from foveal.engine.lr_find import find_lr

        found = find_lr(module, data.train_dataloader(), run_dir / "plots" / "lr_find.png", cfg)
        cfg = replace(cfg, lr=found["suggestion"])
        module.lr = cfg.lr
    if inherited is None:
        save_yaml(cfg, run_dir / "config.yaml")
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except Exception as err:
        if distributed.processes(cfg) == 1 or not distributed.peer_failure(err):
            raise
        raise distributed.stopped_error(err, distributed.resume_hint(run_dir)) from err
    finally:
        if distributed.processes(cfg) > 1:
            distributed.end_process_group()  # a later run in this process (cv's next fold) makes its own
    best, last = run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"
    if not best.is_file():
        best = last
    stopped_at = hooks[0].stopped_at if hooks else None
    # the first process evaluates, plots and reports, once; a run its epoch_end stopped (a pruned
    # trial) keeps its checkpoints and history but is not evaluated
    if not trainer.is_global_zero or stopped_at is not None:
        return TrainResult(run_dir, best, last, {}, stopped_at)
    metrics = _finish(run_dir, best, splits, cfg, history, time.perf_counter() - start)
    return TrainResult(run_dir, best, last, metrics, stopped_at)


def _new_run(cfg: TrainConfig) -> Path:
    """A new run folder; ``PROJECT/NAME`` itself when torchrun/SLURM started every process (they cannot
    agree on a ``-2`` suffix before the process group exists), refused if it already holds a run."""
    parent, name = run_parent(cfg.project, cfg.task), cfg.name or safe_name(cfg.model)
    if not distributed.launched_externally():
        return new_run_dir(parent, name)
    run_dir = parent / name
    if distributed.global_rank() == 0 and (run_dir / "checkpoints").exists():
        raise ConfigError(f"{run_dir}: holds a run already; pass a new --name (or --resume {run_dir})")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _sampler(task: Task, splits: dict[str, list[Sample]], cfg: TrainConfig) -> Sampler[int] | None:
    """The class-balancing training sampler of ``--balance oversample|undersample`` (else None)."""
    if cfg.balance not in ("oversample", "undersample"):
        return None
    from foveal.data.balance import make_sampler

    labels = task.balance_labels(splits["train"])
    sampler = make_sampler(labels, len(task.class_names), cfg.balance, cfg.seed)
    log.info("--balance %s: %d draws per epoch of %d images", cfg.balance, len(sampler), len(labels))
    return sampler


def _finish(
    run_dir: Path,
    best: Path,
    splits: dict[str, list[Sample]],
    cfg: TrainConfig,
    history: History,
    seconds: float,
) -> dict[str, Any]:
    """Evaluate the best checkpoint on val (and test), write metrics.json, plots and report.html."""
    from foveal.engine.checkpoint import load
    from foveal.engine.inference import run_model
    from foveal.report.html import write_report
    from foveal.report.plots import plot_history

    loaded = load(best)
    results: dict[str, Any] = {}
    plot_history(history.rows, run_dir / "plots")
    for split in ("val", "test"):
        if splits.get(split):
            kept, predictions = run_model(
                loaded.task, loaded.model, splits[split], cfg.batch, cfg.workers, cfg.device
            )
            results[split] = loaded.task.compute_metrics(kept)
            if split == "val":
                loaded.task.plots(kept, results[split], str(run_dir / "plots"), splits[split], predictions)
                # error analysis: errors.json, plots/top_losses.png + reliability.png (detect: false_*.png)
                from foveal.engine.error_report import write_errors

                write_errors(
                    loaded.task, kept, results[split], splits[split], predictions, run_dir, run_dir / "plots"
                )
    metrics = {
        **results.get("val", {}),
        "split": "val",
        "test": results.get("test"),
        "epochs_run": len(history.rows),
        "train_seconds": round(seconds, 2),
        "best_checkpoint": str(best),
        "history": history.rows,
    }
    atomic_write_text(run_dir / "metrics.json", dumps(metrics, indent=2))
    atomic_write_text(run_dir / "data.json", dumps(_data_summary(loaded.task, splits), indent=1))
    write_report(run_dir)
    return metrics


def _data_summary(task: Task, splits: dict[str, list[Sample]]) -> dict[str, Any]:
    """Images per split and labels per class (``task.label_counts``, counted in ``task.count_unit``)."""
    summary: dict[str, Any] = {"splits": {}}
    for split, samples in splits.items():
        summary["splits"][split] = {"images": len(samples), "classes": task.label_counts(samples)}
    summary["count_unit"] = task.count_unit
    return summary
