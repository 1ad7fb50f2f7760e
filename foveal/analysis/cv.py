"""K-fold cross-validation: ``cross_validate(data, folds=K, **train options) -> CVResult``.

Writes, under one folder (``PROJECT/NAME``; default ``runs/<task>/cv-<model>``):

- ``folds/fold_k.json``: stratified, group-aware fold manifests (``foveal data split --folds K``); an
  on-disk test split stays out of the folds and every fold run reports it;
- ``fold_k/``: a complete training run per fold (train = the other folds, val = fold k);
- ``oof/fold_k/``: the best checkpoint's predictions on its own val fold, and ``oof.json`` with every
  image's out-of-fold prediction (``fold`` and ``target`` added; the input to label-error finding);
- ``cv.json``: every numeric validation metric over the folds: mean, std (n - 1), 95% t interval.

Resumable: a fold with ``metrics.json`` is not retrained, a fold with a last checkpoint resumes from it.
The same command on the same folder continues; other data or options in that folder are an error.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write_text
from foveal.config import DEFAULT_TASK
from foveal.errors import ConfigError
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


def _settings(
    data: str, folds: int, group_by: str | None, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    return json.loads(dumps({"data": str(Path(data).expanduser().resolve()), "folds": folds,
                             "group_by": group_by, "seed": seed, "options": options}))  # fmt: skip


def _claim(out: Path, settings: dict[str, Any]) -> None:
    """Create ``out`` or check that it holds a cross-validation of the same data and options."""
    saved = out / "cv_settings.json"
    if saved.is_file():
        before = json.loads(saved.read_text(encoding="utf-8"))
        if before != settings:
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise ConfigError(
                f"{out}: holds a cross-validation with other {', '.join(changed)}; "
                "pass another --name (or delete the folder) to start a new one"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not a cross-validation folder; pass another --name")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(settings, indent=1))


def _train_fold(out: Path, k: int, manifest: Path, task: str, options: dict[str, Any]) -> tuple[Path, bool]:
    """Train fold ``k`` (or resume it); return its run folder and whether it was already finished."""
    from foveal.engine.fit import train

    run = out / f"fold_{k}"
    if (run / "metrics.json").is_file():
        return run, True
    if (run / "checkpoints" / "last.ckpt").is_file():
        log.info("fold %d: resuming from %s", k, run / "checkpoints" / "last.ckpt")
        train(resume=run)
        return run, False
    if run.exists():
        shutil.rmtree(run)  # started but no checkpoint yet: nothing to keep
    log.info("fold %d: training on %s", k, manifest)
    result = train(task=task, data=str(manifest), **{**options, "project": str(out), "name": run.name})
    if result.run_dir != run:
        raise ConfigError(f"{result.run_dir}: fold run landed outside {run}; remove stray folders in {out}")
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


def cross_validate(
    data: str | None = None,
    folds: int = 5,
    *,
    task: str = DEFAULT_TASK,
    group_by: str | None = None,
    seed: int = 0,
    project: str = "runs",
    name: str | None = None,
    **options: Any,
) -> CVResult:
    """Train ``folds`` models on stratified (``group_by``: group-aware) folds of ``data``.

    ``options`` are training options (``model``, ``epochs``, ...), the same for every fold. Returns the
    per-fold runs, the metric summary (also in ``cv.json``) and the out-of-fold predictions file.
    """
    from foveal.data.splitting import split_dataset
    from foveal.engine.rundir import run_parent
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
    _claim(out, settings)
    manifests = [out / "folds" / f"fold_{k}.json" for k in range(folds)]
    if not all(m.is_file() for m in manifests):
        from foveal.data.index import index_dataset

        fmt = options.get("format", "auto")
        has_test = "test" in index_dataset(data, kind, fmt).splits  # kept out of the folds
        split_dataset(data, out / "folds", task=kind, fmt=fmt, folds=folds, group_by=group_by,
                      seed=seed, keep_test=has_test, force=True)  # fmt: skip
    runs, resumed, rows = [], [], []
    per_fold: list[dict[str, float]] = []
    for k, manifest in enumerate(manifests):
        run, finished = _train_fold(out, k, manifest, task, {**options, "seed": seed})
        runs.append(run)
        if finished:
            resumed.append(k)
        per_fold.append(_numeric(json.loads((run / "metrics.json").read_text(encoding="utf-8"))))
        oof_rows = out / "oof" / f"fold_{k}" / "oof_rows.json"
        if not oof_rows.is_file():
            atomic_write_text(oof_rows, dumps(_out_of_fold(run, k, manifest, out), indent=1))
        rows += json.loads(oof_rows.read_text(encoding="utf-8"))
    keys = sorted(set.intersection(*(set(m) for m in per_fold)))
    summary = {key: summarise([m[key] for m in per_fold]) for key in keys}
    oof = atomic_write_text(out / "oof.json", dumps(rows, indent=1))
    doc = {"folds": folds, "task": task, "data": settings["data"], "group_by": group_by, "seed": seed,
           "runs": [str(r) for r in runs], "metrics": summary, "oof": str(oof)}  # fmt: skip
    atomic_write_text(out / "cv.json", dumps(doc, indent=1))
    return CVResult(out, runs, summary, oof, resumed)
