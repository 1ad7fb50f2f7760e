"""The EDA report: one self-contained HTML page (inline CSS, every image a ``data:`` URI, no script).

Plots are matplotlib ``Figure`` objects rendered by the Agg canvas (never pyplot) straight to PNG bytes;
every user string (class names, paths, findings) is HTML-escaped, and ``$`` is escaped in plot labels
so matplotlib never reads a class name as mathtext.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from foveal.atomic import atomic_write_text
from foveal.data.eda import EdaReport
from foveal.data.eda import eda_dataset as dataset_statistics

DPI = 100
MAX_BARS = 40  # classes drawn in bar charts (the tables list all)

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img.plot{max-width:100%;margin:6px 0}code{background:#f3f3f3;padding:2px 6px}
.row{display:flex;align-items:center;flex-wrap:wrap;gap:3px;margin:4px 0}
.name{min-width:9em;max-width:16em;overflow-wrap:anywhere;font-size:90%}
.thumbs img{height:64px;width:auto;border:1px solid #ddd}
.group{border:1px solid #e4e4e4;padding:6px;margin:8px 0}.detail{font-size:85%;overflow-wrap:anywhere}
figure{display:inline-block;margin:3px;text-align:center}figcaption{font-size:75%;max-width:90px;
overflow-wrap:anywhere}.leak{color:#b00;font-weight:bold}.muted{color:#777}"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _tex_safe(text: Any, limit: int = 24) -> str:
    """A plot label: at most ``limit`` characters, ``$`` escaped (no mathtext)."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


# ---- plots ----


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    encoded = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{encoded}">'


def _panels(n: int, ncols: int = 3, size: tuple[float, float] = (4.2, 3.0)) -> tuple[Figure, list[Axes]]:
    nrows = -(-n // ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=DPI, layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _hist(
    ax: Axes, hist: dict[str, Any], title: str, xlabel: str, log: bool = False, scale: float = 1.0
) -> None:
    if hist["counts"]:
        ax.stairs(hist["counts"], np.asarray(hist["edges"]) * scale, fill=True, alpha=0.8)
        if log:  # ratios: plain tick labels at round values inside the range
            ax.set_xscale("log")
            lo, hi = hist["edges"][0], hist["edges"][-1]
            ticks = [t for t in (0.1, 0.2, 0.25, 1 / 3, 0.5, 2 / 3, 1, 1.5, 2, 3, 4, 5, 10) if lo <= t <= hi]
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.grid(alpha=0.3)


def _bars(ax: Axes, labels: list[str], series: dict[str, list[float]], title: str, ylabel: str) -> None:
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for name, values in series.items():
        ax.bar(x, values, bottom=bottom, label=_tex_safe(name))
        bottom += np.asarray(values, dtype=np.float64)
    rotate = len(labels) > 6 or len(labels) * max(map(len, labels), default=0) > 36
    ticks = [_tex_safe(label) for label in labels]
    ax.set_xticks(x, ticks, rotation=60 if rotate else 0, ha="right" if rotate else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        ax.legend(fontsize=8)


def _class_plot(report: EdaReport) -> str:
    if not report.class_counts:
        return ""
    totals = {c: sum(v.values()) for c, v in report.class_counts.items()}
    shown = sorted(totals, key=lambda c: -totals[c])[:MAX_BARS]
    fig, (ax,) = _panels(1, 1, (min(12.0, 3.0 + 0.3 * len(shown)), 3.6))
    series = {s: [report.class_counts[c].get(s, 0) for c in shown] for s in report.splits}
    more = f" (top {MAX_BARS} of {len(totals)})" if len(totals) > MAX_BARS else ""
    _bars(ax, shown, series, f"{report.count_unit} per class{more}", report.count_unit)
    return _png(fig)


def _image_plot(report: EdaReport) -> str:
    fig, axes = _panels(4, 4, (3.2, 2.8))
    _hist(axes[0], report.width, "image width", "px")
    _hist(axes[1], report.height, "image height", "px")
    _hist(axes[2], report.aspect, "aspect (w / h)", "w / h", log=report.aspect["min"] != report.aspect["max"])
    _hist(axes[3], report.file_size, "file size", "KiB", scale=1 / 1024)
    return _png(fig)


def _detection_plot(det: dict[str, Any]) -> str:
    fig, axes = _panels(6, 3)
    per_image = det["objects_per_image"]
    axes[0].bar(list(per_image), list(per_image.values()))
    axes[0].set(title="objects per image", xlabel="objects", ylabel="images")
    axes[0].grid(alpha=0.3, axis="y")
    _hist(axes[1], det["box_width"], "box width", "px")
    _hist(axes[2], det["box_height"], "box height", "px")
    aspect = det["box_aspect"]
    _hist(axes[3], aspect, "box aspect (w / h)", "w / h", log=aspect["min"] != aspect["max"])
    image = axes[4].imshow(np.asarray(det["centre_heatmap"]), extent=(0, 1, 1, 0), cmap="viridis")
    fig.colorbar(image, ax=axes[4], shrink=0.8)
    axes[4].set(title="box centres (normalised)", xlabel="x / W", ylabel="y / H")
    buckets = det["size_buckets"]
    axes[5].bar(list(buckets), list(buckets.values()), color=["tab:red", "tab:orange", "tab:green"])
    axes[5].set(title="COCO area ranges", ylabel="objects")
    return _png(fig)


def _segmentation_plot(seg: dict[str, Any]) -> str:
    names = list(seg["pixel_fraction"])[:MAX_BARS]
    fig, axes = _panels(2, 2, (min(6.0, 2.5 + 0.45 * len(names)), 3.4))
    _bars(axes[0], names, {"pixels": [seg["pixel_fraction"][n] for n in names]}, "pixel fraction", "fraction")
    images = {"images": [seg["image_fraction"][n] for n in names]}
    _bars(axes[1], names, images, "images containing the class", "fraction")
    return _png(fig)


# ---- tables and sections ----


def _table(head: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    top = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _summary(report: EdaReport) -> str:
    rows = [
        ("dataset", report.path),
        ("task / format", f"{report.task} ({report.kind}) / {report.fmt}"),
        ("images", f"{report.n_images} ({report.n_unreadable} unreadable)"),
        ("images per split", ", ".join(f"{s}: {n}" for s, n in report.images_per_split.items())),
        ("classes", len(report.class_names)),
        ("imbalance ratio (max / min class count)", report.imbalance_ratio),
        ("channel mean (R, G, B)", ", ".join(f"{v:.4f}" for v in report.channel_mean)),
        ("channel std (R, G, B)", ", ".join(f"{v:.4f}" for v in report.channel_std)),
        ("total file size", f"{report.total_bytes / 2**20:.2f} MiB"),
    ]
    return _table(("", "value"), rows) + f"<p>Normalisation: <code>{_e(report.normalisation)}</code></p>"


def _counts(report: EdaReport) -> str:
    if not report.class_counts:
        return "<p class='muted'>No class labels were read.</p>"
    rows = [
        [name, *(per.get(s, 0) for s in report.splits), sum(per.values())]
        for name, per in report.class_counts.items()
    ]
    ratios = ", ".join(f"{s}: {_fmt(r)}" for s, r in report.imbalance_by_split.items())
    return (
        f"<p>Counts are {_e(report.count_unit)}. Imbalance ratio (max / min over classes with samples, all "
        f"splits): <b>{_fmt(report.imbalance_ratio)}</b>; per split: {ratios}.</p>"
        + _table(["class", *report.splits, "total"], rows)
        + _class_plot(report)
    )


def _images(report: EdaReport) -> str:
    sizes = _table(("width", "height", "images"), report.common_sizes)
    formats = _table(("format", "images"), report.formats.items())
    modes = _table(("mode", "images"), report.modes.items())
    return (
        _image_plot(report)
        + "<div class='row' style='align-items:flex-start;gap:2em'>"
        + f"<div><b>most common sizes</b>{sizes}</div><div><b>formats</b>{formats}</div>"
        + f"<div><b>modes</b>{modes}</div></div>"
    )


def _detection(det: dict[str, Any]) -> str:
    buckets = det["size_buckets"]
    rows = [(k, v, f"{v / max(det['n_objects'], 1):.1%}") for k, v in buckets.items()]
    return (
        f"<p>{det['n_objects']} objects. Area ranges as COCO: small &lt; 32², medium &lt; 96², else large "
        "(the annotation's area, the box's w × h when absent).</p>"
        + _table(("area range", "objects", "share"), rows)
        + _detection_plot(det)
    )


def _segmentation(seg: dict[str, Any]) -> str:
    rows = [
        (
            name,
            seg["pixel_counts"][name],
            f"{seg['pixel_fraction'][name]:.2%}",
            f"{seg['image_fraction'][name]:.1%}",
        )
        for name in seg["pixel_counts"]
    ]
    return (
        f"<p>{seg['images_with_masks']} masks, {seg['labelled_pixels']} labelled pixels "
        f"({seg['ignored_pixels']} ignored).</p>"
        + _table(("class", "pixels", "fraction of labelled pixels", "images containing it"), rows)
        + _segmentation_plot(seg)
    )


def _img(report: EdaReport, path: str, alt: str) -> str:
    uri = report.thumbnails.get(path)
    if uri is None:
        return f"<span class='muted' title='{_e(path)}'>(unreadable)</span>"
    return f'<img src="{_e(uri)}" alt="{_e(alt)}" title="{_e(_relative(report, path))}">'


def _relative(report: EdaReport, path: str) -> str:
    try:
        return str(Path(path).relative_to(report.path))
    except ValueError:
        return path


def _samples(report: EdaReport) -> str:
    if not report.samples:
        return "<p class='muted'>No samples.</p>"
    rows = []
    for name, paths in report.samples.items():
        images = "".join(_img(report, p, name) for p in paths)
        rows.append(f"<div class='row thumbs'><div class='name'>{_e(name)}</div>{images}</div>")
    return "".join(rows)


def _findings(report: EdaReport) -> str:
    counts = {k: v for k, v in report.check["counts"].items() if v}
    if not counts:
        return "<p>No problems found.</p>"
    rows = [
        (f"<span class='leak'>{_e(k)}</span>" if k.startswith("leakage") else _e(k), v)
        for k, v in counts.items()
    ]
    table = (
        "<table><tr><th>finding</th><th>count</th></tr>"
        + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )
    groups = []
    for group in report.groups:
        figures = "".join(
            f"<figure>{_img(report, m['path'], m['split'])}<figcaption>{_e(m['split'])}"
            + (f" · {_e(m['label'])}" if m["label"] is not None else "")
            + "</figcaption></figure>"
            for m in group["members"]
        )
        more = (
            f" (+{group['size'] - len(group['members'])} more)"
            if group["size"] > len(group["members"])
            else ""
        )
        groups.append(
            f"<div class='group'><div class='detail'><b>{_e(group['kind'])}</b>: {_e(group['detail'])}"
            f"{_e(more)}</div><div class='thumbs'>{figures}</div></div>"
        )
    others = [f for f in report.check["findings"] if f["kind"] not in {g["kind"] for g in report.groups}]
    listed = "".join(f"<li><b>{_e(f['kind'])}</b>: {_e(f['detail'])}</li>" for f in others[:50])
    more = f"<li class='muted'>... {len(others) - 50} more</li>" if len(others) > 50 else ""
    return table + "".join(groups) + (f"<ul>{listed}{more}</ul>" if listed else "")


def eda_dataset(path: str | Path, *args: Any, out: str | Path | None = None, **options: Any) -> EdaReport:
    """``foveal.data.eda.eda_dataset`` (same parameters), and with ``out`` the report written there as
    one self-contained HTML page (the report's ``out``): what ``foveal data eda`` runs."""
    report = dataset_statistics(path, *args, **options)
    if out is not None:
        report.out = str(write_eda_html(report, out))
    return report


def write_eda_html(report: EdaReport, out: str | Path) -> Path:
    """Write ``report`` as one self-contained HTML page at ``out`` (atomically); returns the path."""
    sections = [
        ("Summary", _summary(report)),
        ("Classes and splits", _counts(report)),
        ("Images", _images(report)),
    ]
    if report.detection is not None:
        sections.append(("Objects (detection)", _detection(report.detection)))
    if report.segmentation is not None:
        sections.append(("Mask classes (segmentation)", _segmentation(report.segmentation)))
    sections.append(("Samples per class", _samples(report)))
    sections.append(("Data check", _findings(report)))
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>foveal EDA: {_e(Path(report.path).name)}"
        f"</title><style>{_STYLE}</style></head><body><h1>EDA: {_e(report.path)}</h1>{body}"
        f"<p class='muted'>{report.n_images} images read in {report.seconds:.1f} s by foveal data eda.</p>"
        "</body></html>"
    )
    return atomic_write_text(Path(out).expanduser(), page)
