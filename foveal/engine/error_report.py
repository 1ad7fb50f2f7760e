"""``errors.json`` and the error plots of one evaluated split, from the task's ``error_analysis``.

Training's final evaluation and ``foveal val --errors`` call :func:`write_errors` with what evaluation
already computed: no extra inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from foveal.data.sample import Sample
from foveal.tasks.base import Task


def write_errors(
    task: Task,
    kept: dict[str, Tensor],
    metrics: dict[str, Any],
    samples: Sequence[Sample],
    predictions: Sequence[Any],
    out_dir: str | Path,
    plots_dir: str | Path | None = None,
    n: int = 16,
) -> dict[str, Any]:
    """Error analysis of one split from its ``kept`` step outputs, ``metrics`` and ``predictions`` (as
    ``run_model`` and ``compute_metrics`` return them): ``out_dir/errors.json`` and the plots in
    ``plots_dir`` (default ``out_dir``). Returns {"json": path, "plots": [paths]}; a task without
    ``error_analysis`` writes nothing and returns {"plots": []}."""
    from foveal.atomic import atomic_write_text
    from foveal.serialize import dumps

    out_dir = Path(out_dir)
    found = task.error_analysis(kept, metrics, samples, predictions, Path(plots_dir or out_dir), n)
    if found is None:
        return {"plots": []}
    report, plots = found
    path = atomic_write_text(out_dir / "errors.json", dumps(report, indent=1))
    return {"json": str(path), "plots": plots}
