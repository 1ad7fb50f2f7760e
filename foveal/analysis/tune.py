"""``foveal tune``: hyper-parameter search on Optuna over any task's training recipe.

Each trial is a ``foveal.train`` run (or, with ``folds``, a ``foveal.cross_validate``) of the fixed
options plus the sampled ones (``foveal.analysis.search_space``), in ``STUDY/trials/trial_NNN``. The
objective is the best checkpoint's validation ``metric`` (default: the task's monitored one; the
K-fold mean with ``folds``). Every validation epoch is reported to Optuna, whose pruner may stop the
trial (step = epoch, or fold x epochs + epoch with folds, so trials are compared at equal work).

The study lives in ``storage``: by default a journal file ``STUDY/study.journal`` (several processes
may share it), or any SQLAlchemy URL (PostgreSQL for many machines; SQLite waits for its lock). Run
the same command again and the study goes on: finished trials are kept, a trial left RUNNING by a
process that is gone (killed) is marked failed and its parameters are tried again. A trial whose
training fails (out of memory, a diverging loss) is recorded as failed with its reason.

Outputs in the study folder: ``trials.csv``, ``best.yaml`` (``foveal train --config best.yaml``
trains the best configuration again), ``plots/*.png`` (Optuna's matplotlib plots), ``report.html``,
``tune.json`` and, with ``confirm`` K, ``confirm.json``: the top configurations and the default recipe
re-trained over K seeds (mean +- std), and whether the winner beats the default by more than that noise.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.analysis.search_space import Param, apply_params, grid, load_space, suggest
from foveal.atomic import atomic_write_text
from foveal.config import DEFAULT_TASK, TrainConfig, load_yaml
from foveal.errors import ConfigError, DivergedError, FovealError, check_choice, did_you_mean
from foveal.serialize import dumps

log = logging.getLogger("foveal")

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
# metrics where smaller is better (anything else: larger); the task's own monitor follows its mode
SMALLER_IS_BETTER = ("loss", "mae", "mse", "rmse", "mape", "ece", "log_loss", "brier", "nll", "error")
CONSECUTIVE_FAILURES = 5  # a process stops its study after this many failed trials in a row

SPEED_OPTIONS = ("workers", "threads", "progress", "device", "devices", "num_nodes", "strategy")


class TrialFailed(Exception):
    """A trial whose training failed (recorded as failed, the study goes on)."""


@dataclass
class TuneResult:
    """``out``: the study folder; ``best``: {number, value, std, params, run} of the best trial (None
    when no trial completed); ``counts``: trials per state; ``confirm``: the --confirm summary."""

    out: Path
    study: str
    storage: str
    metric: str
    direction: str
    best: dict[str, Any] | None
    counts: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)
    confirm: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out": str(self.out)}


def direction_of(metric: str, task: str) -> str:
    """'maximize' or 'minimize' for ``metric`` of ``task``."""
    from foveal.tasks import get_task

    task_cls = get_task(task)
    if metric == task_cls.monitor:
        return "maximize" if task_cls.mode == "max" else "minimize"
    base = metric.rsplit("/", 1)[-1]
    smaller = any(base == m or base.endswith(f"_{m}") or base.startswith(f"{m}_") for m in SMALLER_IS_BETTER)
    return "minimize" if smaller else "maximize"


def tune(
    task: str | None = None,
    data: str | None = None,
    *,
    space: str | Path | Mapping[str, Any] | None = None,
    trials: int = 20,
    timeout: float | None = None,
    metric: str | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    storage: str | None = None,
    study: str | None = None,
    folds: int | None = None,
    confirm: int = 0,
    project: str | Path | None = None,
    name: str | None = None,
    config: str | Path | None = None,
    stale_after: float = 6 * 3600.0,
    progress: bool = True,
    **options: Any,
) -> TuneResult:
    """Search the hyper-parameters of a training recipe; see the module docstring.

    ``space``: a YAML file or mapping (default: the task's ``tune_space``); ``trials``: finished
    (complete or pruned) trials the study should hold, over all processes; ``timeout``: seconds this
    process searches at most; ``options`` (and ``config``, a YAML file): the fixed train options
    (``epochs``, ``model``, ``imgsz``, ...). ``stale_after``: seconds after which a RUNNING trial of
    another machine that stopped reporting is taken for dead. The study folder is ``PROJECT/NAME``
    (default ``runs/<task>/tune``); the same command resumes it.
    """
    import optuna

    from foveal.engine.rundir import claim_folder, run_parent
    from foveal.engine.setup import check_names, resolve_config

    fixed = {**(load_yaml(config) if config else {}), **{k: v for k, v in options.items() if v is not None}}
    task = task or fixed.pop("task", None) or DEFAULT_TASK
    data = data or fixed.pop("data", None)
    fixed.pop("task", None), fixed.pop("data", None)
    if data is None:
        raise ConfigError("no data given; pass --data PATH (a dataset folder, CSV or split manifest)")
    check_choice("--sampler", sampler, SAMPLERS)
    check_choice("--pruner", pruner, PRUNERS)
    _check_counts(trials, timeout, folds, confirm)
    base = {**fixed, "task": task, "data": str(data)}
    cfg = resolve_config(**base)
    check_names(cfg)
    from foveal.tasks import get_task

    params = load_space(space if space is not None else dict(get_task(task).tune_space), base)
    metric = metric or get_task(task).monitor
    _check_metric(metric, cfg)
    direction = direction_of(metric, task)
    out = run_parent(project, task) / (name or "tune")
    settings = _settings(base, params, metric, direction, folds, sampler)
    if sampler == "cmaes" and all(p.type == "categorical" for p in params):
        raise ConfigError("--sampler cmaes searches float/int ranges, this space has lists only: use tpe")
    created = claim_folder(out, settings, file="study.json", what="a study",
                           kind="a foveal tune study folder", flag="--name", own=STUDY_FILES)  # fmt: skip
    try:
        storage_url, backend = _storage(storage, out)
    except ConfigError:
        if created:  # nothing half-written: the new study folder goes again
            shutil.rmtree(out, ignore_errors=True)
        raise
    study_name = study or out.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        existing = (
            optuna.load_study(study_name=study_name, storage=backend)
            if _has_study(backend, study_name)
            else None
        )
        started = len(existing.trials) if existing else 0
        the_study = optuna.create_study(
            study_name=study_name,
            storage=backend,
            sampler=_sampler(sampler, params, cfg.seed + started),
            pruner=_pruner(pruner, cfg.epochs * (folds or 1)),
            direction=direction,
            load_if_exists=True,
        )
    except FovealError:
        raise
    except Exception as err:  # sqlalchemy / journal errors: the storage is the user's
        raise ConfigError(f"--storage {storage_url}: cannot open the study ({_one_line(err)})") from None
    if the_study.direction.name.lower() != direction:
        raise ConfigError(
            f"study '{study_name}' in {storage_url} {the_study.direction.name.lower()}s; --metric {metric} "
            f"is to {direction}: pass another --study"
        )
    _recover_stale(the_study, backend, stale_after)
    runner = _Runner(the_study, params, base, out, metric, direction, folds, cfg.epochs, progress)
    runner.run(trials, timeout)
    files = write_outputs(the_study, out, params, base, metric, direction)
    summary = None
    if confirm:
        from foveal.analysis.tune_confirm import confirm_top

        summary = confirm_top(the_study, out, base, metric, direction, confirm, folds)
        files["confirm"] = str(out / "confirm.json")
        files.update(write_outputs(the_study, out, params, base, metric, direction, summary))
    best = _best(the_study)
    result = TuneResult(
        out, study_name, storage_url, metric, direction, best, _counts(the_study), files, summary
    )
    atomic_write_text(
        out / "tune.json", dumps({**result.to_dict(), "space": [p.describe() for p in params]}, indent=1)
    )
    return result


def _check_metric(metric: str, cfg: TrainConfig) -> None:
    """Fail before the first trial when the task's metrics lack ``metric``: its metrics of an untrained
    model on a few validation images (the data are read, not augmented or trained on)."""
    from dataclasses import replace

    from foveal.engine.inference import run_model
    from foveal.tasks import get_task

    task_cls = get_task(cfg.task)
    if metric == task_cls.monitor:
        return
    if cfg.model is None:
        cfg = replace(cfg, model=task_cls.default_model(cfg.imgsz))
    splits, meta = task_cls.load_data(cfg)
    task_obj = task_cls(meta)
    samples = (splits.get("val") or splits.get("train") or [])[:16]
    kept, _ = run_model(task_obj, task_obj.build_model(), samples, batch=16, workers=0, device="cpu")
    names = sorted(k for k, v in task_obj.compute_metrics(kept).items() if isinstance(v, (int, float)))
    if metric not in names and metric != "loss":
        raise ConfigError(
            f"--metric {metric}: not a metric of --task {cfg.task}{did_you_mean(metric, names)}; "
            f"choose from {', '.join(names)}"
        )


def _check_counts(trials: Any, timeout: Any, folds: Any, confirm: Any) -> None:
    def whole(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not whole(trials, 1):
        raise ConfigError(f"--trials {trials!r}: a whole number >= 1, e.g. --trials 20")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ConfigError(f"--timeout {timeout!r}: seconds > 0, e.g. --timeout 3600")
    if folds is not None and not whole(folds, 2):
        raise ConfigError(f"--folds {folds!r}: cross-validation needs K >= 2 folds, e.g. --folds 5")
    if not whole(confirm, 0) or confirm == 1:
        raise ConfigError(f"--confirm {confirm!r}: the seeds to re-train over, 2 or more (0: off)")


def _settings(
    base: dict[str, Any], params: list[Param], metric: str, direction: str, folds: int | None, sampler: str
) -> dict[str, Any]:
    data = str(Path(base["data"]).expanduser().resolve())
    fixed = {k: v for k, v in base.items() if k not in SPEED_OPTIONS}
    return json.loads(dumps({**fixed, "data": data, "space": [p.describe() for p in params], "metric": metric,
                             "direction": direction, "folds": folds, "sampler": sampler}))  # fmt: skip


STUDY_FILES = ("study.json", "study.journal", "trials", "plots", "confirm", "trials.csv", "best.yaml",
               "report.html", "tune.json", "confirm.json")  # fmt: skip


def _storage(storage: str | None, out: Path) -> tuple[str, Any]:
    """(what to call it, the Optuna storage) for ``--storage``: None (the study folder's journal), a
    journal file path (``*.journal``, ``*.log``) or a SQLAlchemy URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage is None or "://" not in storage:
        path = out / "study.journal" if storage is None else Path(storage).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab"):
                pass
        except OSError as err:
            raise ConfigError(
                f"--storage {path}: cannot write ({err.strerror}); pass a writable file"
            ) from None
        return str(path), JournalStorage(JournalFileBackend(str(path)))
    engine: dict[str, Any] = {}
    if storage.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 120}}  # parallel writers wait instead of "database is locked"
    try:
        return storage, optuna.storages.RDBStorage(storage, engine_kwargs=engine)
    except Exception as err:
        raise ConfigError(f"--storage {storage}: cannot open ({_one_line(err)})") from None


def _has_study(backend: Any, name: str) -> bool:
    return any(s.study_name == name for s in backend.get_all_studies())


def _sampler(name: str, params: list[Param], seed: int) -> Any:
    """The Optuna sampler; ``seed`` differs between processes joining a study (the trials it already
    holds), so parallel processes do not draw the same points."""
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(grid(params), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        fallback = optuna.samplers.RandomSampler(seed=seed)  # categorical and conditional parameters
        return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=fallback)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # group=True
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5)


def _pruner(name: str, max_resource: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_resource))
    return optuna.pruners.NopPruner()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover_stale(study: Any, storage: Any, stale_after: float) -> None:
    """Mark RUNNING trials whose process is gone as failed and queue their parameters again."""
    from optuna.trial import TrialState

    host, now = socket.gethostname(), time.time()
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        mine = attrs.get("host") == host and isinstance(attrs.get("pid"), int)
        dead = (mine and not _alive(attrs["pid"])) or now - float(attrs.get("heartbeat", now)) > stale_after
        if not dead:
            continue
        storage.set_trial_user_attr(trial._trial_id, "error", "interrupted: its process is gone")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        log.warning(
            "trial %d was interrupted (its process is gone): marked failed, tried again", trial.number
        )
        if trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


class _Runner:
    """Runs trials in this process: the objective, pruning reports and the live table."""

    def __init__(
        self,
        study: Any,
        params: list[Param],
        base: dict[str, Any],
        out: Path,
        metric: str,
        direction: str,
        folds: int | None,
        epochs: int,
        progress: bool,
    ) -> None:
        self.study, self.params, self.base, self.out = study, params, base, out
        self.metric, self.direction, self.folds, self.epochs = metric, direction, folds, epochs
        self.table = TrialTable(metric, direction) if progress else None
        self.failures = 0
        self.missing_metric: list[str] | None = None

    def run(self, trials: int, timeout: float | None) -> None:
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        done = len(self.study.get_trials(deepcopy=False, states=finished))
        if done >= trials:
            log.info(
                "study %s holds %d finished trials already (--trials %d)", self.study.study_name, done, trials
            )
            return
        callbacks = [MaxTrialsCallback(trials, states=finished), self._after_trial]
        level = log.level
        log.setLevel(logging.WARNING)  # the trials' runs log nothing but warnings; the table shows them
        try:
            if self.table is not None:
                self.table.start(self.study)
            self.study.optimize(self._objective, timeout=timeout, callbacks=callbacks, catch=(TrialFailed,),
                                gc_after_trial=True)  # fmt: skip
        finally:
            log.setLevel(level)
            if self.table is not None:
                self.table.stop()
        if self.missing_metric is not None:
            raise ConfigError(
                f"--metric {self.metric}: not a validation metric of --task {self.base['task']}"
                f"{did_you_mean(self.metric, self.missing_metric)}; it logs: {', '.join(self.missing_metric)}"
            )
        if self.failures >= CONSECUTIVE_FAILURES:
            last = self.study.get_trials(deepcopy=False)[-1].user_attrs.get("error", "?")
            raise FovealError(f"{CONSECUTIVE_FAILURES} trials in a row failed; the last: {last}")

    def _after_trial(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        if self.failures >= CONSECUTIVE_FAILURES or self.missing_metric is not None:
            study.stop()
        if self.table is not None:
            self.table.update(study)

    def _objective(self, trial: Any) -> float:
        import optuna

        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("heartbeat", time.time())
        start = time.perf_counter()
        values = suggest(trial, self.params)
        options = apply_params(dict(self.base), values)
        run = self.out / "trials" / f"trial_{trial.number:03d}"
        try:
            value, std = self._train(trial, options, run)
        except optuna.TrialPruned:
            trial.set_user_attr("seconds", time.perf_counter() - start)
            raise
        except Exception as err:
            trial.set_user_attr("error", _one_line(err))
            trial.set_user_attr("seconds", time.perf_counter() - start)
            if isinstance(err, FovealError) and not isinstance(err, DivergedError):
                raise  # the user's mistake: the study stops with one line
            # out of memory, a diverging loss, a crash in a model: this trial failed, the study goes on
            raise TrialFailed(_one_line(err)) from err
        trial.set_user_attr("seconds", time.perf_counter() - start)
        if not math.isfinite(value):
            trial.set_user_attr("error", f"diverged: {self.metric} is {value}")
            raise TrialFailed(f"diverged: {self.metric} is {value}")
        if std is not None:
            trial.set_user_attr("std", std)
        return value

    def _report(self, trial: Any, step: int, metrics: dict[str, float]) -> bool:
        """Report one validation epoch; True stops the trial (pruned, or no such metric)."""
        trial.set_user_attr("heartbeat", time.time())
        if self.metric not in metrics:
            self.missing_metric = sorted(k for k in metrics if k != "loss") + ["loss"]
            return True
        value = metrics[self.metric]
        if math.isfinite(value):
            trial.report(value, step)
        if self.table is not None:
            self.table.epoch(trial.number, step, value)
        return trial.should_prune()

    def _train(self, trial: Any, options: dict[str, Any], run: Path) -> tuple[float, float | None]:
        import optuna

        options = {**options, "progress": False}
        if self.folds:
            from foveal.analysis.cv import Stopped, cross_validate

            def fold_epoch(fold: int, epoch: int, metrics: dict[str, float]) -> bool:
                return self._report(trial, fold * self.epochs + epoch, metrics)

            rest = {k: v for k, v in options.items() if k not in ("data", "task")}
            try:
                cv = cross_validate(options["data"], self.folds, task=options["task"],
                                    project=str(run.parent), name=run.name, epoch_end=fold_epoch,
                                    **rest)  # fmt: skip
            except Stopped:
                self._no_metric()
                raise optuna.TrialPruned() from None
            trial.set_user_attr("run", str(cv.out))
            summary = cv.summary.get(self.metric)
            if summary is None:
                self.missing_metric = sorted(cv.summary)
                self._no_metric()
            return float(summary["mean"]), float(summary["std"])
        from foveal.engine.fit import train

        result = train(**{**options, "project": str(run.parent), "name": run.name},
                       epoch_end=lambda epoch, metrics: self._report(trial, epoch, metrics))  # fmt: skip
        trial.set_user_attr("run", str(result.run_dir))
        self._no_metric()
        if result.stopped_at is not None:
            raise optuna.TrialPruned()
        if self.metric not in result.metrics:
            self.missing_metric = sorted(k for k, v in result.metrics.items() if isinstance(v, float))
            self._no_metric()
        return float(result.metrics[self.metric]), None

    def _no_metric(self) -> None:
        """Fail the trial (the study then stops with the error) when the metric was not logged."""
        if self.missing_metric is not None:
            raise TrialFailed(f"no validation metric {self.metric}")


class TrialTable:
    """The live table of trials (rich): the latest trials with their state and value, and the best."""

    ROWS = 12

    def __init__(self, metric: str, direction: str) -> None:
        self.metric, self.direction = metric, direction
        self.live: Any = None
        self.running: dict[int, tuple[int | None, float | None]] = {}
        self.study: Any = None

    def start(self, study: Any) -> None:
        from rich.live import Live

        self.study = study
        self.live = Live(self._render(), refresh_per_second=2, transient=False)
        self.live.start()

    def epoch(self, number: int, step: int | None, value: float | None) -> None:
        self.running[number] = (step, value)
        self._refresh()

    def update(self, study: Any) -> None:
        self.study = study
        self._refresh()

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _render(self) -> Any:
        from optuna.trial import TrialState
        from rich.table import Table

        trials = self.study.get_trials(deepcopy=False) if self.study is not None else []
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pick = max if self.direction == "maximize" else min
        best = pick(complete, key=lambda t: t.value) if complete else None
        title = f"foveal tune: {len(complete)} complete, best {self.metric} "
        title += f"{best.value:.4f} (trial {best.number})" if best else "n/a"
        table = Table(title=title)
        for column in ("trial", "state", self.metric, "epoch", "seconds", "parameters"):
            table.add_column(column, justify="left" if column in ("state", "parameters") else "right")
        for t in trials[-self.ROWS :]:
            step, live = self.running.get(t.number, (None, None))
            value = t.value if t.value is not None else live
            seconds = t.user_attrs.get("seconds")
            params = ", ".join(f"{k}={_short(v)}" for k, v in t.params.items())
            style = "bold" if best is not None and t.number == best.number else None
            table.add_row(str(t.number), t.state.name.lower(), "" if value is None else f"{value:.4f}",
                          "" if step is None else str(step), "" if seconds is None else f"{seconds:.0f}",
                          params, style=style)  # fmt: skip
        return table


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__


def _counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def _best(study: Any) -> dict[str, Any] | None:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    t = study.best_trial
    return {"number": t.number, "value": t.value, "std": t.user_attrs.get("std"), "params": t.params,
            "run": t.user_attrs.get("run")}  # fmt: skip


def trial_rows(study: Any, params: list[Param]) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, std, seconds, last epoch reported, run, error, params."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        row = {"number": t.number, "state": t.state.name.lower(), "value": t.value,
               "std": t.user_attrs.get("std"), "seconds": t.user_attrs.get("seconds"),
               "last_step": steps[-1] if steps else None, "run": t.user_attrs.get("run"),
               "retry_of": t.user_attrs.get("retry_of"), "error": t.user_attrs.get("error")}  # fmt: skip
        row.update({p.name: t.params.get(p.name) for p in params})
        rows.append(row)
    return rows


def best_config(study: Any, base: dict[str, Any]) -> TrainConfig | None:
    """The fixed options with the best trial's parameters, resolved (what best.yaml holds)."""
    from optuna.trial import TrialState

    from foveal.engine.setup import resolve_config

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    fixed = {k: v for k, v in base.items() if k not in ("project", "name")}
    fixed["data"] = str(Path(fixed["data"]).expanduser().resolve())  # best.yaml trains from anywhere
    if fixed.get("val"):
        fixed["val"] = str(Path(fixed["val"]).expanduser().resolve())
    options = apply_params(fixed, study.best_trial.params)
    return resolve_config(**options, name=f"{study.study_name}-best")


def write_outputs(
    study: Any,
    out: Path,
    params: list[Param],
    base: dict[str, Any],
    metric: str,
    direction: str,
    confirm: dict[str, Any] | None = None,
) -> dict[str, str]:
    """trials.csv, best.yaml, plots/*.png and report.html of the study; returns {name: path}."""
    from foveal.config import save_yaml
    from foveal.report.study_html import write_study_report
    from foveal.report.study_plots import plot_study

    rows = trial_rows(study, params)
    files = {"trials": str(_write_csv(out / "trials.csv", rows))}
    cfg = best_config(study, base)
    if cfg is not None:
        files["best"] = str(save_yaml(cfg, out / "best.yaml"))
    plots = plot_study(study, out / "plots")
    summary = {"study": study.study_name, "metric": metric, "direction": direction, "best": _best(study),
               "counts": _counts(study), "space": [p.describe() for p in params],
               "fixed": {k: v for k, v in base.items() if k not in SPEED_OPTIONS}}  # fmt: skip
    files["report"] = str(write_study_report(out / "report.html", summary, rows, plots, confirm))
    return files


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    names = list(rows[0]) if rows else ["number", "state", "value"]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return atomic_write_text(path, buffer.getvalue())
