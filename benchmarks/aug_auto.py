"""``--aug auto`` vs ``light`` vs ``none`` on real digits and on the synthetic shapes and arrows.

    python benchmarks/aug_auto.py [--epochs 15] [--seeds 0 1 2] [--sets digits shapes arrows]

digits: scikit-learn's bundled ``load_digits`` (1797 real 8x8 grayscale handwritten digits, no
download), upscaled to 32 px PNGs in an imagefolder with a seeded, stratified 80/20 train/val split;
flips change most digits' identity. shapes / arrows: ``foveal data synth`` (``--scene arrows``) at 32 px.
Trains the default classify model for a fixed epoch budget per mode and seed and prints the best
checkpoint's validation accuracy (mean +- std over seeds), the decision of ``auto`` and its probe's
seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

import foveal
from foveal.data.synth_writers import write_synthetic

MODES = ("light", "none", "auto")


def write_digits(out: Path, imgsz: int = 32, seed: int = 0) -> Path:
    """``load_digits`` as ``out/{train,val}/<digit>/<i>.png`` RGB images of ``imgsz`` px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        index = rng.permutation(np.flatnonzero(digits.target == label))
        cut = round(0.8 * len(index))
        for split, part in (("train", index[:cut]), ("val", index[cut:])):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                gray = Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), mode="L")
                gray.resize((imgsz, imgsz), Image.BILINEAR).convert("RGB").save(folder / f"{i:04d}.png")
    return out


def make_set(name: str, root: Path) -> Path:
    if name == "digits":
        return write_digits(root / "digits")
    return write_synthetic(root / name, n=1000, imgsz=32, seed=1, scene=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", default=["digits", "shapes", "arrows"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.sets:
            data = make_set(name, root)
            for mode in MODES:
                accuracies, decisions, seconds = [], set(), []
                for seed in args.seeds:
                    result = foveal.train(
                        data=str(data),
                        imgsz=32,
                        epochs=args.epochs,
                        aug=mode,
                        seed=seed,
                        project=str(root / "runs"),
                        name=f"{name}-{mode}-{seed}",
                        progress=False,
                    )
                    accuracies.append(result.metrics["accuracy"])
                    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
                    evidence = config.get("aug_evidence") or {}
                    decisions.add(str(config["aug"]))
                    seconds.append((evidence.get("probe") or {}).get("seconds", 0.0))
                std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
                probe = f"  probe {statistics.mean(seconds):.1f} s" if mode == "auto" else ""
                each = ", ".join(f"{a:.4f}" for a in accuracies)
                print(
                    f"{name:7s} {mode:6s} val accuracy {statistics.mean(accuracies):.4f} +- {std:.4f} "
                    f"({each})  aug {' | '.join(sorted(decisions))}{probe}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
