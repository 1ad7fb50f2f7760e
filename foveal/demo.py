"""The demo: synthetic shapes -> train -> evaluate -> predict, with a summary table per task."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foveal.errors import check_choice

# Sized so each task meets its bar (classify: val accuracy >= 0.95; segment: val mIoU >= 0.85, both in
# under 3 minutes; detect: val mAP50 >= 0.80 in under 5 minutes, on 2 CPU cores); see README.
DEFAULTS: dict[str, dict[str, Any]] = {
    "classify": {"n": 4000, "epochs": 12, "options": {}},
    # the U-Net underfits this data in a 3-minute budget: no augmentation, more and larger steps
    # (batch 32, lr 5e-3) reach the bar in 7 epochs where the defaults need ~12 (see benchmarks/README.md)
    "segment": {"n": 1500, "epochs": 7, "options": {"batch": 32, "aug": "none", "lr": 5e-3}},
    "detect": {"n": 2000, "epochs": 10, "options": {"batch": 32}},
}
FORMATS = {"classify": "imagefolder", "segment": "masks", "detect": "coco"}
TEST_IMAGES = {"classify": "test/*/*.png", "segment": "test/images/*.png", "detect": "images/test/*.png"}


def shapes_data(project: Path, fmt: str, n: int, imgsz: int, seed: int) -> Path:
    """The synthetic dataset for the demo, generated once and reused by later demos."""
    from foveal.data.synth_writers import write_synthetic

    folder = project / "data" / f"shapes-{fmt}-{n}-{imgsz}px-seed{seed}"
    if not (folder / "README.txt").is_file():
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted earlier generation
        write_synthetic(folder, n=n, imgsz=imgsz, seed=seed, fmt=fmt)
    return folder


def _test_images(data: Path, task: str, count: int) -> list[str]:
    return [str(p) for p in sorted(data.glob(TEST_IMAGES[task]))[:count]]


def _true_objects(data: Path, rows: list[dict[str, Any]]) -> int:
    """Ground-truth objects in the predicted test images of the demo's COCO data."""
    import json

    doc = json.loads((data / "annotations" / "instances_test.json").read_text())
    names = {Path(row["path"]).name for row in rows}
    ids = {image["id"] for image in doc["images"] if image["file_name"] in names}
    return sum(ann["image_id"] in ids for ann in doc["annotations"])


def demo_task(task: str, project: Path, n: int | None, epochs: int | None, seed: int) -> dict[str, Any]:
    """Generate data, train, evaluate on test, predict a few test images; return a summary row."""
    from foveal.engine.evaluation import evaluate, predict
    from foveal.engine.fit import train

    start = time.perf_counter()
    defaults = DEFAULTS[task]
    data = shapes_data(project, FORMATS[task], n or defaults["n"], 64, seed)
    result = train(
        task=task,
        data=str(data),
        epochs=epochs or defaults["epochs"],
        seed=seed,
        project=str(project / task),
        **defaults["options"],
    )
    test = evaluate(result.best, data, split="test")
    out = result.run_dir / "predictions"
    if task == "classify":
        rows = predict(result.best, _test_images(data, task, 8), out=out, render=True)
        correct = sum(Path(r["path"]).parent.name == r["labels"][0] for r in rows)
        metrics = [
            ("val accuracy", result.metrics["accuracy"]),
            ("test accuracy", test["accuracy"]),
            ("val macro F1", result.metrics["f1_macro"]),
            ("8 test images right", f"{correct}/8"),
        ]
    elif task == "detect":
        rows = predict(result.best, _test_images(data, task, 8), out=out)
        metrics = [
            ("val mAP50", result.metrics["map50"]),
            ("val mAP@[.5:.95]", result.metrics["map"]),
            ("test mAP50", test["map50"]),
            (
                "8 test images: found / true objects",
                f"{sum(len(r['boxes']) for r in rows)}/{_true_objects(data, rows)}",
            ),
        ]
    else:
        predict(result.best, _test_images(data, task, 8), out=out, instances=True)
        metrics = [
            ("val mIoU", result.metrics["miou"]),
            ("test mIoU", test["miou"]),
            ("val mean Dice", result.metrics["dice"]),
            ("val pixel accuracy", result.metrics["pixel_accuracy"]),
        ]
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
    """Run the demo of each task in ``tasks`` (default: every task with a demo, ``DEFAULTS``); print a
    summary table; return the summary rows."""
    from rich.console import Console
    from rich.table import Table

    tasks = list(DEFAULTS) if tasks is None else tasks
    for task in tasks:
        check_choice("demo task", task, DEFAULTS)
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
