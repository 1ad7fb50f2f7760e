"""Active-learning strategies vs random on synthetic shapes (``foveal active simulate``).

    python benchmarks/active.py [--task classify] [--scene arrows] [--n 1000] [--start 100]
        [--per-round 100] [--rounds 3] [--seeds 3] [--epochs 12] [--strategies entropy bald coreset cluster]

Writes ``foveal data synth`` scenes at 32 px (classify: imagefolder, segment: masks; ``--scene``
arrows or shapes), 70% in the pool and 30% as the evaluation set (the val split; never labelled),
trains the default classifier (smallresnet, dropout 0.2; segment: unet width 8) without augmentation
and runs the simulation (round 0:
``--start`` random images, then ``--per-round`` queried per round, the model retrained from scratch
each round) and prints per strategy the normalised area under the learning curve (mean +- std over
the seeds), the metric at the full budget, and the fewest labels at which the strategy's mean reaches
what random reaches with the full budget. ``--out`` keeps the loop folder (curves.png, curves.json).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import foveal
from foveal.data.synth_writers import write_synthetic

STRATEGIES = ("entropy", "bald", "coreset", "cluster")
SETUP = {
    "classify": {"fmt": "imagefolder", "model": "smallresnet", "model_options": {}},
    "segment": {"fmt": "masks", "model": "unet", "model_options": {"width": 8}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="classify", choices=sorted(SETUP))
    parser.add_argument("--scene", default="arrows", choices=("arrows", "shapes"))
    parser.add_argument("--n", type=int, default=1000, help="synthetic images (70%% pool, 30%% evaluation)")
    parser.add_argument("--start", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--out", type=Path, default=None, help="keep the loop folder here")
    args = parser.parse_args()
    setup = SETUP[args.task]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(
            Path(tmp) / args.scene,
            n=args.n,
            imgsz=32,
            seed=1,
            fmt=setup["fmt"],
            scene=args.scene,
            splits=(0.7, 0.3, 0.0),
        )
        began = time.perf_counter()
        result = foveal.active_simulate(
            str(data),
            task=args.task,
            out=args.out or Path(tmp) / "loop",
            start=args.start,
            per_round=args.per_round,
            rounds=args.rounds,
            strategies=args.strategies,
            seeds=args.seeds,
            model=setup["model"],
            model_options=setup["model_options"],
            epochs=args.epochs,
            imgsz=32,
            batch=16,
            aug="none",
            workers=0,
            progress=False,
        )
        seconds = time.perf_counter() - began
    budget = args.start + (args.rounds - 1) * args.per_round
    print(
        f"{args.task} {args.scene} ({args.n} images), {result.metric}, {args.seeds} seeds, labels "
        f"{args.start}..{budget} in steps of {args.per_round}, {args.epochs} epochs, {seconds:.0f} s"
    )
    print(f"{'strategy':<17} {'AUC':>15} {'at ' + str(budget):>15}  reaches random@{budget} at")
    for name, curve in result.curves.items():
        auc, final = curve["auc"], (curve["mean"][-1], curve["std"][-1])
        match = curve["budget_to_match_random"]
        print(
            f"{name:<17} {auc['mean']:.3f} ± {auc['std']:.3f}   {final[0]:.3f} ± {final[1]:.3f}  "
            f"{match if match is not None else 'not reached'}"
        )


if __name__ == "__main__":
    main()
