"""The demo: synthetic shapes -> train -> evaluate -> predict, with a summary table per task."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foveal.errors import check_choice

# Each task's recipe (``Task.demo``) is sized to meet its bar on 2 CPU cores (classify: val accuracy
# >= 0.95; segment: val mIoU >= 0.85, both in under 3 minutes; detect: val mAP50 >= 0.80 in under 5
# minutes); see README.


def demo_tasks() -> list[str]:
    """The registered tasks that have a demo recipe, in registry order."""
    from foveal.tasks import get_task, task_names

    return [name for name in task_names() if get_task(name).demo is not None]


def shapes_data(project: Path, fmt: str, n: int, imgsz: int, seed: int) -> Path:
    """The synthetic dataset for the demo, generated once and reused by later demos."""
    from foveal.data.synth_writers import write_synthetic

    folder = project / "data" / f"shapes-{fmt}-{n}-{imgsz}px-seed{seed}"
    if not (folder / "README.txt").is_file():
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted earlier generation
        write_synthetic(folder, n=n, imgsz=imgsz, seed=seed, fmt=fmt)
    return folder


def demo_task(task: str, project: Path, n: int | None, epochs: int | None, seed: int) -> dict[str, Any]:
    """Generate data, train, evaluate on test, predict a few test images; return a summary row."""
    from foveal.engine.evaluation import evaluate, predict
    from foveal.engine.fit import train
    from foveal.tasks import get_task

    start = time.perf_counter()
    recipe = get_task(task).demo
    data = shapes_data(project, recipe.fmt, n or recipe.n, 64, seed)
    result = train(
        task=task,
        data=str(data),
        epochs=epochs or recipe.epochs,
        seed=seed,
        project=str(project / task),
        **recipe.options,
    )
    test = evaluate(result.best, data, split="test")
    images = [str(p) for p in sorted(data.glob(recipe.test_images))[:8]]
    rows = predict(result.best, images, out=result.run_dir / "predictions", **recipe.predict)
    metrics = get_task(task).demo_summary(result.metrics, test, rows, data)
    return {
        "task": task,
        "run_dir": str(result.run_dir),
        "metrics": metrics,
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_demo(
    project: str = "runs/demo",
    n: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the demo of each task in ``tasks`` (default: every task with a demo recipe); print a
    summary table; return the summary rows."""
    from rich.console import Console
    from rich.table import Table

    tasks = demo_tasks() if tasks is None else tasks
    for task in tasks:
        check_choice("demo task", task, demo_tasks())
    rows = [demo_task(task, Path(project), n, epochs, seed) for task in tasks]
    table = Table(title="foveal demo on synthetic shapes")
    for column in ("task", "metric", "value", "seconds", "run"):
        table.add_column(column)
    for row in rows:
        for i, (name, value) in enumerate(row["metrics"]):
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            table.add_row(
                row["task"] if i == 0 else "",
                name,
                shown,
                str(row["seconds"]) if i == 0 else "",
                row["run_dir"] if i == 0 else "",
            )
    Console().print(table)
    for row in rows:
        print(f"{row['task']} run: {row['run_dir']}")
    return {"tasks": [{**row, "metrics": dict(row["metrics"])} for row in rows]}
