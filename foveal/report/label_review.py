"""The ``review.html`` page of ``foveal data label-errors``: self-contained (no script, thumbnails as data
URIs) with a card per flagged image, worst first: the given and the suggested label (classification),
the suspicious boxes dashed over the solid ground truth (detection), the given mask and its
low-confidence regions (segmentation). Every user string is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from foveal.data.imageio import load_rgb
from foveal.data.index import DatasetIndex
from foveal.report.gallery_cards import box_caption, dashed_rect, data_uri, overlaid, seg_colours, thumbnail
from foveal.report.seg_plots import class_colours

ISSUE_COLOURS = {"missing": (220, 0, 0), "wrong_class": (230, 120, 0), "badly_placed": (0, 90, 220)}
RULES = {
    "classify": "Confident learning on out-of-fold probabilities (pruned by noise rate); score = 1 - the "
    "label quality of the given label (higher: more likely wrong). Suggested: the most likely other class "
    "(multilabel: the given set with the flagged labels switched).",
    "detect": "Dashed boxes: confident out-of-fold predictions; solid: ground truth. missing = a confident "
    "prediction overlapping no ground truth box (IoU < 0.5); wrong_class = it overlaps one of another class "
    "(IoU \u2265 0.5); badly_placed = a ground truth box whose best same-class prediction has IoU in "
    "[0.1, 0.5).",
    "segment": "Score = 1 - the softmin mean of the pixels' probability of their given class. Red boxes: "
    "regions where the given class has probability < 0.5.",
}
_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}.grid{display:flex;flex-wrap:wrap;
gap:8px}.card{margin:0;padding:4px;border:3px solid #ddd;border-radius:4px;width:min-content;
background:#fafafa}
.thumbs{display:flex;gap:4px}.thumbs div{text-align:center;font-size:11px;color:#666}
figcaption{font-size:12px;width:0;min-width:100%;overflow-wrap:anywhere}figcaption span{display:block}
.given{font-weight:600}.suggested{color:#b00}.path{color:#777;font-size:11px}.rule{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _names(value: Any) -> str:
    return ", ".join(value) or "(none)" if isinstance(value, list) else str(value)


def _classify_card(row: dict[str, Any], image: Image.Image, size: int) -> tuple[list[str], list[str]]:
    lines = [f"given: {_names(row['given'])}", f"suggested: {_names(row['suggested'])}"]
    return [data_uri(thumbnail(image, size)[0])], lines


def _detect_card(
    row: dict[str, Any], image: Image.Image, size: int, entry: Any, index: DatasetIndex
) -> tuple[list[str], list[str]]:
    thumb, scale = thumbnail(image, size)
    draw = ImageDraw.Draw(thumb)
    names = {c["id"]: str(c["name"]) for c in index.categories or []}
    palette = dict(zip(index.class_names, class_colours(len(index.class_names) + 1)[1:]))
    for obj in entry.sample.objects or []:
        x, y, w, h = (float(v) * scale for v in obj["bbox"])
        colour = palette.get(names.get(obj.get("category_id"), ""), (0, 160, 0))
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=2)
    lines = []
    for issue in row["issues"]:
        colour = ISSUE_COLOURS[issue["kind"]]
        box = [v * scale for v in issue["predicted_box"]]
        dashed_rect(draw, box, colour)
        box_caption(draw, (box[0], box[1]), issue["kind"], colour)
        given = f"{issue['given']} \u2192 " if issue["given"] else ""
        lines.append(f"{issue['kind']}: {given}{issue['suggested']} ({issue['score']:.2f})")
    return [data_uri(thumb)], lines


def _segment_card(
    row: dict[str, Any], image: Image.Image, size: int, entry: Any, index: DatasetIndex
) -> tuple[list[str], list[str]]:
    from foveal.data.seg_loading import decode_target

    thumb, scale = thumbnail(image, size)
    target = decode_target(entry.sample, index.spec, image.size)
    marked = overlaid(thumb, target, seg_colours(index.spec), index.spec.ignore_index)
    draw = ImageDraw.Draw(marked)
    lines = [f"quality {row['quality']:.2f}"]
    for region in row["regions"]:
        draw.rectangle([v * scale for v in region["bbox"]], outline=(255, 0, 0), width=2)
        lines.append(f"{region['given']} \u2192 {region['suggested']}: {region['area']} px")
    return [data_uri(marked)], lines


def _card(row: dict[str, Any], index: DatasetIndex, entries: dict[str, Any], size: int) -> str:
    entry = entries[str(Path(row["path"]).resolve())]
    image = load_rgb(entry.path)
    if index.task == "detect":
        uris, lines = _detect_card(row, image, size, entry, index)
    elif index.task == "segment":
        uris, lines = _segment_card(row, image, size, entry, index)
    else:
        uris, lines = _classify_card(row, image, size)
    thumbs = "".join(f'<div><img src="{u}" alt="{_e(Path(entry.path).name)}"></div>' for u in uris)
    first, rest = (lines[0], lines[1:]) if index.task == "classify" else ("", lines)
    spans = (f'<span class="given">{_e(first)}</span>' if first else "") + "".join(
        f'<span class="suggested">{_e(line)}</span>' for line in rest
    )
    return (
        f'<figure class="card"><div class="thumbs">{thumbs}</div><figcaption>{spans}'
        f"<span>score {row['score']:.3f} &middot; fold {_e(row.get('fold'))}</span>"
        f'<span class="path" title="{_e(entry.path)}">{_e(Path(entry.path).name)}</span>'
        "</figcaption></figure>"
    )


def _noise_table(noise: list[dict[str, Any]]) -> str:
    if not noise:
        return ""
    label = "label" in noise[0]
    head = ("label", "given", "true", "rate", "images") if label else ("given", "true", "rate", "images")
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(v)}</td>"
            for v in ([n["label"]] if label else []) + [n["given"], n["true"], f"{n['rate']:.3f}", n["count"]]
        )
        + "</tr>"
        for n in noise[:30]
    )
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<h2>Estimated noise rates</h2><table><tr>{cells}</tr>{rows}</table>"


def review_page(index: DatasetIndex, doc: dict[str, Any], limit: int = 200, size: int = 160) -> str:
    """The review page of the label-errors document ``doc`` (label_errors.json) for ``index``: the
    ``limit`` worst flagged images, thumbnails ``size`` px."""
    entries = {str(Path(e.path).resolve()): e for e in index.entries}
    issues = doc["issues"][:limit]
    cards = "".join(_card(row, index, entries, size) for row in issues)
    more = f" (the {limit} worst shown)" if len(doc["issues"]) > limit else ""
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"><link rel="icon" href="data:,">'
        f"<title>foveal label errors: {_e(index.root.name)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Label errors: {_e(doc['data'])}</h1><p>{_e(index.task)}: {doc['n_flagged']} of "
        f"{doc['n_images']} images flagged{more}; out-of-fold predictions: {_e(doc['oof'])}</p>"
        f'<p class="rule">{_e(RULES[index.task])}</p></header>{_noise_table(doc["noise"])}'
        f'<main><h2>Flagged images, worst first</h2><div class="grid">'
        f"{cards or '<p>No label errors found.</p>'}</div></main></body></html>"
    )
    return page
