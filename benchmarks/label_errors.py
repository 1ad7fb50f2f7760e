"""Label errors: how many planted label flips ``foveal data label-errors`` finds, and what removing them buys.

    OMP_NUM_THREADS=1 python benchmarks/label_errors.py [--scene arrows|shapes] [--n 1200] [--epochs 15]

Synthetic data (``foveal data synth``, imagefolder, 4 classes; default the arrows scene, which a 32 px
model learns in a CPU minute); label noise planted in the train and val splits by moving image files
into another class folder: ``uniform`` moves that fraction of all images to a random other class,
``A->B`` moves that fraction of the first class's images into the second (class-conditional: left->right,
or circle->square for shapes). The test split is left clean. For each setting: the precision and recall
of the flagged set, the precision of the worst flagged images at the planted count, and the test
accuracy of a model trained on the noisy labels vs one trained on ``clean.json`` (the noisy data
without the flagged images), same recipe.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import foveal
from foveal.data.synth_writers import write_synthetic

RATES = (0.05, 0.2)


def plant(root: Path, kind: str, rate: float, seed: int) -> set[str]:
    """Move files of the train and val splits to another class folder; the resolved new paths."""
    rng = np.random.default_rng(seed)
    images = sorted(p for split in ("train", "val") for p in (root / split).rglob("*.png"))
    classes = sorted(p.name for p in (root / "train").iterdir())
    if kind != "uniform":
        source, target = kind.split("->")
        pool = [p for p in images if p.parent.name == source]
        chosen = [pool[i] for i in rng.choice(len(pool), size=round(rate * len(pool)), replace=False)]
        targets = [target] * len(chosen)
    else:
        chosen = [images[i] for i in rng.choice(len(images), size=round(rate * len(images)), replace=False)]
        targets = [str(rng.choice([c for c in classes if c != p.parent.name])) for p in chosen]
    moved = set()
    for path, target in zip(chosen, targets):
        new = path.parent.parent / target / f"flipped_{path.name}"
        shutil.move(str(path), str(new))
        moved.add(str(new.resolve()))
    return moved


def run(kind: str, rate: float, seed: int, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    recipe = {"model": args.model, "epochs": args.epochs, "imgsz": args.imgsz, "batch": 32, "aug": args.aug,
              "workers": 0, "progress": False, "seed": seed}  # fmt: skip
    name = f"{kind.replace('->', '-')}-{rate:g}-seed{seed}"
    data = write_synthetic(
        tmp / name, n=args.n, imgsz=args.imgsz, seed=seed, splits=(0.6, 0.1, 0.3), scene=args.scene
    )
    planted = plant(data, kind, rate, seed)
    start = time.perf_counter()
    found = foveal.find_label_errors(
        str(data), folds=args.folds, project=str(tmp / "runs"), name=name, **recipe
    )
    seconds = time.perf_counter() - start
    flagged = [str(Path(r["path"]).resolve()) for r in found.issues]
    top = set(flagged[: len(planted)])
    accuracy = {}
    for label, source in (("noisy", str(data)), ("clean", str(found.clean))):
        result = foveal.train(data=source, project=str(tmp / "runs"), name=f"{name}-{label}", **recipe)
        accuracy[label] = json.loads((result.run_dir / "metrics.json").read_text())["test"]["accuracy"]
    return {
        "planted": len(planted),
        "flagged": len(flagged),
        "precision": len(set(flagged) & planted) / max(1, len(flagged)),
        "recall": len(set(flagged) & planted) / max(1, len(planted)),
        "precision_at_planted": len(top & planted) / max(1, len(planted)),
        "test_noisy": accuracy["noisy"],
        "test_clean": accuracy["clean"],
        "seconds_label_errors": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="arrows", choices=("arrows", "shapes"))
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--aug", default="none", help="none: a flip would change an arrow's class")
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--model", default="smallresnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    print("| noise | rate | seed | planted | flagged | precision | recall | precision@planted "
          "| test acc noisy | test acc clean | label-errors s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        pair = "left->right" if args.scene == "arrows" else "circle->square"
        settings = [(k, r, s) for k in ("uniform", pair) for r in RATES for s in args.seeds]
        for kind, rate, seed in settings:
            r = run(kind, rate, seed, Path(tmp), args)
            print(f"| {kind} | {rate:.0%} | {seed} | {r['planted']} | {r['flagged']} | "
                  f"{r['precision']:.2f} | {r['recall']:.2f} | {r['precision_at_planted']:.2f} | "
                  f"{r['test_noisy']:.3f} | {r['test_clean']:.3f} | {r['seconds_label_errors']:.0f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
