"""Engine overhead: foveal's Lightning engine vs a plain PyTorch loop on the same model, data, batch.

Both train the default classifier for the same number of steps from the same initial weights with the
same DataLoader, alternating runs in one process. The foveal run is a real one (CSV/TensorBoard logs,
checkpoints every epoch, history) minus validation and the progress bar (``--progress`` adds it).
Prints images/s for each over the whole run (set-up included) and in steady state (steps after the
first ``--warmup`` ones), and the ratios.

    .venv/bin/python benchmarks/train_overhead.py --steps 100 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch


def plain_loop(model: torch.nn.Module, loader, steps: int, lr: float) -> list[float]:
    """Time stamps (start, then after each step) of a hand-written loop (AdamW + cosine, as foveal)."""
    from foveal.engine.optim import build_optimizer

    stamps = [time.perf_counter()]
    optimizer = build_optimizer(model.parameters(), "adamw", lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.to(memory_format=torch.channels_last).train()  # the layout foveal's engine uses
    while len(stamps) <= steps:
        for images, targets in loader:
            optimizer.zero_grad(set_to_none=True)
            images = images.contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.cross_entropy(model(images), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            stamps.append(time.perf_counter())
            if len(stamps) > steps:
                break
    return stamps


class Stamps(L.Callback):
    """Records a time stamp after every training step."""

    def __init__(self, start: float) -> None:
        self.stamps = [start]

    def on_train_batch_end(self, *args) -> None:
        self.stamps.append(time.perf_counter())


def foveal_loop(task, config, model: torch.nn.Module, loader, steps: int, root: Path) -> list[float]:
    """Time stamps of ``steps`` steps through foveal's TaskModule and Trainer (set-up included)."""
    from foveal.engine.callbacks import History
    from foveal.engine.module import TaskModule
    from foveal.engine.rundir import new_run_dir
    from foveal.engine.trainer import build_trainer

    stamps = Stamps(time.perf_counter())
    run_dir = new_run_dir(root, "bench")
    module = TaskModule(task, config, model)
    trainer = build_trainer(
        config, task, run_dir, History(run_dir / "history.json"), max_steps=steps, limit_val_batches=0
    )
    trainer.callbacks.append(stamps)
    trainer.fit(module, loader)
    return stamps.stamps


def rates(stamps: list[float], batch: int, warmup: int) -> tuple[float, float]:
    """(images/s over the whole run, images/s after ``warmup`` steps)."""
    steps = len(stamps) - 1
    return steps * batch / (stamps[-1] - stamps[0]), (steps - warmup) * batch / (stamps[-1] - stamps[warmup])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the steady-state rate")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="show foveal's progress bar")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from foveal.config import make_config
    from foveal.data.synth_writers import write_synthetic
    from foveal.engine.loaders import make_loader
    from foveal.engine.setup import prepare_run
    from foveal.engine.trainer import quiet_lightning

    quiet_lightning()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(Path(tmp) / "shapes", n=args.batch * 20, imgsz=args.imgsz, seed=0)
        config = make_config(
            data=str(data),
            batch=args.batch,
            imgsz=args.imgsz,
            epochs=1000,
            warmup_epochs=0,
            workers=args.workers,
            aug="none",
            progress=args.progress,
            scheduler="cosine",
        )
        task, splits, config = prepare_run(config)
        torch.manual_seed(0)
        initial = task.build_model()
        results: dict[str, list[tuple[float, float]]] = {"plain": [], "foveal": []}
        for repeat in range(-1, args.repeats):  # repeat -1 warms up caches and imports; not counted
            for name in ("plain", "foveal") if repeat % 2 == 0 else ("foveal", "plain"):
                seed = max(0, repeat)
                loader = make_loader(task, splits["train"], "train", args.batch, args.workers, seed=seed)
                model = copy.deepcopy(initial)
                if name == "plain":
                    stamps = plain_loop(model, loader, args.steps, float(config.lr))
                else:
                    stamps = foveal_loop(task, config, model, loader, args.steps, Path(tmp) / "runs")
                if repeat < 0:
                    continue
                results[name].append(rates(stamps, args.batch, args.warmup))
                whole, steady = results[name][-1]
                print(f"repeat {repeat} {name:>6}: {whole:7.1f} images/s whole run, {steady:7.1f} steady")
    median = {k: [statistics.median(r[i] for r in v) for i in (0, 1)] for k, v in results.items()}
    print(
        f"model {config.model}, batch {args.batch}, {args.imgsz} px, {args.steps} steps, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    for label, i in (("whole run", 0), ("steady state", 1)):
        plain, fov = median["plain"][i], median["foveal"][i]
        print(
            f"{label:>12}: plain {plain:7.1f} images/s, foveal {fov:7.1f} images/s, ratio {fov / plain:.3f}"
        )


if __name__ == "__main__":
    main()
