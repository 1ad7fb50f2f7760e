"""One process vs two DDP processes on this machine: training images/s and the resulting checkpoints'
metrics, at the same effective batch (one process: --batch B; two: --batch B/2 each).

Trains the default classifier on synthetic shapes through the CLI (as a user would) and reads each run's
metrics.json (``train_seconds`` covers the whole run: data, fit, final evaluation).

    .venv/bin/python benchmarks/ddp.py --n 2000 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(data: Path, project: Path, name: str, processes: int, batch: int, epochs: int, imgsz: int) -> dict:
    args = [sys.executable, "-m", "foveal.cli.main", "train", "--data", str(data), "--imgsz", str(imgsz),
            "--epochs", str(epochs), "--batch", str(batch // processes), "--project", str(project),
            "--name", name, "--no-progress", "--json", "--device", "cpu"]  # fmt: skip
    if processes > 1:
        args += ["--devices", str(processes), "--strategy", "ddp"]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="effective batch (split over processes)")
    parser.add_argument("--repeats", type=int, default=2)
    opts = parser.parse_args()
    from foveal.data.synth_writers import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(Path(tmp) / "data", n=opts.n, imgsz=opts.imgsz, seed=0)
        train_images = sum(1 for _ in (data / "train").rglob("*.png"))
        rows: dict[int, list[dict]] = {1: [], 2: []}
        for repeat in range(opts.repeats):
            for processes in (1, 2):
                m = run(data, Path(tmp) / "runs", f"p{processes}-{repeat}", processes, opts.batch,
                        opts.epochs, opts.imgsz)  # fmt: skip
                rows[processes].append(m)
                speed = train_images * m["epochs_run"] / m["train_seconds"]
                print(f"repeat {repeat}, {processes} process(es): {m['train_seconds']:.1f} s, "
                      f"{speed:.0f} train images/s, val accuracy {m['accuracy']:.4f}, "
                      f"test accuracy {m['test']['accuracy']:.4f}", flush=True)  # fmt: skip
    print(f"\n{train_images} training images, {opts.epochs} epochs, effective batch {opts.batch}, "
          f"{opts.imgsz} px, median of {opts.repeats}")  # fmt: skip
    for processes, runs in rows.items():
        seconds = statistics.median(m["train_seconds"] for m in runs)
        val = statistics.median(m["accuracy"] for m in runs)
        test = statistics.median(m["test"]["accuracy"] for m in runs)
        speed = train_images * opts.epochs / seconds
        print(f"{processes} process(es): {seconds:6.1f} s, {speed:6.0f} images/s, "
              f"val accuracy {val:.4f}, test accuracy {test:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
