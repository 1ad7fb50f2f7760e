"""``foveal tune --confirm K``: re-train the best configurations and the default recipe over K seeds.

A search picks its winner on one noisy number per trial; seeds move that number too (initialisation,
data order, augmentation, and the validation split when it is drawn from the data). The top
configurations and the default recipe (the fixed options alone) are each trained with the same K new
seeds on the same data, so each gets mean +- std and the winner is compared with the default seed by
seed (paired): it beats the default by more than run-to-run noise when the mean paired difference
exceeds two standard errors. Runs go to ``STUDY/confirm/<config>-seed<S>``; finished ones are reused,
so the command resumes. With ``folds`` the trials' values are K-fold means, but confirmation trains on
the single split, as ``foveal train`` would.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

from foveal.analysis.search_space import apply_params
from foveal.atomic import atomic_write_text
from foveal.serialize import dumps

log = logging.getLogger("foveal")

TOP = 3  # configurations confirmed besides the default recipe


def _run_metric(out: Path, label: str, options: dict[str, Any], seed: int, metric: str) -> float:
    from foveal.engine.fit import train

    run = out / f"{label}-seed{seed}"
    done = run / "metrics.json"
    if not done.is_file():
        if run.exists():
            shutil.rmtree(run)  # interrupted: train it again
        train(**{**options, "seed": seed, "project": str(out), "name": run.name, "progress": False})
    return float(json.loads(done.read_text(encoding="utf-8")).get(metric, math.nan))


def confirm_top(
    study: Any,
    out: Path,
    base: dict[str, Any],
    metric: str,
    direction: str,
    seeds: int,
    folds: int | None = None,
) -> dict[str, Any]:
    """Train the study's ``TOP`` best complete trials and the default recipe with ``seeds`` new seeds;
    writes and returns the summary (``out/confirm.json``)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.value, reverse=direction == "maximize")[:TOP]
    fixed = {k: v for k, v in base.items() if k not in ("project", "name")}
    first = int(fixed.get("seed", 0)) + 1
    seed_list = list(range(first, first + seeds))
    configs = [(f"trial_{t.number:03d}", apply_params(fixed, t.params), t.params) for t in ranked]
    configs.append(("default", fixed, {}))
    results = []
    for label, options, values in configs:
        log.warning("confirming %s over seeds %s", label, seed_list)
        scores = [_run_metric(out / "confirm", label, options, s, metric) for s in seed_list]
        results.append({"label": label, "params": values, "values": scores, "mean": statistics.fmean(scores),
                        "std": statistics.stdev(scores) if len(scores) > 1 else 0.0})  # fmt: skip
    summary = {"metric": metric, "direction": direction, "seeds": seed_list, "configs": results,
               "folds_in_search": folds, **_verdict(results, direction, metric)}  # fmt: skip
    atomic_write_text(out / "confirm.json", dumps(summary, indent=1))
    return summary


def _verdict(results: list[dict[str, Any]], direction: str, metric: str) -> dict[str, Any]:
    """The winner (first) against the default (last), paired over seeds."""
    default = results[-1]
    if len(results) < 2:
        return {"verdict": "no trial completed: nothing to compare with the default recipe"}
    winner = results[0]
    sign = 1.0 if direction == "maximize" else -1.0
    diffs = [sign * (a - b) for a, b in zip(winner["values"], default["values"], strict=True)]
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    beats = bool(mean > 2 * se)
    word = "beats" if beats else "does not beat"
    verdict = (
        f"{winner['label']} {word} the default recipe by more than run-to-run noise: {metric} "
        f"{winner['mean']:.4g} vs {default['mean']:.4g}, paired gain {mean:+.4g} +- {se:.2g} (standard "
        f"error over {len(diffs)} seeds; the bar is 2 standard errors)"
    )
    return {"gain": mean, "gain_se": se, "beats_default": beats, "verdict": verdict}
