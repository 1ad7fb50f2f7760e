"""Threads per process: epoch time of one training alone and of two concurrent trainings on the same cores.

Cases (each training a separate ``foveal.train`` process on the synthetic shapes, same data and seed):

- ``alone``: one training, default budget (all cores, ``cores - 1`` loader workers up to 4);
- ``alone-passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (what that costs a lone run);
- ``alone-half``: one training with the budget of one of two (``FOVEAL_PROCESSES=2``), alone;
- ``two-all``: two at once, each with ``--threads`` = cores and the loader workers of a lone run (what
  two concurrent trainings did before the budget);
- ``two-all-passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep);
- ``two-budget``: two at once with the budget: ``FOVEAL_PROCESSES=2`` (what ``foveal cv --parallel 2``
  sets for its fold processes), so each takes cores // 2 threads and its share of the loader workers.

An epoch's time is from the start of its training to the end of its validation (a Lightning callback
added to the run's Trainer). Prints, per case, the median epoch time over the epochs of every process
and repeat (of a pair, the epochs that ran while the other process trained too), every epoch's time,
the threads and loader workers each process had, and the case's wall time (start-up, training, final
evaluation).

    .venv/bin/python benchmarks/threads.py --n 1000 --imgsz 32 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("alone", "alone-passive", "alone-half", "two-all", "two-all-passive", "two-budget")


def worker(data: str, out: str, options: dict) -> None:
    """One training (this process), its epoch times written to ``out``."""
    import lightning as L
    import torch

    import foveal.engine.trainer as trainer_module
    from foveal.engine.fit import train
    from foveal.engine.loaders import default_workers

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.start, self.spans = 0.0, []

        def on_train_epoch_start(self, *args) -> None:
            self.start = time.time()  # wall clock: comparable between the processes of a case

        def on_train_epoch_end(self, *args) -> None:  # Lightning 2: after the epoch's validation
            self.spans.append((self.start, time.time()))

    timer = EpochTimer()
    build = trainer_module.build_trainer

    def build_with_timer(*args, **kwargs):
        built = build(*args, **kwargs)
        built.callbacks.append(timer)
        return built

    trainer_module.build_trainer = build_with_timer  # fit.train imports it at call time
    start = time.perf_counter()
    train(data=data, **options)
    Path(out).write_text(
        json.dumps(
            {
                "epochs": [end - start for start, end in timer.spans],
                "spans": timer.spans,
                "wall": time.perf_counter() - start,
                "threads": torch.get_num_threads(),
                "workers": default_workers() if options.get("workers") is None else options["workers"],
            }
        )
    )


def run_case(case: str, data: Path, root: Path, options: dict, cores: int) -> list[dict]:
    """Start the case's processes together; their results."""
    count = 1 if case.startswith("alone") else 2
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.pop("OMP_WAIT_POLICY", None)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    case_options = dict(options)
    if case.startswith("two-all"):
        case_options["threads"] = cores
        if case_options.get("workers") is None:  # the loader workers a lone run takes
            from foveal.engine.loaders import default_workers

            case_options["workers"] = default_workers(1)
    if case.endswith("-passive"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if case in ("two-budget", "alone-half"):
        env["FOVEAL_PROCESSES"] = "2"
    procs, outs = [], []
    for i in range(count):
        out = root / f"{case}-{i}.json"
        opts = {**case_options, "project": str(root / case), "name": f"run{i}"}
        command = [sys.executable, __file__, "--worker", str(data), str(out), json.dumps(opts)]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
        outs.append(out)
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{case}: a training failed (exit {proc.returncode})")
    return [json.loads(out.read_text()) for out in outs]


def counted(rows: list[dict], repeats: int) -> list[float]:
    """The epoch times that count: every epoch of a lone run; of a pair, those that ran (90% of their
    time or more) while the other process was training too: from the later first-epoch start to the
    earlier last-epoch end."""
    per = len(rows) // repeats
    times = []
    for group in (rows[i : i + per] for i in range(0, len(rows), per)):
        begin = max(r["spans"][0][0] for r in group)
        end = min(r["spans"][-1][1] for r in group)
        for r in group:
            times += [
                b - a for a, b in r["spans"] if per == 1 or min(b, end) - max(a, begin) >= 0.9 * (b - a)
            ]
    return times or [s for r in rows for s in r["epochs"]]


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="synthetic images (1000)")
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="smallresnet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="times each case is run")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated of {', '.join(CASES)}")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], json.loads(args.worker[2]))
        return
    from foveal.data.synth_writers import write_synthetic
    from foveal.engine.threads import available_cores

    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {CASES}")
    cores = available_cores()
    options = {"model": args.model, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
               "progress": False, "seed": 0, "device": "cpu"}  # fmt: skip
    print(f"{cores} cores; {args.n} images at {args.imgsz} px, {args.model}, {args.epochs} epochs, "
          f"batch {args.batch}; load average before: {load_average()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_synthetic(root / "shapes", n=args.n, imgsz=args.imgsz, seed=0)
        results: dict[str, list[dict]] = {case: [] for case in cases}
        walls: dict[str, list[float]] = {case: [] for case in cases}
        for repeat in range(args.repeats):
            for case in cases:
                start = time.perf_counter()
                results[case] += run_case(case, data, root / f"r{repeat}", options, cores)
                walls[case].append(time.perf_counter() - start)
        print(f"load average after: {load_average()}")
        print(
            "| case | processes x threads, loader workers | epoch median (s) | mean | epochs (s) | wall (s) |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        alone = None
        for case in cases:
            rows = results[case]
            times = counted(rows, len(walls[case]))
            median, mean = statistics.median(times), statistics.fmean(times)
            alone = median if case == "alone" else alone
            ratio = f" ({median / alone:.2f}x alone)" if alone and case != "alone" else ""
            shape = f"{len(rows) // len(walls[case])} x {rows[0]['threads']}, {rows[0]['workers']}"
            epochs = " ".join(f"{s:.2f}" for r in rows for s in r["epochs"])
            wall = statistics.median(walls[case])
            print(f"| {case} | {shape} | {median:.2f}{ratio} | {mean:.2f} | {epochs} | {wall:.1f} |")


if __name__ == "__main__":
    main()
