"""K-fold cross-validation: ``cross_validate(data, folds=K, **train options) -> CVResult``.

Writes, under one folder (``PROJECT/NAME``; default ``runs/<task>/cv-<model>``):

- ``folds/fold_k.json``: stratified, group-aware fold manifests (``foveal data split --folds K``); an
  on-disk test split stays out of the folds and every fold run reports it;
- ``fold_k/``: a complete training run per fold (train = the other folds, val = fold k);
- ``oof/fold_k/``: the best checkpoint's predictions on its own val fold, and ``oof.json`` with every
  image's out-of-fold prediction (``fold`` and ``target`` added; the input to label-error finding);
- ``cv.json``: every numeric validation metric over the folds: mean, std (n - 1), 95% t interval.

Resumable: a fold with ``metrics.json`` is not retrained, a fold with a last checkpoint resumes from it.
The same command on the same folder continues; other data or options in that folder are an error
(``threads`` and ``parallel`` excepted: they change how fast, not what).

``parallel=K`` trains K folds at once, each in its own (spawned) process with ``cores // K`` torch
threads (``foveal.engine.threads``); the folds' runs are the same as one after another, and the OOF
rows and ``cv.json`` are assembled in fold order once all have finished. From a script, call it under
``if __name__ == "__main__":`` (the processes are started with ``spawn``, which imports the script).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write_text
from foveal.config import DEFAULT_TASK
from foveal.engine.threads import PROCESSES_ENV, available_cores, users_environment
from foveal.errors import ConfigError, FovealError
from foveal.serialize import dumps

log = logging.getLogger("foveal")


@dataclass
class CVResult:
    """``out``: the cv folder; ``runs``: the fold run folders; ``summary``: metric -> {mean, std, ci95,
    values}; ``oof``: path of oof.json; ``resumed``: folds found finished and not retrained."""

    out: Path
    runs: list[Path]
    summary: dict[str, dict[str, Any]]
    oof: Path
    resumed: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "runs": [str(r) for r in self.runs],
            "summary": self.summary,
            "oof": str(self.oof),
            "resumed": self.resumed,
        }


def summarise(values: list[float]) -> dict[str, Any]:
    """Mean, sample std and the 95% Student-t interval of the mean of ``values``."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "std": 0.0, "ci95": [mean, mean], "values": values}
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.975, len(values) - 1)) * std / math.sqrt(len(values))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "values": values}


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


SPEED_OPTIONS = ("threads",)  # options that change how fast a fold trains, not what it learns


def _settings(
    data: str, folds: int, group_by: str | None, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    options = {k: v for k, v in options.items() if k not in SPEED_OPTIONS}
    return json.loads(dumps({"data": str(Path(data).expanduser().resolve()), "folds": folds,
                             "group_by": group_by, "seed": seed, "options": options}))  # fmt: skip


class Stopped(Exception):
    """The ``epoch_end`` hook of :func:`cross_validate` stopped fold ``fold`` (the later folds are not
    trained)."""

    def __init__(self, fold: int) -> None:
        super().__init__(f"stopped in fold {fold}")
        self.fold = fold


def _train_fold(
    out: Path, k: int, manifest: Path, task: str, options: dict[str, Any], run_options: dict[str, Any]
) -> tuple[Path, bool]:
    """Train fold ``k`` (or resume it); return its run folder and whether it was already finished.
    ``run_options`` also apply to a resumed fold (``progress``, ``epoch_end``)."""
    from foveal.engine.fit import train

    run = out / f"fold_{k}"
    if (run / "metrics.json").is_file():
        return run, True
    if (run / "checkpoints" / "last.ckpt").is_file():
        log.info("fold %d: resuming from %s", k, run / "checkpoints" / "last.ckpt")
        result = train(resume=run, **run_options)
    else:
        if run.exists():
            shutil.rmtree(run)  # started but no checkpoint yet: nothing to keep
        log.info("fold %d: training on %s", k, manifest)
        result = train(task=task, data=str(manifest),
                       **{**options, **run_options, "project": str(out), "name": run.name})  # fmt: skip
        if result.run_dir != run:
            raise ConfigError(
                f"{result.run_dir}: fold run landed outside {run}; remove stray folders in {out}"
            )
    if result.stopped_at is not None:
        raise Stopped(k)
    return run, False


def _targets(loaded: Any, manifest: Path) -> dict[str, Any]:
    """Path -> the target of each val sample of the fold in user terms (``Task.target_summary``)."""
    return {
        str(Path(s.path).resolve()): loaded.task.target_summary(s)
        for s in loaded.task.load_eval_data(str(manifest), "val")
    }


def _out_of_fold(run: Path, k: int, manifest: Path, out: Path) -> list[dict[str, Any]]:
    """The fold's best checkpoint predicting its own val fold; rows with ``fold`` and ``target``."""
    from foveal.data.manifest import read_manifest
    from foveal.engine.checkpoint import load
    from foveal.engine.evaluation import json_rows, predict

    fold = read_manifest(manifest)
    base = fold.source if fold.source.is_dir() else fold.source.parent
    paths = [str(base / p) for p in fold.splits.get("val", [])]
    loaded = load(run / "checkpoints" / "best.ckpt")
    rows = predict(loaded, paths, out=out / "oof" / f"fold_{k}", workers=0)
    targets = _targets(loaded, manifest)
    return [{"fold": k, "target": targets.get(str(Path(r["path"]).resolve())), **r} for r in json_rows(rows)]


def _oof_rows_file(out: Path, k: int) -> Path:
    return out / "oof" / f"fold_{k}" / "oof_rows.json"


def _fold_job(
    out: Path, k: int, manifest: Path, task: str, options: dict[str, Any], run_options: dict[str, Any]
) -> bool:
    """Fold ``k`` from start to end: its run (trained, resumed or found finished) and its out-of-fold
    rows (``oof/fold_k/oof_rows.json``); True when the run was already finished. Folds are independent:
    this runs in the calling process or in a fold process of ``parallel``."""
    run, finished = _train_fold(out, k, manifest, task, options, run_options)
    rows = _oof_rows_file(out, k)
    if not rows.is_file():
        atomic_write_text(rows, dumps(_out_of_fold(run, k, manifest, out), indent=1))
    return finished


class _FoldPrefix(logging.Filter):
    """Prefix the log lines of a fold process with its fold (a process trains one fold at a time)."""

    fold: int | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.fold is not None and not message.startswith("fold "):
            record.msg, record.args = f"fold {self.fold}: {message}", None
        return True


_prefix = _FoldPrefix()


def _start_fold_process(processes: int, environment: dict[str, str | None], level: int) -> None:
    """Initialiser of a fold process, before torch is imported: its share of the cores (``processes``
    side by side, see foveal.engine.threads; the user's OMP_NUM_THREADS, not the parent's own budget),
    idle OpenMP threads that sleep, the parent's log level."""
    os.environ[PROCESSES_ENV] = str(processes)
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    handler.addFilter(_prefix)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _fold_in_process(
    out: Path, k: int, manifest: Path, task: str, options: dict[str, Any], run_options: dict[str, Any]
) -> bool:
    _prefix.fold = k
    return _fold_job(out, k, manifest, task, options, run_options)


def _one_line(err: BaseException) -> str:
    """The error on one line; other than a FovealError, with its type (``RuntimeError: ...``)."""
    text = " ".join(str(err).split())
    if isinstance(err, FovealError):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _parallel_folds(out: Path, jobs: dict[int, tuple[Any, ...]], parallel: int) -> dict[int, bool]:
    """Run ``jobs`` (fold -> fold_job arguments) ``parallel`` at a time in spawned processes; fold ->
    already finished. A failed fold stops the folds not yet started; the running ones finish (and are
    kept), then a FovealError names the failed fold(s)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    finished: dict[int, bool] = {}
    failed: dict[int, BaseException] = {}
    pool = ProcessPoolExecutor(
        max_workers=parallel,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_fold_process,
        initargs=(parallel, users_environment(), log.getEffectiveLevel()),
    )
    try:
        futures = {pool.submit(_fold_in_process, *args): k for k, args in jobs.items()}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                k = futures[future]
                if future.cancelled():
                    continue
                if future.exception() is None:
                    finished[k] = future.result()
                    log.info("fold %d: finished", k)
                else:
                    failed[k] = future.exception()  # type: ignore[assignment]
            if failed:
                for future in pending:
                    future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        first = min(failed)
        others = sorted(set(failed) - {first})
        also = f"; folds {others} failed too" if others else ""
        raise _fold_error(out, first, failed[first], also) from failed[first]
    return finished


def _fold_error(out: Path, k: int, err: BaseException, also: str = "") -> FovealError:
    """The error of fold ``k`` on one line, naming the fold and the finished folds (kept for a rerun):
    of the fold's own FovealError type, else a FovealError (``-v`` shows the chained original)."""
    runs = [m.parent.name for m in out.glob("fold_*/metrics.json")]
    kept = sorted(int(name[5:]) for name in runs if name[5:].isdigit())
    message = (
        f"fold {k}: {_one_line(err)}{also}; finished folds are kept ({kept or 'none'}): "
        "run the same command again to resume"
    )
    if isinstance(err, FovealError):
        with contextlib.suppress(Exception):  # a subclass that takes other arguments: FovealError
            return type(err)(message)
    return FovealError(message)


def clamp_parallel(parallel: int, folds: int) -> int:
    """``parallel`` checked and clamped to the folds and to the cores (with a warning)."""
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"--parallel {parallel}: give the folds to train at once, e.g. --parallel 2")
    cores = available_cores()
    limit = min(folds, cores)
    if parallel > limit:
        log.warning(
            "--parallel %d: clamped to %d (%d folds, %d cores available)", parallel, limit, folds, cores
        )
    return min(parallel, limit)


def cross_validate(
    data: str | None = None,
    folds: int = 5,
    *,
    task: str = DEFAULT_TASK,
    group_by: str | None = None,
    seed: int = 0,
    project: str = "runs",
    name: str | None = None,
    parallel: int = 1,
    epoch_end: Callable[[int, int, dict[str, float]], bool] | None = None,
    **options: Any,
) -> CVResult:
    """Train ``folds`` models on stratified (``group_by``: group-aware) folds of ``data``.

    ``options`` are training options (``model``, ``epochs``, ...), the same for every fold. ``parallel``:
    folds trained at once, each in its own process with ``cores // parallel`` threads (clamped to the
    folds and the cores, with a warning; 1: one after another in this process). Returns the per-fold
    runs, the metric summary (also in ``cv.json``) and the out-of-fold predictions file.
    ``epoch_end(fold, epoch, val_metrics)`` is called after every validation epoch of every fold (folds
    one after another only); True stops that fold and raises :class:`Stopped` (``foveal tune``'s pruning).
    """
    from foveal.data.splitting import split_dataset
    from foveal.engine.rundir import claim_folder, run_parent
    from foveal.tasks import get_task

    if data is None:
        raise ConfigError("no data given; pass --data PATH (a dataset folder, CSV or manifest)")
    kind = get_task(task).dataset_kind
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs K >= 2 folds, e.g. --folds 5")
    options = {k: v for k, v in options.items() if v is not None and k not in ("data", "val", "task")}
    model = options.get("model") or "default"
    out = run_parent(project, task) / (name or f"cv-{str(model).replace(':', '-').replace('/', '-')}")
    settings = _settings(data, folds, group_by, seed, options)
    claim_folder(out, settings, file="cv_settings.json", what="a cross-validation",
                 kind="a cross-validation folder", flag="--name")  # fmt: skip
    manifests = [out / "folds" / f"fold_{k}.json" for k in range(folds)]
    if not all(m.is_file() for m in manifests):
        from foveal.data.index import index_dataset

        fmt = options.get("format", "auto")
        has_test = "test" in index_dataset(data, kind, fmt).splits  # kept out of the folds
        split_dataset(data, out / "folds", task=kind, fmt=fmt, folds=folds, group_by=group_by,
                      seed=seed, keep_test=has_test, force=True)  # fmt: skip
    todo = [k for k in range(folds) if not ((out / f"fold_{k}" / "metrics.json").is_file()
                                             and _oof_rows_file(out, k).is_file())]  # fmt: skip
    parallel = min(clamp_parallel(parallel, folds), max(1, len(todo)))
    if epoch_end is not None and parallel > 1:
        raise ConfigError("an epoch_end hook needs the folds one after another (parallel=1)")
    run_options = {"progress": False} if parallel > 1 else {}  # K progress bars would overwrite each other
    hook = (lambda k: {"epoch_end": partial(epoch_end, k)}) if epoch_end else (lambda k: {})
    jobs = {
        k: (out, k, manifests[k], task, {**options, "seed": seed}, {**run_options, **hook(k)}) for k in todo
    }
    finished = {k: True for k in range(folds) if k not in jobs}
    if parallel > 1:
        log.info("training folds %s, %d at a time", todo, parallel)
        finished |= _parallel_folds(out, jobs, parallel)
    else:
        for k, args in jobs.items():
            try:
                finished[k] = _fold_job(*args)
            except FovealError as err:  # a user error names its fold; others keep their traceback
                raise _fold_error(out, k, err) from err
    runs = [out / f"fold_{k}" for k in range(folds)]
    resumed = [k for k in range(folds) if finished[k]]
    per_fold = [_numeric(json.loads((run / "metrics.json").read_text(encoding="utf-8"))) for run in runs]
    rows: list[dict[str, Any]] = []
    for k in range(folds):
        rows += json.loads(_oof_rows_file(out, k).read_text(encoding="utf-8"))
    keys = sorted(set.intersection(*(set(m) for m in per_fold)))
    summary = {key: summarise([m[key] for m in per_fold]) for key in keys}
    oof = atomic_write_text(out / "oof.json", dumps(rows, indent=1))
    doc = {"folds": folds, "task": task, "data": settings["data"], "group_by": group_by, "seed": seed,
           "runs": [str(r) for r in runs], "metrics": summary, "oof": str(oof)}  # fmt: skip
    atomic_write_text(out / "cv.json", dumps(doc, indent=1))
    return CVResult(out, runs, summary, oof, resumed)
