"""Rich tables for metrics and predictions on the terminal."""

from __future__ import annotations

from typing import Any


def print_metrics(metrics: dict[str, Any], title: str = "metrics") -> None:
    """Scalar metrics, then the per-class table when present."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, int) and not isinstance(value, bool):
            table.add_row(key, str(value))
        elif value is None and key not in ("test", "plots"):
            table.add_row(key, "-")
    console.print(table)
    per_class = metrics.get("per_class") or {}
    # {class: {column: value}}, or {class: AP} (detection)
    per_class = {k: v if isinstance(v, dict) else {"AP@[.50:.95]": v} for k, v in per_class.items()}
    if per_class:
        columns = [
            c for c, v in next(iter(per_class.values())).items() if v is None or isinstance(v, (int, float))
        ]
        classes = Table(title="per class")
        classes.add_column("class")
        for column in columns:
            classes.add_column(column, justify="right")
        for name, row in per_class.items():
            classes.add_row(name, *[_cell(row.get(c)) for c in columns])
        console.print(classes)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))
