"""Exported runtimes vs eager PyTorch for the default model of every task (``foveal benchmark``).

For each task: synthetic data at ``--imgsz`` (default 64), the task's default model trained for
``--epochs`` (so int8's accuracy change is measured on a model that learned something), then
``foveal.benchmark`` at batch 1 and 32: eager, TorchScript, onnxruntime float32 and onnxruntime int8
(dynamic quantisation), median latency over ``--iterations`` calls, the exports' parity (max |diff|
of the raw outputs, the task's agreement) on up to 64 validation images and the monitored metric of
eager vs int8 on the validation split. Figures for benchmarks/README.md:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/export.py --out /tmp/export_bench.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

CASES = {  # task: (synthetic format, images, training options)
    "classify": ("imagefolder", 800, {}),
    "segment": ("masks", 400, {"aug": "none", "lr": 5e-3}),
    "detect": ("coco", 600, {}),
    "instance": ("yolo-seg", 200, {}),
    "pose": ("yolo-pose", 200, {}),
    "regress": ("regress", 600, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(CASES))
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write all reports to this JSON file")
    opts = parser.parse_args()
    import foveal
    from foveal.data.synth_writers import write_synthetic

    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for task in opts.tasks.split(","):
            fmt, n, options = CASES[task]
            data = write_synthetic(root / task, n=n, imgsz=opts.imgsz, seed=0, fmt=fmt)
            start = time.perf_counter()
            fast = {"epochs": opts.epochs, "imgsz": opts.imgsz, "batch": 32, "workers": 0, "progress": False}
            project = str(root / "runs")
            run = foveal.train(task=task, data=str(data), project=project, name=task, **fast, **options)
            trained = time.perf_counter() - start
            report = foveal.benchmark(run.best, batch=(1, 32), data=str(data), iterations=opts.iterations,
                                      threads=opts.threads)  # fmt: skip
            report["train_seconds"] = round(trained, 1)
            reports[task] = report
            print(f"\n{task}: {report['model']} at {opts.imgsz} px, trained {trained:.0f} s; "
                  f"int8 {report['int8_metric']}; parity {report['parity']}")  # fmt: skip
            for row in report["rows"]:
                agree = report["agreement"].get(row["runtime"], {})
                print(f"  {row['runtime']:<17} batch {row['batch']:>2}: {row['median_ms']:9.2f} ms "
                      f"{row['images_per_s']:9.1f} img/s  x{row['speedup']:.2f}  {agree}")  # fmt: skip
    if opts.out:
        Path(opts.out).write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
