"""foveal tune on synthetic shapes: the tuned configuration vs the default recipe at the same epoch
budget over 3 seeds (``--confirm 3``), trials per hour, and the wall time pruning saves against the
same sampler (same seed) without pruning.

Runs through the Python API (``foveal.tune``) with the task's default search space; every study goes
to a temporary folder. Figures for benchmarks/README.md:

    .venv/bin/python benchmarks/tune.py --task classify --n 600 --epochs 8 --trials 16
    .venv/bin/python benchmarks/tune.py --task segment --n 200 --epochs 5 --trials 8 --model unet
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

FORMAT = {"classify": "imagefolder", "segment": "masks", "detect": "coco", "regress": "regress"}


def study(data: Path, project: Path, name: str, args: argparse.Namespace, pruner: str, confirm: int) -> dict:
    """One search (timed alone), then, with ``confirm``, the same command with --confirm: the study is
    finished, so that call only re-trains the top configurations and the default over the seeds."""
    import foveal

    options = {"imgsz": args.imgsz, "epochs": args.epochs, "batch": args.batch, "workers": 0}
    if args.model:
        options["model"] = args.model
    common = {
        "trials": args.trials,
        "pruner": pruner,
        "project": str(project),
        "name": name,
        "progress": False,
    }
    start = time.perf_counter()
    result = foveal.tune(args.task, str(data), **common, **options)
    search = time.perf_counter() - start
    summary = None
    if confirm:
        summary = foveal.tune(args.task, str(data), confirm=confirm, **common, **options).confirm
    return {"pruner": pruner, "best": result.best["value"], "best_trial": result.best["number"],
            "counts": result.counts, "search_seconds": search,
            "trials_per_hour": 3600 * sum(result.counts.values()) / search, "confirm": summary}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="classify")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    opts = parser.parse_args()
    from foveal.data.synth_writers import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(Path(tmp) / "data", n=opts.n, imgsz=opts.imgsz, seed=0, fmt=FORMAT[opts.task])
        full = study(data, Path(tmp) / "runs", "unpruned", opts, "none", 0)
        pruned = study(data, Path(tmp) / "runs", "pruned", opts, "median", opts.seeds)
    for r in (pruned, full):
        print(f"{r['pruner']:>6}: best {r['best']:.4f} (trial {r['best_trial']}), {r['counts']}, "
              f"search {r['search_seconds']:.0f} s, {r['trials_per_hour']:.0f} trials/h")  # fmt: skip
    print(
        f"pruning saved {1 - pruned['search_seconds'] / full['search_seconds']:.0%} of the search's wall time"
    )
    for c in pruned["confirm"]["configs"]:
        values = ", ".join(f"{v:.4f}" for v in c["values"])
        print(f"  {c['label']:>10}: {c['mean']:.4f} +- {c['std']:.4f}  ({values})")
    print(pruned["confirm"]["verdict"])
    print(json.dumps({"pruned": pruned, "unpruned": full}, default=str))


if __name__ == "__main__":
    main()
