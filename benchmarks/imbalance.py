"""Class imbalance: macro-F1 on balanced val/test of a model trained on a k:1 imbalanced shapes set.

    python benchmarks/imbalance.py [--ratio 10] [--n 2000] [--epochs 6] [--seeds 0 1 2]

Trains the same model with ``--balance none|oversample|undersample|weights`` (and ``--loss focal``) on
``foveal data synth --imbalance k`` (circle keeps every training image, the other classes one in k;
val and test stay balanced) and prints val/test macro-F1 and accuracy per mode, mean over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import foveal
from foveal.data.synth_writers import write_synthetic

MODES = {
    "none": {"balance": "none"},
    "oversample": {"balance": "oversample"},
    "undersample": {"balance": "undersample"},
    "weights": {"balance": "weights"},
    "weights-effective": {"balance": "weights", "balance_weights": "effective", "balance_beta": 0.99},
    "focal": {"loss": "focal"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=int, default=10)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--model", default="smallresnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            data = write_synthetic(
                Path(tmp) / f"data{seed}", n=args.n, imgsz=args.imgsz, seed=seed, imbalance=args.ratio
            )
            for mode in args.modes:
                start = time.perf_counter()
                result = foveal.train(
                    data=str(data),
                    model=args.model,
                    epochs=args.epochs,
                    imgsz=args.imgsz,
                    batch=32,
                    seed=seed,
                    workers=0,
                    progress=False,
                    project=str(Path(tmp) / "runs"),
                    name=mode,
                    **MODES[mode],
                )
                val, test = result.metrics, result.metrics["test"]
                rows[mode].append(
                    (val["f1_macro"], test["f1_macro"], test["accuracy"], time.perf_counter() - start)
                )
                print(
                    f"seed {seed} {mode:18s} val macro-F1 {val['f1_macro']:.3f} "
                    f"test macro-F1 {test['f1_macro']:.3f}",
                    flush=True,
                )
    print(f"\n{args.ratio}:1 imbalance, {args.model}, {args.epochs} epochs, seeds {args.seeds}")
    print("| --balance | val macro-F1 | test macro-F1 | test accuracy | seconds |")
    print("|---|---|---|---|---|")
    for mode, values in rows.items():
        cols = list(zip(*values))
        mean = [statistics.fmean(c) for c in cols]
        sd = statistics.stdev(cols[1]) if len(cols[1]) > 1 else 0.0
        print(f"| {mode} | {mean[0]:.3f} | {mean[1]:.3f} ± {sd:.3f} | {mean[2]:.3f} | {mean[3]:.0f} |")


if __name__ == "__main__":
    main()
