"""Gallery cards: one image of a dataset drawn as a thumbnail with its target (and prediction).

How a card is drawn follows the kind of target of the dataset (``DatasetKind.annotation``): class labels
as a caption, masks as translucent overlays (target and prediction side by side), objects as solid boxes
(instance masks shaded, polygons outlined) with predictions dashed, regression values as a caption.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from foveal.data.index import DatasetIndex, Entry
from foveal.errors import DataError
from foveal.report.gallery_predictions import MIN_MIOU, MIN_SCORE, Predictions, detection_mistake, mean_iou
from foveal.report.seg_plots import class_colours

NO_LABEL = "(no label)"  # the section of classification images without a label


@dataclass
class Card:
    """One image as drawn: its entry, section (``group``), classes for the filter buttons, thumbnails, target
    and prediction captions, and whether the prediction is a mistake."""

    entry: Entry
    group: str
    classes: list[str]
    thumbs: list[tuple[str, str]]  # (caption, data URI)
    target: str
    prediction: str | None = None
    mistake: bool | None = None  # None: not judged


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail(image: Image.Image, size: int) -> tuple[Image.Image, float]:
    """``image`` scaled to ``size`` px on its longest side (nearest-neighbour when enlarging 2x or more)."""
    scale = size / max(image.size)
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(new, Image.NEAREST if scale >= 2 else Image.LANCZOS), scale


def box_caption(
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


def dashed_rect(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple[int, int, int]) -> None:
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
    """A data URI of :func:`overlaid`."""
    return data_uri(overlaid(thumb, classmap, colours, ignore))


def overlaid(
    thumb: Image.Image, classmap: np.ndarray, colours: list[tuple[int, int, int]], ignore: int
) -> Image.Image:
    """``thumb`` with the (H, W) class map blended in at 50% and each region outlined in its class colour
    (class 0 and ignored pixels left clear)."""
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
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def _xyxy(bbox: list[float], scale: float) -> list[float]:
    x, y, w, h = (float(v) * scale for v in bbox)
    return [x, y, x + max(w - scale, 0.0), y + max(h - scale, 0.0)]


def _detect_card(
    index: DatasetIndex, entry: Entry, image: Image.Image, size: int, preds: Predictions | None
) -> Card:
    names = {c["id"]: str(c["name"]) for c in index.categories or []}
    palette = dict(zip(names, class_colours(len(names) + 1)[1:]))
    thumb, scale = thumbnail(image, size)
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
        box_caption(draw, (box[0], box[1]), names.get(obj["category_id"], "?"), colour)
    target = f"{len(objects)} object(s)" + (": " + ", ".join(entry.classes) if entry.classes else "")
    card = Card(entry, card_group(index, entry), list(entry.classes), [("", "")], target)
    judged = preds is not None and (
        entry.split in (preds.judged_splits or ()) or preds.key(entry) in preds.rows
    )
    if judged and preds is not None:
        detections = [d for d in preds.rows.get(preds.key(entry), []) if d["score"] >= MIN_SCORE]
        for det in detections:
            colour = palette.get(det["category_id"], (255, 0, 0))
            box = _xyxy(det["bbox"], scale)
            dashed_rect(draw, box, colour)
            box_caption(
                draw,
                (box[0], box[3] + 11),
                f"{names.get(det['category_id'], '?')} {det['score']:.2f}",
                colour,
            )
        missed, extra = detection_mistake(objects, detections)
        card.mistake = bool(missed or extra)
        card.prediction = f"{len(detections)} prediction(s); missed {missed}, extra {extra}"
    card.thumbs = [("", data_uri(thumb))]
    return card


def seg_colours(spec: Any) -> list[tuple[int, int, int]]:
    """The mask spec's class colours, else the VOC palette (as segmentation overlays use)."""
    return [tuple(c) for c in spec.colours] if spec.colours else class_colours(len(spec.class_names))


def _segment_card(
    index: DatasetIndex, entry: Entry, image: Image.Image, size: int, preds: Predictions | None
) -> Card:
    from foveal.data.seg_loading import decode_target

    spec = index.spec
    colours = seg_colours(spec)
    target = decode_target(entry.sample, spec, image.size)
    present = [spec.class_names[v] for v in np.unique(target) if 0 < v < len(spec.class_names)]
    thumb, _ = thumbnail(image, size)
    card = Card(
        entry,
        card_group(index, entry),
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
    index: DatasetIndex, entry: Entry, image: Image.Image, size: int, preds: Predictions | None
) -> Card:
    card = Card(
        entry,
        card_group(index, entry),
        list(entry.classes),
        [("", data_uri(thumbnail(image, size)[0]))],
        ", ".join(entry.classes) or "(no label)",
    )
    row = preds.rows.get(preds.key(entry)) if preds is not None else None
    if row is not None:
        labels, scores = list(row.get("labels") or []), list(row.get("scores") or [])
        if index.kind == "multilabel":
            card.prediction = "pred: " + (", ".join(labels) or "(none)")
            card.mistake = set(labels) != set(entry.classes)
        else:
            top = labels[0] if labels else None
            card.prediction = f"pred: {top} {scores[0]:.2f}" if top is not None and scores else f"pred: {top}"
            card.mistake = top != (entry.classes[0] if entry.classes else None)
    return card


def _regress_card(
    index: DatasetIndex, entry: Entry, image: Image.Image, size: int, preds: Predictions | None
) -> Card:
    """A regression image grouped by split, captioned with its targets (no predictions yet)."""
    values = zip(index.target_names or [], entry.sample.values or [])
    target = ", ".join(f"{name} {value:g}" for name, value in values) or "(no targets)"
    return Card(entry, card_group(index, entry), [], [("", data_uri(thumbnail(image, size)[0]))], target)


# How a card is drawn, by the kind of target (``DatasetKind.annotation``).
_CARDS = {"labels": _classify_card, "mask": _segment_card, "objects": _detect_card, "values": _regress_card}


def legend_colours(index: DatasetIndex) -> list[tuple[str, tuple[int, int, int]]] | None:
    """(class name, colour) of every class the cards draw in colour: the box classes (palette entries
    1..K, as ``_detect_card``), the mask classes but the background; None when cards draw no colours."""
    kind = index.dataset_kind
    if kind.has_boxes:
        return list(zip(index.class_names, class_colours(len(index.class_names) + 1)[1:]))
    if kind.has_masks:
        return list(zip(index.class_names, seg_colours(index.spec)))[1:]
    return None


def card_group(index: DatasetIndex, entry: Entry, unlabelled: str = NO_LABEL) -> str:
    """The section of a card: its first class when the kind groups by class, else its split."""
    if index.dataset_kind.groups_by_class:
        return entry.classes[0] if entry.classes else unlabelled
    return entry.split


def draw_card(index: DatasetIndex, entry: Entry, size: int, preds: Predictions | None) -> Card:
    from foveal.data.imageio import load_rgb

    try:
        image = load_rgb(entry.path)
        return _CARDS[index.dataset_kind.annotation](index, entry, image, size, preds)
    except DataError as err:  # an unreadable image or mask: a grey card saying why
        grey = data_uri(Image.new("RGB", (size, size), (128, 128, 128)))
        return Card(entry, card_group(index, entry), list(entry.classes), [("", grey)], f"unreadable: {err}")
