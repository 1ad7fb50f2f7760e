"""The run report: ``RUN/report.html``, one self-contained page built from the files of a run folder.

Reads what the run (and later commands on it) wrote: ``metrics.json`` (validation, test, per-class),
``config.yaml`` (with what ``--aug auto`` measured: ``aug_evidence``), ``data.json`` (samples per split
and class), every ``plots/*.png`` (curves, confusion matrix, PR/ROC, reliability, top losses, examples),
``errors.json`` (most-confused pairs, top losses), ``calibration/`` (temperature, ECE before/after,
reliability diagrams), ``explain/*.png`` (saliency), and ``comparisons/*.json`` (TTA, ensemble,
classical baseline) for the "single vs TTA vs ensemble vs baseline" table. ``foveal report RUN``
rebuilds it; commands that add files to a run rebuild it too.
Images are embedded as data URIs, every string is HTML-escaped, and the page loads nothing else.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from foveal.atomic import atomic_write_text
from foveal.errors import DataError

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:520px;margin:6px}
figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:.85em;color:#555}
pre{background:#f6f6f6;padding:1em;overflow:auto}nav a{margin-right:1em}"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# metrics shown in the comparison table, where the task reports them
MAIN_METRICS = ("accuracy", "f1_macro", "auroc", "ece", "miou", "dice_mean", "pixel_accuracy", "map50", "map")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return _e(value) if value is not None else ""


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("epochs_run",)
    }


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_number(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    val, test = _scalars(metrics), _scalars(metrics.get("test") or {})
    keys = list(val) + [k for k in test if k not in val]
    header = ["metric", "validation"] + (["test"] if test else [])
    return _table(header, [[k, val.get(k), *([test.get(k)] if test else [])] for k in keys])


def _per_class_table(per_class: dict[str, Any]) -> str:
    """Per-class rows: {class: {column: value}}, or {class: value} (detection AP@[.50:.95])."""
    if not per_class:
        return ""
    rows = {k: v if isinstance(v, dict) else {"AP@[.50:.95]": v} for k, v in per_class.items()}
    columns = list(next(iter(rows.values())).keys())
    return _table(["class", *columns], [[name, *(row.get(c) for c in columns)] for name, row in rows.items()])


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    name = _e(path.stem.replace("_", " "))
    image = f'<img alt="{name}" src="data:image/png;base64,{data}">'
    return f"<figure>{image}<figcaption>{name}</figcaption></figure>"


def _figures(folder: Path) -> str:
    return "".join(_figure(p) for p in sorted(folder.glob("*.png"))) if folder.is_dir() else ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _comparison(run: Path, metrics: dict[str, Any]) -> str:
    """Single model vs TTA vs ensemble vs baseline, each on the split it was measured on."""
    rows: list[tuple[str, str, dict[str, Any]]] = [("this model", "val", metrics)]
    if metrics.get("test"):
        rows.append(("this model", "test", metrics["test"]))
    files = [run / "comparisons" / f"{name}.json" for name in ("tta", "ensemble")]
    files += sorted((run / "comparisons").glob("baseline*.json"))  # one per features + model
    for path in files:
        doc, name = _read_json(path), path.stem.split("-")[0]
        if not isinstance(doc, dict):
            continue
        if name == "tta":
            rows.append((f"TTA ({doc.get('tta')})", doc.get("split", "?"), doc.get("metrics") or {}))
        elif name == "ensemble":
            label = f"ensemble of {len(doc.get('members', []))} ({doc.get('method')})"
            rows.append((label, doc.get("split", "?"), doc.get("metrics") or {}))
        else:
            base = doc.get("metrics") or {}
            label = f"baseline {doc.get('features')} + {doc.get('model')}"
            rows.append((label, "val", base))
            if isinstance(base.get("test"), dict):
                rows.append((label, "test", base["test"]))
    if len(rows) < 2 + bool(metrics.get("test")):
        return ""
    keys = [k for k in MAIN_METRICS if any(isinstance(r[2].get(k), float) for r in rows)]
    table = _table(["model", "split", *keys], [[n, s, *(m.get(k) for k in keys)] for n, s, m in rows])
    return "<h2 id='comparison'>Single model vs TTA vs ensemble vs baseline</h2>" + table


def _errors(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    parts = []
    pairs = doc.get("confused_pairs") or []
    if pairs:
        rows = [
            [p.get("true"), p.get("predicted"), p.get("count")] if isinstance(p, dict) else list(p)
            for p in pairs
        ]
        parts.append("<h3>Most confused pairs</h3>" + _table(["true", "predicted", "count"], rows))
    losses = doc.get("top_losses") or []
    if losses:
        rows = [[r.get("path"), r.get("target"), r.get("prediction"), r.get("confidence"), r.get("loss")]
                for r in losses if isinstance(r, dict)]  # fmt: skip
        parts.append(
            "<h3>Top losses</h3>" + _table(["image", "target", "prediction", "confidence", "loss"], rows)
        )
    worst = [r for r in doc.get("worst_images") or [] if isinstance(r, dict)]
    if worst:
        rows = [[r.get("path"), r.get("miou"), r.get("pixel_accuracy")] for r in worst]
        parts.append("<h3>Worst images</h3>" + _table(["image", "mIoU", "pixel accuracy"], rows))
    counts = {k: v for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool)}
    if counts:
        parts.append(_table(["count", "value"], [[k, v] for k, v in counts.items()]))
    return "".join(parts)


def _calibration(folder: Path) -> str:
    doc = _read_json(folder / "calibration.json")
    if not isinstance(doc, dict):
        return ""
    rows = [[k, v] for k, v in doc.items() if isinstance(v, int | float | str) and not isinstance(v, bool)]
    return "<h2 id='calibration'>Calibration</h2>" + _table(["", "value"], rows) + _figures(folder)


def _data_summary(doc: Any) -> str:
    if not isinstance(doc, dict) or not doc.get("splits"):
        return ""
    splits = doc["splits"]
    classes = sorted({c for part in splits.values() for c in (part.get("classes") or {})})
    header = ["split", "images", *classes]
    rows = [[s, part.get("images"), *((part.get("classes") or {}).get(c, 0) for c in classes)]
            for s, part in splits.items()]  # fmt: skip
    return "<h2 id='data'>Data</h2>" + _table(header, rows)


def _aug_evidence(doc: Any) -> str:
    """The ``--aug auto`` decision: its summary and, per probed flip, the metric plain and flipped."""
    if not isinstance(doc, dict) or not doc.get("summary"):
        return ""
    probe = doc.get("probe") if isinstance(doc.get("probe"), dict) else {}
    where = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in probe.items())
    rows = [
        [
            name,
            c.get("plain"),
            c.get("transformed"),
            c.get("drop"),
            c.get("margin"),
            "kept" if c.get("kept") else "off",
        ]
        for name, c in (doc.get("candidates") or {}).items()
        if isinstance(c, dict)
    ]
    metric = str(doc.get("metric", "metric"))
    header = ["transform", f"{metric} plain", f"{metric} transformed", "drop", "margin", "decision"]
    return (
        "<h2 id='augmentation'>Augmentation (--aug auto)</h2>"
        f"<p>{_e(doc['summary'])}</p>"
        + (f"<p>probe: {_e(where)}</p>" if where else "")
        + (_table(header, rows) if rows else "")
    )


def write_report(run_dir: str | Path, *, title: str | None = None) -> Path:
    """(Re)build ``run_dir/report.html`` from the run folder's files; returns its path."""
    run = Path(run_dir).expanduser()
    metrics = _read_json(run / "metrics.json")
    if not isinstance(metrics, dict):
        raise DataError(f"{run}: no metrics.json; pass a finished run folder (runs/<task>/<name>)")
    config_file = next((p for p in (run / "config.yaml", run / "baseline.yaml") if p.is_file()), None)
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file else {}
    task = str((config or {}).get("task", "run"))
    title = title or f"{task} run {run.name}"
    tables = _metrics_table(metrics) + _per_class_table(metrics.get("per_class") or {})
    sections = [
        ("metrics", "Metrics (best checkpoint)", tables),
        ("plots", "Curves and plots", _figures(run / "plots")),
        ("errors", "Error analysis", _errors(_read_json(run / "errors.json"))),
        ("saliency", "Saliency examples", _figures(run / "explain")),
        ("config", "Configuration", "<pre>" + _e(yaml.safe_dump(config, sort_keys=False)) + "</pre>"),
    ]  # fmt: skip
    body = [
        _comparison(run, metrics),
        _data_summary(_read_json(run / "data.json")),
        _aug_evidence((config or {}).get("aug_evidence")),
        *(f"<h2 id='{key}'>{_e(name)}</h2>{content}" for key, name, content in sections[:3] if content),
        _calibration(run / "calibration"),
        *(f"<h2 id='{key}'>{_e(name)}</h2>{content}" for key, name, content in sections[3:] if content),
    ]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\"><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1><p>{_e(run)}</p>"
        + "".join(b for b in body if b)
        + "</body></html>"
    )
    return atomic_write_text(run / "report.html", page)


def run_folder(path: str | Path) -> Path | None:
    """The run folder of a checkpoint (``RUN/checkpoints/x.ckpt``) or a run folder itself: the one that
    holds ``metrics.json``; None when there is none."""
    path = Path(path).expanduser()
    for candidate in (path, path.parent.parent) if path.suffix == ".ckpt" else (path,):
        if (candidate / "metrics.json").is_file():
            return candidate
    return None


def refresh_report(path: str | Path) -> Path | None:
    """Rebuild the report of the run that ``path`` (checkpoint or run folder) belongs to, if any."""
    run = run_folder(path)
    return write_report(run) if run is not None else None
