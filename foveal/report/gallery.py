"""Image gallery: one self-contained HTML contact sheet of a dataset, optionally with predictions.

Thumbnails (``size`` px on the longest side) are JPEG data URIs drawn with PIL: classification labels
under each card, detection boxes (solid, one colour per class; instance masks shaded), segmentation
masks as translucent overlays. With a predictions file (``foveal predict``/``val`` predictions.json, or a
COCO results.json for detection) each card also shows the prediction and mistakes get a red border.
A small inline script filters cards by class, split and mistakes; the page loads nothing else. Every
user string is HTML-escaped and the script reads it back from data attributes, never as markup.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from foveal.atomic import atomic_write_text
from foveal.data.index import DatasetIndex, Entry, index_dataset
from foveal.errors import ConfigError, DataError, did_you_mean
from foveal.report.gallery_predictions import (
    MIN_IOU,
    MIN_MIOU,
    MIN_SCORE,
    Predictions,
    detection_mistake,
    load_predictions,
    mean_iou,
)
from foveal.report.seg_plots import class_colours

RULES = {
    "classify": "Mistake: the top-1 predicted class is not the target (multilabel: the predicted label set "
    "differs from the target set).",
    "detect": f"Mistake: a target box has no prediction of its class with IoU \u2265 {MIN_IOU} and score "
    f"\u2265 {MIN_SCORE}, or a prediction with score \u2265 {MIN_SCORE} matches no target box (one-to-one, "
    "highest score first). Solid boxes: targets; dashed boxes: predictions with score "
    f"\u2265 {MIN_SCORE}. COCO results: images of a split without any detection in the file are not "
    "judged; predictions.json: images without a row are not judged.",
    "segment": f"Mistake: per-image mIoU < {MIN_MIOU} (mean IoU over the classes present in the target "
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


@dataclass
class _Card:
    entry: Entry
    group: str
    classes: list[str]
    thumbs: list[tuple[str, str]]  # (caption, data URI)
    target: str
    prediction: str | None = None
    mistake: bool | None = None  # None: not judged


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumb(image: Image.Image, size: int) -> tuple[Image.Image, float]:
    """``image`` scaled to ``size`` px on its longest side (nearest-neighbour when enlarging 2x or more)."""
    scale = size / max(image.size)
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(new, Image.NEAREST if scale >= 2 else Image.LANCZOS), scale


def _text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: tuple[int, int, int]
) -> None:
    """A caption on a filled tab above ``xy`` (the box corner), readable on any background."""
    try:
        left, top, right, bottom = draw.textbbox(xy, text)
    except UnicodeEncodeError:  # a bitmap font without the glyphs
        text = text.encode("ascii", "replace").decode()
        left, top, right, bottom = draw.textbbox(xy, text)
    lift = bottom - top + 2
    y = max(0.0, xy[1] - lift)
    draw.rectangle([xy[0], y, xy[0] + right - left + 2, y + lift], fill=colour)
    draw.text((xy[0] + 1, y), text, fill=(255, 255, 255) if sum(colour) < 400 else (0, 0, 0))


def _dashed_rect(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple[int, int, int]) -> None:
    """A rectangle of ``colour`` dashes with white gaps: a prediction, told apart from solid target boxes."""
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (
        ((x0, y0), (x1, y0)),
        ((x1, y0), (x1, y1)),
        ((x1, y1), (x0, y1)),
        ((x0, y1), (x0, y0)),
    ):
        length = max(abs(bx - ax), abs(by - ay), 1.0)
        for start in np.arange(0.0, length, 3.0):
            t0, t1 = start / length, min(start + 3.0, length) / length
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=colour if int(start / 3.0) % 2 == 0 else (255, 255, 255),
                width=2,
            )


def _shade(
    thumb: Image.Image, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.4
) -> Image.Image:
    """Blend ``colour`` into ``thumb`` where the (H, W) bool ``mask`` (image resolution) is set."""
    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(thumb.size, Image.NEAREST)) > 0
    canvas = np.asarray(thumb, dtype=np.float32).copy()
    canvas[small] = (1 - alpha) * canvas[small] + alpha * np.asarray(colour, dtype=np.float32)
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def _overlay(
    thumb: Image.Image, classmap: np.ndarray, colours: list[tuple[int, int, int]], ignore: int
) -> str:
    """A data URI of ``thumb`` with the (H, W) class map blended in at 50% and each region outlined in its
    class colour (class 0 and ignored pixels left clear)."""
    small = np.asarray(Image.fromarray(classmap.astype(np.int32)).resize(thumb.size, Image.NEAREST))
    canvas = np.asarray(thumb, dtype=np.float32).copy()
    on = (small > 0) & (small != ignore) & (small < len(colours))
    palette = np.asarray(colours, dtype=np.float32).reshape(-1, 3)
    canvas[on] = 0.5 * canvas[on] + 0.5 * palette[small[on]]
    padded = np.pad(small, 1, mode="edge")
    edge = on & (
        (padded[:-2, 1:-1] != small)
        | (padded[2:, 1:-1] != small)
        | (padded[1:-1, :-2] != small)
        | (padded[1:-1, 2:] != small)
    )
    canvas[edge] = palette[small[edge]]
    return _data_uri(Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8)))


def _xyxy(bbox: list[float], scale: float) -> list[float]:
    x, y, w, h = (float(v) * scale for v in bbox)
    return [x, y, x + max(w - scale, 0.0), y + max(h - scale, 0.0)]


def _detect_card(
    index: DatasetIndex, entry: Entry, image: Image.Image, size: int, preds: Predictions | None
) -> _Card:
    names = {c["id"]: str(c["name"]) for c in index.categories or []}
    palette = dict(zip(names, class_colours(len(names) + 1)[1:]))
    thumb, scale = _thumb(image, size)
    objects = entry.sample.objects or []
    for obj in objects:
        if obj.get("segmentation"):
            from foveal.data.formats.coco import object_mask

            try:
                mask = object_mask(obj, image.height, image.width)
            except DataError:
                mask = None
            if mask is not None:
                thumb = _shade(thumb, mask, palette.get(obj["category_id"], (255, 0, 0)))
    draw = ImageDraw.Draw(thumb)
    for obj in objects:
        colour = palette.get(obj["category_id"], (255, 0, 0))
        box = _xyxy(obj["bbox"], scale)
        draw.rectangle(box, outline=colour, width=2)
        if isinstance(obj.get("segmentation"), list):  # instance polygons: their outlines
            for polygon in obj["segmentation"]:
                if isinstance(polygon, list) and len(polygon) >= 6:
                    points = [float(v) * scale for v in polygon]
                    draw.line([*zip(points[::2], points[1::2]), (points[0], points[1])], fill=colour, width=1)
        _text(draw, (box[0], box[1]), names.get(obj["category_id"], "?"), colour)
    target = f"{len(objects)} object(s)" + (": " + ", ".join(entry.classes) if entry.classes else "")
    card = _Card(entry, entry.split, list(entry.classes), [("", "")], target)
    judged = preds is not None and (
        entry.split in (preds.judged_splits or ()) or preds.key(entry) in preds.rows
    )
    if judged and preds is not None:
        detections = [d for d in preds.rows.get(preds.key(entry), []) if d["score"] >= MIN_SCORE]
        for det in detections:
            colour = palette.get(det["category_id"], (255, 0, 0))
            box = _xyxy(det["bbox"], scale)
            _dashed_rect(draw, box, colour)
            _text(
                draw,
                (box[0], box[3] + 11),
                f"{names.get(det['category_id'], '?')} {det['score']:.2f}",
                colour,
            )
        missed, extra = detection_mistake(objects, detections)
        card.mistake = bool(missed or extra)
        card.prediction = f"{len(detections)} prediction(s); missed {missed}, extra {extra}"
    card.thumbs = [("", _data_uri(thumb))]
    return card


def _seg_colours(spec: Any) -> list[tuple[int, int, int]]:
    """The mask spec's class colours, else the VOC palette (as segmentation overlays use)."""
    return [tuple(c) for c in spec.colours] if spec.colours else class_colours(len(spec.class_names))


def _segment_card(
    index: DatasetIndex, entry: Entry, image: Image.Image, size: int, preds: Predictions | None
) -> _Card:
    from foveal.data.seg_loading import decode_target

    spec = index.spec
    colours = _seg_colours(spec)
    target = decode_target(entry.sample, spec, image.size)
    present = [spec.class_names[v] for v in np.unique(target) if 0 < v < len(spec.class_names)]
    thumb, _ = _thumb(image, size)
    card = _Card(
        entry,
        entry.split,
        present,
        [("target", _overlay(thumb, target, colours, spec.ignore_index))],
        ", ".join(present) or "(background only)",
    )
    row = preds.rows.get(preds.key(entry)) if preds is not None else None
    if row is not None:
        predicted = preds.mask(row, target.shape)
        miou = mean_iou(target, predicted, spec.ignore_index)
        card.thumbs.append(("prediction", _overlay(thumb, predicted, colours, spec.ignore_index)))
        card.prediction, card.mistake = f"mIoU {miou:.2f}", miou < MIN_MIOU
    return card


def _classify_card(
    entry: Entry, image: Image.Image, size: int, preds: Predictions | None, multilabel: bool
) -> _Card:
    group = entry.classes[0] if entry.classes else "(no label)"
    card = _Card(
        entry,
        group,
        list(entry.classes),
        [("", _data_uri(_thumb(image, size)[0]))],
        ", ".join(entry.classes) or "(no label)",
    )
    row = preds.rows.get(preds.key(entry)) if preds is not None else None
    if row is not None:
        labels, scores = list(row.get("labels") or []), list(row.get("scores") or [])
        if multilabel:
            card.prediction = "pred: " + (", ".join(labels) or "(none)")
            card.mistake = set(labels) != set(entry.classes)
        else:
            top = labels[0] if labels else None
            card.prediction = f"pred: {top} {scores[0]:.2f}" if top is not None and scores else f"pred: {top}"
            card.mistake = top != (entry.classes[0] if entry.classes else None)
    return card


def _regress_card(index: DatasetIndex, entry: Entry, image: Image.Image, size: int) -> _Card:
    """A regression image grouped by split, captioned with its targets (no predictions yet)."""
    values = zip(index.target_names or [], entry.sample.values or [])
    target = ", ".join(f"{name} {value:g}" for name, value in values) or "(no targets)"
    return _Card(entry, entry.split, [], [("", _data_uri(_thumb(image, size)[0]))], target)


def _card(index: DatasetIndex, entry: Entry, size: int, preds: Predictions | None) -> _Card:
    from foveal.data.imageio import load_rgb

    try:
        image = load_rgb(entry.path)
        if index.task == "detect":
            return _detect_card(index, entry, image, size, preds)
        if index.task == "segment":
            return _segment_card(index, entry, image, size, preds)
        if index.task == "regress":
            return _regress_card(index, entry, image, size)
        return _classify_card(entry, image, size, preds, index.kind == "multilabel")
    except DataError as err:  # an unreadable image or mask: a grey card saying why
        grey = _data_uri(Image.new("RGB", (size, size), (128, 128, 128)))
        group = entry.split if index.task != "classify" else (entry.classes or ("(no label)",))[0]
        return _Card(entry, group, list(entry.classes), [("", grey)], f"unreadable: {err}")


def _sample(entries: list[Entry], n: int, seed: int, task: str) -> list[Entry]:
    """``n`` entries drawn with ``seed``, stratified: each class (detect/segment: split) gets its share."""
    if n >= len(entries):
        return entries
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        key = (e.classes[0] if e.classes else "") if task == "classify" else e.split
        groups.setdefault(key, []).append(i)
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


def _card_html(card: _Card, root: Path) -> str:
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


def _page(index: DatasetIndex, cards: list[_Card], preds: Predictions | None, note: str) -> str:
    groups: dict[str, list[_Card]] = {}
    order = index.class_names + ["(no label)"] if index.task == "classify" else index.splits
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
    legend = ""
    if index.task not in ("classify", "regress"):
        if index.task == "detect":  # the colours _detect_card draws with: palette entries 1..K
            colours = class_colours(len(index.class_names) + 1)[1:]
        else:
            colours = _seg_colours(index.spec)
        legend = (
            "<p>"
            + "".join(
                f'<span class="swatch" style="background:rgb{tuple(int(v) for v in c)}"></span>{_e(n)}'
                for i, (n, c) in enumerate(zip(index.class_names, colours))
                if not (index.task == "segment" and i == 0)
            )
            + "</p>"
        )
    sections = "".join(
        f'<section class="group"><h2>{_e(name)} <small>({len(part)})</small></h2><div class="grid">'
        + "".join(_card_html(c, index.root) for c in part)
        + "</div></section>"
        for name, part in groups.items()
    )
    meta = {"task": index.task, "images": len(cards), "mistakes": mistakes, "classes": index.class_names}
    rule = f'<p class="rule">{_e(RULES[index.task])} Predictions: {_e(preds.source)}.</p>' if preds else ""
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
        entries = [c.entry for c in (_card(index, e, 16, preds) for e in entries) if c.mistake]
    entries = _sample(entries, sample, seed, index.task) if sample is not None else entries
    cards = [_card(index, e, size, preds) for e in entries]
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
