"""Image gallery: one self-contained HTML contact sheet of a dataset, optionally with predictions.

Thumbnails (``size`` px on the longest side) are JPEG data URIs drawn with PIL: classification labels
under each card, detection boxes (solid, one colour per class; instance masks shaded), segmentation
masks as translucent overlays. With a predictions file (``foveal predict``/``val`` predictions.json, or a
COCO results.json for detection) each card also shows the prediction and mistakes get a red border.
A small inline script filters cards by class, split and mistakes; the page loads nothing else. Every
user string is HTML-escaped and the script reads it back from data attributes, never as markup.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foveal.atomic import atomic_write_text
from foveal.data.index import DatasetIndex, Entry, index_dataset
from foveal.errors import ConfigError, DataError, did_you_mean
from foveal.report.gallery_cards import NO_LABEL, Card, card_group, draw_card, legend_colours
from foveal.report.gallery_predictions import (  # noqa: F401  (detection_mistake, mean_iou: re-exported)
    MIN_IOU,
    MIN_MIOU,
    MIN_SCORE,
    Predictions,
    detection_mistake,
    load_predictions,
    mean_iou,
)

# The mistake rule of each kind of target (``DatasetKind.annotation``), shown with predictions.
RULES = {
    "labels": "Mistake: the top-1 predicted class is not the target (multilabel: the predicted label set "
    "differs from the target set).",
    "objects": f"Mistake: a target box has no prediction of its class with IoU \u2265 {MIN_IOU} and score "
    f"\u2265 {MIN_SCORE}, or a prediction with score \u2265 {MIN_SCORE} matches no target box (one-to-one, "
    "highest score first). Solid boxes: targets; dashed boxes: predictions with score "
    f"\u2265 {MIN_SCORE}. COCO results: images of a split without any detection in the file are not "
    "judged; predictions.json: images without a row are not judged.",
    "mask": f"Mistake: per-image mIoU < {MIN_MIOU} (mean IoU over the classes present in the target "
    "or the prediction; ignored pixels left out). Left: target, right: prediction.",
}


@dataclass
class GalleryResult:
    """What ``write_gallery`` wrote: the page, its image and mistake counts (mistakes: 0 without
    predictions), and the predictions that matched no dataset image."""

    out: Path
    task: str
    images: int
    mistakes: int
    classes: list[str] = field(default_factory=list)
    predictions: str | None = None
    unmatched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out": str(self.out)}


def _sample(index: DatasetIndex, entries: list[Entry], n: int, seed: int) -> list[Entry]:
    """``n`` entries drawn with ``seed``, stratified: each card group (class, or split) gets its share."""
    if n >= len(entries):
        return entries
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault(card_group(index, e, ""), []).append(i)
    exact = {k: n * len(v) / len(entries) for k, v in groups.items()}
    quota = {k: int(q) for k, q in exact.items()}
    for k in sorted(groups, key=lambda k: quota[k] - exact[k])[: n - sum(quota.values())]:
        quota[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [i for k, idx in groups.items() for i in rng.choice(idx, size=quota[k], replace=False).tolist()]
    return [entries[i] for i in sorted(chosen)]


def _filter(
    index: DatasetIndex, entries: list[Entry], split: str | None, classes: list[str] | None
) -> list[Entry]:
    if split is not None:
        if split not in index.splits:
            raise DataError(
                f"{index.root}: no split '{split}' (present: {', '.join(index.splits)}); "
                "choose --split from those"
            )
        entries = [e for e in entries if e.split == split]
    if classes:
        for name in classes:
            if name not in index.class_names:
                raise ConfigError(
                    f"unknown class '{name}'{did_you_mean(name, index.class_names)} in --classes; "
                    f"choose from {', '.join(index.class_names)}"
                )
        wanted = set(classes)
        entries = [e for e in entries if wanted & set(e.classes)]
        if not entries:
            raise DataError(f"{index.root}: no image has the classes {', '.join(classes)}; check --classes")
    return entries


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
header p{margin:.3em 0}nav{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;
z-index:1}nav button{margin:2px;padding:3px 8px;border:1px solid #888;border-radius:4px;background:#f6f6f6;
cursor:pointer}nav button[aria-pressed=true]{background:#246;color:#fff}.grid{display:flex;flex-wrap:wrap;
gap:8px}.card{margin:0;padding:4px;border:3px solid #ddd;border-radius:4px;width:min-content;
background:#fafafa}.card.mistake{border-color:#d00;background:#fee}.thumbs{display:flex;gap:4px}
.thumbs div{text-align:center;font-size:11px;color:#666}
figcaption{font-size:12px;width:0;min-width:100%;overflow-wrap:anywhere}
figcaption span{display:block}.target{font-weight:600}.pred{color:#036}.mistake .pred{color:#b00}
.path{color:#777;font-size:11px}.swatch{display:inline-block;width:.9em;height:.9em;margin:0 .2em 0 .6em;
vertical-align:middle;border:1px solid #555}.rule{color:#555;font-size:13px}
[hidden]{display:none!important}"""

_SCRIPT = """(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("figure.card"));
  var buttons = Array.prototype.slice.call(document.querySelectorAll("button.cls"));
  var mistakes = document.getElementById("mistakes-only");
  var split = document.getElementById("split");
  var active = null;
  var classesOf = new Map(cards.map(function (c) { return [c, JSON.parse(c.dataset.classes)]; }));
  function valueOf(b) { return b.hasAttribute("data-class") ? b.getAttribute("data-class") : null; }
  function apply() {
    var shown = 0;
    cards.forEach(function (card) {
      var ok = (active === null || classesOf.get(card).indexOf(active) >= 0) &&
        (!mistakes || !mistakes.checked || card.dataset.mistake === "1") &&
        (!split || split.value === "" || card.dataset.split === split.value);
      card.hidden = !ok;
      if (ok) { shown += 1; }
    });
    document.querySelectorAll("section.group").forEach(function (s) {
      s.hidden = s.querySelector("figure.card:not([hidden])") === null;
    });
    document.getElementById("shown").textContent = String(shown);
    buttons.forEach(function (b) {
      b.setAttribute("aria-pressed", String(valueOf(b) === active));
    });
  }
  buttons.forEach(function (b) {
    b.addEventListener("click", function () { active = valueOf(b); apply(); });
  });
  if (mistakes) { mistakes.addEventListener("change", apply); }
  if (split) { split.addEventListener("change", apply); }
  apply();
})();"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: <, > and & escaped as \\u sequences."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _card_html(card: Card, root: Path) -> str:
    path = Path(card.entry.path)
    try:
        shown = path.relative_to(root if root.is_dir() else root.parent)
    except ValueError:
        shown = Path(path.name)
    mistake = {True: "1", False: "0", None: ""}[card.mistake]
    thumbs = "".join(
        f'<div><img src="{uri}" alt="{_e(path.name)}">' + (f"<br>{_e(cap)}" if cap else "") + "</div>"
        for cap, uri in card.thumbs
    )
    pred = f'<span class="pred">{_e(card.prediction)}</span>' if card.prediction is not None else ""
    return (
        f'<figure class="card{" mistake" if card.mistake else ""}" '
        f'data-classes="{_e(json.dumps(card.classes))}" '
        f'data-split="{_e(card.entry.split)}" data-mistake="{mistake}"><div class="thumbs">{thumbs}</div>'
        f'<figcaption><span class="target">{_e(card.target)}</span>{pred}'
        f'<span class="path" title="{_e(path)}">{"/<wbr>".join(_e(p) for p in shown.parts)}</span>'
        "</figcaption></figure>"
    )


def _page(index: DatasetIndex, cards: list[Card], preds: Predictions | None, note: str) -> str:
    groups: dict[str, list[Card]] = {}
    kind = index.dataset_kind
    order = index.class_names + [NO_LABEL] if kind.groups_by_class else index.splits
    for card in sorted(cards, key=lambda c: order.index(c.group) if c.group in order else len(order)):
        groups.setdefault(card.group, []).append(card)
    counts = {name: sum(name in c.classes for c in cards) for name in index.class_names}
    buttons = "".join(
        f'<button type="button" class="cls" data-class="{_e(n)}">{_e(n)} ({k})</button>'
        for n, k in counts.items()
        if k
    )
    mistakes = sum(bool(c.mistake) for c in cards)
    nav = [f'<nav><button type="button" class="cls" aria-pressed="true">all classes</button>{buttons}']
    splits = sorted({c.entry.split for c in cards}, key=lambda s: index.splits.index(s))
    if len(splits) > 1:
        options = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in splits)
        nav.append(
            f' <select id="split" aria-label="split"><option value="">all splits</option>{options}</select>'
        )
    if preds is not None:
        nav.append(f' <label><input type="checkbox" id="mistakes-only"> mistakes only ({mistakes})</label>')
    nav.append(f' &middot; <span id="shown">{len(cards)}</span> shown</nav>')
    swatches = legend_colours(index)
    legend = ""
    if swatches is not None:  # the class colours the cards draw with
        legend = "".join(
            f'<span class="swatch" style="background:rgb{tuple(int(v) for v in c)}"></span>{_e(n)}'
            for n, c in swatches
        )
        legend = f"<p>{legend}</p>"
    sections = "".join(
        f'<section class="group"><h2>{_e(name)} <small>({len(part)})</small></h2><div class="grid">'
        + "".join(_card_html(c, index.root) for c in part)
        + "</div></section>"
        for name, part in groups.items()
    )
    meta = {"task": index.task, "images": len(cards), "mistakes": mistakes, "classes": index.class_names}
    rule = (
        f'<p class="rule">{_e(RULES[kind.annotation])} Predictions: {_e(preds.source)}.</p>' if preds else ""
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"><link rel="icon" href="data:,">'
        f"<title>foveal gallery: {_e(index.root.name)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Gallery: {_e(index.root)}</h1><p>{_e(index.task)} ({_e(index.fmt)}), {_e(note)}"
        + (f", {mistakes} mistake(s)" if preds else "")
        + f"</p>{legend}{rule}</header>{''.join(nav)}<main>{sections or '<p>No images to show.</p>'}</main>"
        f'<script type="application/json" id="gallery-meta">{_script_json(meta)}</script>'
        f"<script>{_SCRIPT}</script></body></html>"
    )


def write_gallery(
    path: str | Path,
    out: str | Path,
    *,
    task: str = "auto",
    fmt: str = "auto",
    predictions: str | Path | None = None,
    sample: int | None = None,
    size: int = 128,
    seed: int = 0,
    classes: list[str] | str | None = None,
    split: str | None = None,
    mistakes_only: bool = False,
) -> GalleryResult:
    """Write the HTML gallery of the dataset at ``path`` (any format ``index_dataset`` reads) to ``out``.

    ``predictions``: predictions.json (classify/segment) or COCO results.json (detect), matched to the
    images by path (COCO: ``file_name``, then ``image_id``). ``sample``: a seeded random subset of that
    many images, stratified by class (detect/segment: by split). ``classes``/``split`` keep only those
    images (``classes`` may be comma-separated text 'a,b'); ``mistakes_only`` keeps only wrongly
    predicted ones (needs ``predictions``).
    """
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()] or None
    if size < 16 or (sample is not None and sample < 1):
        raise ConfigError(f"--size {size} / --sample {sample}: size must be >= 16 and sample >= 1")
    if mistakes_only and predictions is None:
        raise ConfigError("--mistakes-only needs --predictions FILE (the predictions to judge)")
    index = index_dataset(path, task, fmt, mask_classes=bool(classes))
    entries = _filter(index, index.entries, split, classes)
    preds = load_predictions(Path(predictions), index) if predictions is not None else None
    total = len(entries)
    if mistakes_only:
        entries = [c.entry for c in (draw_card(index, e, 16, preds) for e in entries) if c.mistake]
    entries = _sample(index, entries, sample, seed) if sample is not None else entries
    cards = [draw_card(index, e, size, preds) for e in entries]
    note = f"{len(cards)} of {total} image(s)" + (
        f" (sample, seed {seed})" if sample and sample < total else ""
    )
    out = Path(out)
    atomic_write_text(out, _page(index, cards, preds, note + (", mistakes only" if mistakes_only else "")))
    return GalleryResult(
        out,
        index.task,
        len(cards),
        sum(bool(c.mistake) for c in cards),
        index.class_names,
        None if preds is None else str(preds.source),
        0 if preds is None else preds.unmatched,
    )
