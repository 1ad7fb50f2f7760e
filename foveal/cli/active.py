"""``foveal active query|simulate``: pool-based active learning."""

from __future__ import annotations

import argparse
from typing import Any

from foveal.cli.train import S, add_train_options, options

STRATEGY_HELP = (
    "random | least-confidence | margin | entropy | bald | mc-entropy (MC dropout: a model with dropout) "
    "| coreset (k-center greedy on embeddings) | cluster (k-means, the most uncertain image per cluster)"
)


def _scoring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passes", type=int, default=10, help="stochastic passes T of bald and mc-entropy (10)")
    p.add_argument(
        "--reduce",
        default="mean",
        help="an image's score from its pixels' (segment) or boxes' (detect) scores: mean | topk (mean)",
    )
    p.add_argument("--topk", type=int, default=100, help="units averaged by --reduce topk (100)")


def run_query(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.analysis.active.query import active_query

    query = active_query(
        args.weights,
        args.pool,
        n=args.n,
        strategy=args.strategy,
        out=args.out,
        labelled=args.labelled,
        passes=args.passes,
        reduce=args.reduce,
        topk=args.topk,
        seed=args.seed,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        on_bad_image=args.on_bad_image,
    )
    skipped = f", {query.skipped_labelled} already labelled left out" if query.skipped_labelled else ""
    print(f"{args.strategy}: picked {len(query.rows)} of {query.pool_size} pool images{skipped}")
    for row in query.rows[:10]:
        cluster = f"  cluster {row['cluster']}" if "cluster" in row else ""
        print(f"{row['rank']:>5}  {row['score']:.4f}  {row['path']}{cluster}")
    if len(query.rows) > 10:
        print(f"  ... {len(query.rows) - 10} more")
    print(f"wrote {query.out}")
    return query.to_dict()


def run_simulate(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.analysis.active.simulate import active_simulate

    result = active_simulate(**options(args, skip=("active_command",)))
    print(f"active learning, {result.metric} vs labelled images ({result.out}):")
    for name, curve in result.curves.items():
        points = "  ".join(
            f"{x}: {m:.3f}±{s:.3f}" for x, m, s in zip(curve["labelled"], curve["mean"], curve["std"])
        )
        match = curve["budget_to_match_random"]
        print(
            f"  {name:<17} AUC {curve['auc']['mean']:.4f} ± {curve['auc']['std']:.4f}  "
            f"matches random's final at {match if match is not None else '-'}  |  {points}"
        )
    print(f"rounds trained now: {len(result.trained)}; curves: {result.plot}")
    return result.to_dict()


def add_parsers(commands: Any) -> None:
    active = commands.add_parser("active", help="active learning: pick images to label; simulate strategies")
    actions = active.add_subparsers(dest="active_command", required=True, metavar="ACTION")
    p = actions.add_parser("query", help="rank an unlabelled pool of images for labelling (query.csv)")
    p.add_argument("--weights", required=True, help="checkpoint (best.ckpt) or run folder")
    p.add_argument(
        "--pool", required=True, nargs="+", help="unlabelled images: folders (any nesting), files, globs"
    )
    p.add_argument("--n", type=int, default=100, help="images to pick (100)")
    p.add_argument("--strategy", default="entropy", help=f"{STRATEGY_HELP} (entropy)")
    p.add_argument("--out", default="query.csv", help="the ranked CSV: rank,path,score,strategy[,cluster]")
    p.add_argument(
        "--labelled",
        default=None,
        help="labelled dataset or image folder: left out of the pool; core-set centers",
    )
    _scoring_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of random and k-means (0)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="data loader processes")
    p.add_argument("--device", default="auto")
    p.add_argument("--on-bad-image", default="error", help="error|skip unreadable pool images")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_query)
    p = actions.add_parser(
        "simulate",
        help="replay active learning on labelled data: learning curves per strategy vs random",
        argument_default=S,
    )
    add_train_options(p, skip=("strategy",))  # --strategy names the active-learning strategies here
    p.add_argument("--start", type=int, default=50, help="labelled images of round 0, drawn at random (50)")
    p.add_argument("--per-round", type=int, default=50, help="images queried per round (50)")
    p.add_argument("--rounds", type=int, default=5, help="rounds trained, round 0 included (5)")
    p.add_argument(
        "--strategy",
        dest="strategies",
        nargs="+",
        default=["entropy"],
        help=f"strategies compared with random: {STRATEGY_HELP}",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per strategy, from --seed on (3)")
    p.add_argument("--out", default=None, help="loop folder (default runs/<task>/active-<model>); resumable")
    p.add_argument(
        "--metric", default=None, help="val metric of the curves (default: the task's monitored one)"
    )
    _scoring_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_simulate)
