"""The study report of ``foveal tune``: one self-contained HTML page (inline CSS, plots as ``data:``
URIs, no script); every value from the user or the study is HTML-escaped."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write_text

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img.plot{max-width:100%;margin:6px 0}
code{background:#f3f3f3;padding:2px 6px}.best{font-weight:bold;background:#eef7ee}.muted{color:#777}
.verdict{font-weight:bold}"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], best_row: int | None = None) -> str:
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for i, row in enumerate(rows):
        out.append('<tr class="best">' if i == best_row else "<tr>")
        out += [f"<td>{_fmt(v)}</td>" for v in row]
        out.append("</tr>")
    return "".join(out) + "</table>"


def _img(path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img class="plot" alt="{_e(Path(path).stem)}" src="data:image/png;base64,{encoded}">'


def _confirm(confirm: dict[str, Any]) -> str:
    rows = [[c["label"], c["mean"], c["std"], ", ".join(f"{v:.4g}" for v in c["values"])]
            for c in confirm["configs"]]  # fmt: skip
    parts = [f"<h2>Confirmation over {len(confirm['seeds'])} seeds</h2>",
             _table(["configuration", "mean", "std", "per seed"], rows),
             f'<p class="verdict">{_e(confirm["verdict"])}</p>']  # fmt: skip
    return "".join(parts)


def write_study_report(
    out: str | Path,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    plots: Sequence[Path],
    confirm: dict[str, Any] | None = None,
) -> Path:
    """Write the study page to ``out``: the best trial, the space, every trial, the plots and the
    --confirm section; ``rows`` as ``foveal.analysis.tune.trial_rows``."""
    best = summary.get("best")
    metric = summary["metric"]
    head = f"<h1>foveal tune: study {_e(summary['study'])}</h1>"
    counts = ", ".join(f"{_e(k)} {v}" for k, v in summary["counts"].items())
    intro = f"<p>{_e(metric)} ({_e(summary['direction'])}); trials: {counts}</p>"
    if best:
        params = ", ".join(f"<code>{_e(k)}={_fmt(v)}</code>" for k, v in best["params"].items())
        std = f" &plusmn; {best['std']:.4g}" if best.get("std") is not None else ""
        intro += f"<p>best: trial {best['number']}, {_e(metric)} {best['value']:.4g}{std}: {params}</p>"
    else:
        intro += '<p class="muted">no trial completed yet</p>'
    space = "<h2>Search space</h2><ul>" + "".join(f"<li><code>{_e(s)}</code></li>" for s in summary["space"])
    space += "</ul><h2>Fixed options</h2>"
    space += _table(["option", "value"], [[k, v] for k, v in summary["fixed"].items()])
    columns = [c for c in (rows[0] if rows else {}) if any(r.get(c) not in (None, "") for r in rows)]
    best_row = next((i for i, r in enumerate(rows) if best and r["number"] == best["number"]), None)
    trials = "<h2>Trials</h2>" + _table(columns, [[r.get(c) for c in columns] for r in rows], best_row)
    figures = "<h2>Plots</h2>" + "".join(_img(p) for p in plots) if plots else ""
    body = head + intro + (_confirm(confirm) if confirm else "") + figures + trials + space
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>foveal tune: {_e(summary["study"])}'
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")  # fmt: skip
    return atomic_write_text(out, page)
