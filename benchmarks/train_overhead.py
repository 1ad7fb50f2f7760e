"""Engine overhead: foveal's Lightning engine vs a plain PyTorch loop on the same model, data, batch.

Both train the default classifier for the same number of steps from the same initial weights and the
same DataLoader settings, alternating runs in one process; prints images/s for each and the ratio.
The foveal run is a real one (progress bar, CSV/TensorBoard logs, checkpoints) minus validation.

    .venv/bin/python benchmarks/train_overhead.py --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch


def plain_loop(model: torch.nn.Module, loader, steps: int, lr: float) -> float:
    """Seconds for ``steps`` steps of a hand-written loop (AdamW + cosine, as foveal's default)."""
    from foveal.engine.optim import build_optimizer

    optimizer = build_optimizer(model.parameters(), "adamw", lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for images, targets in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(images), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def foveal_loop(task, config, model: torch.nn.Module, loader, steps: int, root: Path) -> float:
    """Seconds for ``steps`` steps through foveal's TaskModule and Trainer."""
    from foveal.engine.callbacks import History
    from foveal.engine.module import TaskModule
    from foveal.engine.rundir import new_run_dir
    from foveal.engine.trainer import build_trainer

    run_dir = new_run_dir(root, "bench")
    module = TaskModule(task, config, model)
    trainer = build_trainer(config, task, run_dir, History(run_dir / "history.json"))
    trainer.fit_loop.max_steps = steps
    trainer.limit_val_batches = 0
    start = time.perf_counter()
    trainer.fit(module, loader)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="show foveal's progress bar")
    args = parser.parse_args()

    from foveal.config import make_config
    from foveal.data.synth_writers import write_synthetic
    from foveal.engine.fit import _prepare
    from foveal.engine.loaders import make_loader

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(Path(tmp) / "shapes", n=args.batch * 20, imgsz=args.imgsz, seed=0)
        config = make_config(
            data=str(data),
            batch=args.batch,
            imgsz=args.imgsz,
            epochs=1000,
            workers=args.workers,
            aug="none",
            progress=args.progress,
            scheduler="cosine",
        )
        task, splits, config = _prepare(config)
        torch.manual_seed(0)
        initial = task.build_model()
        times = {"plain": [], "foveal": []}
        for repeat in range(args.repeats):
            for name in ("plain", "foveal") if repeat % 2 == 0 else ("foveal", "plain"):
                loader = make_loader(task, splits["train"], "train", args.batch, args.workers, seed=repeat)
                model = copy.deepcopy(initial)
                if name == "plain":
                    seconds = plain_loop(model, loader, args.steps, float(config.lr))
                else:
                    seconds = foveal_loop(task, config, model, loader, args.steps, Path(tmp) / "runs")
                times[name].append(seconds)
                print(f"repeat {repeat} {name:>6}: {args.steps * args.batch / seconds:8.1f} images/s")
    rate = {k: args.steps * args.batch / statistics.median(v) for k, v in times.items()}
    print(
        f"model {config.model}, batch {args.batch}, {args.imgsz} px, {args.steps} steps, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"plain PyTorch loop: {rate['plain']:.1f} images/s")
    print(f"foveal engine:      {rate['foveal']:.1f} images/s")
    print(f"ratio foveal/plain: {rate['foveal'] / rate['plain']:.3f}")


if __name__ == "__main__":
    main()
