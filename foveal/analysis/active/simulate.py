"""``foveal.active_simulate``: pool-based active learning replayed on a labelled dataset.

The known labels are the oracle. The dataset's own val split (else a fixed, stratified 20% of it,
seed 0) is the evaluation set of every round and is never labelled; its on-disk test split is left
out; the rest is the pool. Per seed: round 0 trains on ``start`` random images of the pool
(stratified by label when every label has two images), shared by all strategies; each later round
adds ``per_round`` images that the strategy picks with the previous round's best checkpoint and
retrains from scratch, up to ``rounds`` rounds (``start + (rounds - 1) * per_round`` labels).
``random`` is always simulated, as the baseline.

Layout of the ``out`` folder (the loop state; the same command continues after the last finished
round, a round without ``metrics.json`` is trained again from the start)::

    settings.json                          the data and options (other ones: ConfigError; more
                                           strategies or seeds may be added later)
    seed_<s>/start/{split.json,run/,metrics.json}        round 0
    seed_<s>/<strategy>/round_<r>/{split.json,run/,metrics.json}
    curves.json, curves.png                metric vs labelled images per strategy, mean +- std over
                                           the seeds, and the normalised area under each curve

``split.json`` is the round's split manifest (train: its labelled images, val: the evaluation set);
``metrics.json`` the round's labelled count, the metric and all best-checkpoint val metrics.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foveal.analysis.active.strategies import REDUCTIONS, check_strategy
from foveal.atomic import atomic_write_text
from foveal.config import DEFAULT_TASK
from foveal.errors import ConfigError, check_choice
from foveal.serialize import dumps

log = logging.getLogger("foveal")

HELD_OUT = 0.2  # evaluation share of a dataset without a val split
SPEED_OPTIONS = ("workers", "threads", "progress", "device")  # how fast, not what a round learns


@dataclass
class SimulateResult:
    """``out``: the loop folder; ``curves``: strategy -> curve (as in curves.json); ``plot``: the PNG;
    ``trained``: the rounds trained by this call (``seed_0/start``, ``seed_0/entropy/round_1``, ...)."""

    out: Path
    metric: str
    curves: dict[str, dict[str, Any]]
    plot: Path
    trained: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "metric": self.metric,
            "curves": self.curves,
            "plot": str(self.plot),
            "trained": self.trained,
        }


def _positive(flag: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} {value}: must be a whole number >= 1")
    return value


def _resolved(path: str | Path) -> str:
    return str(Path(path).resolve())


def _label(entry: Any) -> str:
    return "|".join(entry.classes) or "(none)"


def _draw(items: Sequence[Any], n: int, seed: int) -> tuple[list[Any], list[Any]]:
    """(n drawn, the rest) of ``items``, stratified by label when every label has two items."""
    from sklearn.model_selection import train_test_split

    if n >= len(items):
        return list(items), []
    labels = [_label(e) for e in items]
    counts = Counter(labels)
    stratify = labels if min(counts.values()) >= 2 and min(n, len(items) - n) >= len(counts) else None
    drawn, rest = train_test_split(list(items), train_size=n, random_state=seed, stratify=stratify)
    return drawn, rest


def pool_and_eval(data: str, kind: str, fmt: str) -> tuple[Any, list[str], list[str]]:
    """(dataset index, pool image paths, evaluation image paths) of ``data``: the val split is the
    evaluation set, else a stratified ``HELD_OUT`` share (seed 0); test images are in neither."""
    from foveal.data.index import index_dataset

    index = index_dataset(data, kind, fmt)
    pool = [e for e in index.entries if e.split in ("train", "all")]
    held = [e for e in index.entries if e.split == "val"]
    if not held:
        held, pool = _draw(pool, max(1, round(len(pool) * HELD_OUT)), 0)
    return index, [_resolved(e.path) for e in pool], [_resolved(e.path) for e in held]


def _settings(data: str, values: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in options.items() if k not in SPEED_OPTIONS}
    return json.loads(dumps({"data": str(Path(data).expanduser().resolve()), **values, "options": options}))


def _labelled(split: Path) -> list[str]:
    """The train (labelled) image paths of a round's manifest."""
    from foveal.data.manifest import read_manifest

    manifest = read_manifest(split)
    base = manifest.source if manifest.source.is_dir() else manifest.source.parent
    return [_resolved(base / p) for p in manifest.splits["train"]]


class Loop:
    """The rounds of one simulation in ``out``: where they live, training one, querying the next."""

    def __init__(
        self,
        out: Path,
        index: Any,
        data: str,
        task: str,
        metric: str,
        pool: list[str],
        eval_paths: list[str],
        options: dict[str, Any],
        scoring: dict[str, Any],
    ) -> None:
        self.out, self.index, self.data, self.task, self.metric = out, index, data, task, metric
        self.pool, self.eval_paths, self.options, self.scoring = pool, eval_paths, options, scoring
        self.trained: list[str] = []

    def folder(self, seed: int, strategy: str, r: int) -> Path:
        return self.out / f"seed_{seed}" / ("start" if r == 0 else f"{strategy}/round_{r}")

    def write_split(self, folder: Path, labelled: list[str]) -> None:
        from foveal.data.manifest import write_manifest

        splits = {"train": labelled, "val": self.eval_paths}
        write_manifest(folder / "split.json", self.index.task, self.data, self.index.fmt, splits)

    def train(self, folder: Path, seed: int) -> dict[str, Any]:
        """The round in ``folder`` trained (again from scratch when unfinished); its metrics.json."""
        from foveal.engine.fit import train

        done = folder / "metrics.json"
        if not done.is_file():
            run = folder / "run"
            if run.exists():
                shutil.rmtree(run)  # a killed round restarts
            labelled = _labelled(folder / "split.json")
            log.info("%s: training on %d labelled images", folder.relative_to(self.out), len(labelled))
            result = train(
                task=self.task,
                data=str(folder / "split.json"),
                **{**self.options, "seed": seed, "project": str(folder), "name": "run"},
            )
            if result.run_dir != run:
                raise ConfigError(f"{result.run_dir}: round run landed outside {run}; remove stray folders")
            if self.metric not in result.metrics:
                known = ", ".join(k for k, v in result.metrics.items() if isinstance(v, float))
                raise ConfigError(
                    f"--metric {self.metric}: not a validation metric of --task {self.task}; "
                    f"choose one of: {known}"
                )
            doc = {
                "labelled": len(labelled),
                "metric": self.metric,
                "value": float(result.metrics[self.metric]),
                "metrics": result.metrics,
            }
            atomic_write_text(done, dumps(doc, indent=1))
            self.trained.append(str(folder.relative_to(self.out)))
        return json.loads(done.read_text(encoding="utf-8"))

    def start(self, seed: int, n: int) -> float:
        """Round 0 of ``seed`` (``n`` random pool images, shared by the strategies): its metric."""
        first = self.folder(seed, "", 0)
        if not (first / "split.json").is_file():
            entries = {_resolved(e.path): e for e in self.index.entries}
            drawn = _draw([entries[p] for p in self.pool], n, seed)[0]
            self.write_split(first, [_resolved(e.path) for e in drawn])
        return self.train(first, seed)["value"]

    def query(self, previous: Path, here: Path, strategy: str, n: int, seed: int) -> None:
        """Write round ``here``'s split: ``previous``'s labelled images and the ``n`` others of the
        pool that ``strategy`` picks with ``previous``'s best checkpoint."""
        from foveal.analysis.active.query import select
        from foveal.engine.checkpoint import load

        labelled = _labelled(previous / "split.json")
        taken = set(labelled)
        rest = [p for p in self.pool if p not in taken]
        loaded = load(previous / "run" / "checkpoints" / "best.ckpt")
        rows = select(loaded, rest, n, strategy, labelled=labelled, seed=seed, **self.scoring)
        self.write_split(here, labelled + [row["path"] for row in rows])

    def curve(self, seed: int, strategy: str, rounds: int, per_round: int, first: float) -> list[float]:
        """The metric of every round of ``strategy`` for ``seed`` (round 0's is ``first``), each
        round queried and trained unless it already was."""
        values, previous = [first], self.folder(seed, strategy, 0)
        for r in range(1, rounds):
            here = self.folder(seed, strategy, r)
            if not (here / "split.json").is_file():
                self.query(previous, here, strategy, per_round, seed * 1000 + r)
            values.append(self.train(here, seed)["value"])
            previous = here
        return values


def _auc(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoid area under y(x) divided by the x span (the mean metric over the budget)."""
    if len(x) < 2:
        return float(y[0])
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def curves_of(values: dict[str, list[list[float]]], labelled: list[int], mode: str) -> dict[str, Any]:
    """strategy -> {labelled, mean, std, seeds (per seed values), auc {mean, std, seeds},
    budget_to_match_random} from (seeds, rounds) ``values`` per strategy; ``budget_to_match_random``
    is the fewest labels at which the strategy's mean reaches random's mean with the full budget
    (``mode`` 'max': at least it, 'min': at most it; None: never)."""
    target = float(np.mean(values["random"], axis=0)[-1])
    curves = {}
    for name, runs in values.items():
        table = np.asarray(runs, dtype=np.float64)
        mean = table.mean(axis=0)
        std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros_like(mean)
        aucs = [_auc(labelled, row) for row in table]
        reached = [
            x for x, m in zip(labelled, mean, strict=True) if (m >= target if mode == "max" else m <= target)
        ]
        curves[name] = {
            "labelled": labelled,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "seeds": table.tolist(),
            "auc": {
                "mean": float(np.mean(aucs)),
                "std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
                "seeds": aucs,
            },
            "budget_to_match_random": reached[0] if reached else None,
        }
    return curves


def active_simulate(
    data: str | None = None,
    *,
    task: str = DEFAULT_TASK,
    start: int = 50,
    per_round: int = 50,
    rounds: int = 5,
    strategies: Sequence[str] = ("entropy",),
    seeds: int = 3,
    seed: int = 0,
    out: str | Path | None = None,
    metric: str | None = None,
    passes: int = 10,
    reduce: str = "mean",
    topk: int = 100,
    project: str | None = None,
    name: str | None = None,
    **options: Any,
) -> SimulateResult:
    """Simulate ``rounds`` rounds of active learning on the labelled ``data`` for each of ``strategies``
    (random added) and each of ``seeds`` seeds (``seed``, ``seed + 1``, ...); see the module docstring.

    ``options`` are training options (``model``, ``epochs``, ...), the same for every round.
    ``metric``: the val metric of the curves (default: the task's monitored one). ``passes``,
    ``reduce``, ``topk``: as in :func:`foveal.active_query`. ``out``: the loop folder (default
    ``PROJECT/NAME``, ``runs/<task>/active-<model>``). Returns the curves (also curves.json, curves.png).
    """
    from foveal.engine.rundir import check_out, claim_folder, run_parent, safe_name
    from foveal.report.active_plots import plot_learning_curves
    from foveal.tasks import get_task

    if data is None:
        raise ConfigError("no data given; pass --data PATH (a labelled dataset folder, CSV or manifest)")
    check_out(out, project, name)
    for flag, value in (
        ("--start", start),
        ("--per-round", per_round),
        ("--rounds", rounds),
        ("--seeds", seeds),
    ):
        _positive(flag, value)
    chosen = list(dict.fromkeys(["random", *(check_strategy(s) for s in strategies)]))
    check_choice("--reduce", reduce, REDUCTIONS)
    task_cls = get_task(task)
    metric = metric or task_cls.monitor
    options = {
        k: v for k, v in options.items() if v is not None and k not in ("data", "val", "task", "resume")
    }
    index, pool, eval_paths = pool_and_eval(data, task_cls.dataset_kind, options.get("format", "auto"))
    budget = start + (rounds - 1) * per_round
    if budget > len(pool):
        raise ConfigError(
            f"--start {start} + {rounds - 1} rounds x --per-round {per_round} = {budget} labels: more than "
            f"the {len(pool)} images of the pool ({len(eval_paths)} are the evaluation set); lower them"
        )
    folder = (
        Path(out)
        if out is not None
        else run_parent(project, task)
        / (name or f"active-{safe_name(str(options.get('model') or 'default'))}")
    )
    values = {
        "task": task,
        "start": start,
        "per_round": per_round,
        "rounds": rounds,
        "seed": seed,
        "metric": metric,
        "passes": passes,
        "reduce": reduce,
        "topk": topk,
    }
    claim_folder(folder, _settings(data, values, options), file="settings.json", what="a simulation",
                 kind="an active-learning simulation", flag="--out")  # fmt: skip
    scoring = {
        "passes": passes,
        "reduce": reduce,
        "topk": topk,
        "batch": options.get("batch", 64),
        "workers": options.get("workers", 0),
        "device": options.get("device", "auto"),
    }
    loop = Loop(folder, index, data, task, metric, pool, eval_paths, options, scoring)
    results: dict[str, list[list[float]]] = {s: [] for s in chosen}
    for s in range(seed, seed + seeds):
        first = loop.start(s, start)
        for strategy in chosen:
            results[strategy].append(loop.curve(s, strategy, rounds, per_round, first))
    labelled_counts = [start + r * per_round for r in range(rounds)]
    curves = curves_of(results, labelled_counts, task_cls.mode)
    doc = {
        "task": task,
        "data": str(data),
        "metric": metric,
        "mode": task_cls.mode,
        "seeds": list(range(seed, seed + seeds)),
        "curves": curves,
    }
    atomic_write_text(folder / "curves.json", dumps(doc, indent=1))
    plot = plot_learning_curves(curves, metric, folder / "curves.png")
    return SimulateResult(folder, metric, curves, plot, loop.trained)
