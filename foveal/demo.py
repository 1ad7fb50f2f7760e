"""The demo: synthetic shapes -> train -> evaluate -> predict, with a summary table per task."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

CLASSIFY_DEFAULTS = {"n": 4000, "epochs": 12}


def shapes_data(project: Path, fmt: str, n: int, imgsz: int, seed: int) -> Path:
    """The synthetic dataset for the demo, generated once and reused by later demos."""
    from foveal.data.synth_writers import write_synthetic

    folder = project / "data" / f"shapes-{fmt}-{n}-{imgsz}px-seed{seed}"
    if not (folder / "README.txt").is_file():
        if folder.exists():
            import shutil

            shutil.rmtree(folder)  # an interrupted earlier generation
        write_synthetic(folder, n=n, imgsz=imgsz, seed=seed, fmt=fmt)
    return folder


def demo_classify(project: Path, n: int | None, epochs: int | None, seed: int) -> dict[str, Any]:
    from foveal.engine.evaluation import evaluate, predict
    from foveal.engine.fit import train

    start = time.perf_counter()
    data = shapes_data(project, "imagefolder", n or CLASSIFY_DEFAULTS["n"], 64, seed)
    result = train(
        task="classify",
        data=str(data),
        epochs=epochs or CLASSIFY_DEFAULTS["epochs"],
        seed=seed,
        project=str(project / "classify"),
    )
    test = evaluate(result.best, data, split="test")
    sample = sorted((data / "test").rglob("*.png"))[:8]
    predictions = predict(
        result.best, [str(p) for p in sample], out=result.run_dir / "predictions", render=True
    )
    correct = sum(Path(p["path"]).parent.name == p["labels"][0] for p in predictions)
    return {
        "task": "classify",
        "run_dir": str(result.run_dir),
        "val_accuracy": result.metrics["accuracy"],
        "test_accuracy": test["accuracy"],
        "val_f1_macro": result.metrics["f1_macro"],
        "predicted_correctly": f"{correct}/{len(predictions)}",
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_demo(
    project: str = "runs/demo", n: int | None = None, epochs: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Run every task's demo; print a summary table; return the summary rows."""
    from rich.console import Console
    from rich.table import Table

    rows = [demo_classify(Path(project), n, epochs, seed)]
    table = Table(title="foveal demo on synthetic shapes")
    for column in ("task", "metric", "value", "seconds", "run"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["task"], "val accuracy", f"{row['val_accuracy']:.4f}", str(row["seconds"]), row["run_dir"]
        )
        table.add_row("", "test accuracy", f"{row['test_accuracy']:.4f}", "", "")
        table.add_row("", "val macro F1", f"{row['val_f1_macro']:.4f}", "", "")
        table.add_row("", "predict (8 test images)", row["predicted_correctly"], "", "")
    Console().print(table)
    for row in rows:
        print(f"{row['task']} run: {row['run_dir']}")
    return {"tasks": rows}
