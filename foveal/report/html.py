"""The run report: one self-contained HTML page with the config, metrics and plots (escaped)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write_text

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:520px;margin:6px}
pre{background:#f6f6f6;padding:1em;overflow:auto}"""


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def _scalar_table(metrics: dict[str, Any]) -> str:
    rows = [
        f"<tr><td>{html.escape(k)}</td><td>{_number(v)}</td></tr>"
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return "<table><tr><th>metric</th><th>value</th></tr>" + "".join(rows) + "</table>"


def _per_class_table(per_class: dict[str, Any], name: str = "value") -> str:
    """Per-class rows: {class: {column: value}}, or {class: value} (one column called ``name``)."""
    if not per_class:
        return ""
    per_class = {k: v if isinstance(v, dict) else {name: v} for k, v in per_class.items()}
    columns = list(next(iter(per_class.values())).keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["class", *columns])
    body = "".join(
        "<tr><td>"
        + html.escape(name)
        + "</td>"
        + "".join(f"<td>{_number(row.get(c))}</td>" for c in columns)
        + "</tr>"
        for name, row in per_class.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    run_dir: Path, task: str, config: dict[str, Any], metrics: dict[str, Any], plots: Sequence[str]
) -> Path:
    """Write ``run_dir/report.html`` with plots embedded as data URIs (the page stands alone)."""
    images = "".join(
        f'<img alt="{html.escape(Path(p).stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(p).read_bytes()).decode()}">'
        for p in plots
        if Path(p).is_file()
    )
    test = metrics.get("test")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>foveal {html.escape(task)} run "
        f"{html.escape(run_dir.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(task)} run: {html.escape(str(run_dir))}</h1>",
        "<h2>Validation (best checkpoint)</h2>",
        _scalar_table(metrics),
        _per_class_table(metrics.get("per_class") or {}, "AP@[.50:.95]"),
        "<h2>Test</h2>" + _scalar_table(test) if isinstance(test, dict) else "",
        "<h2>Plots</h2>",
        images,
        "<h2>Configuration</h2><pre>" + html.escape(json.dumps(config, indent=2, default=str)) + "</pre>",
        "</body></html>",
    ]
    return atomic_write_text(run_dir / "report.html", "\n".join(parts))
