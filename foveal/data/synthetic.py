"""The embedded "shapes" dataset: textured scenes of circles, squares, triangles and stars.

One deterministic generator gives every task's targets at once: the class of each object, its
instance mask, its box, its keypoints and the scene's semantic map. Colour, size, position and
rotation are drawn independently of the class, so only the shape tells the classes apart.
Shapes are drawn without anti-aliasing, so masks match the drawn pixels exactly.

The "arrows" scenes (``generate_arrows``) are orientation-sensitive: one arrow per image whose class
is the direction it points (``ARROW_CLASSES``), so a horizontal flip swaps left and right and a
vertical flip swaps up and down, where every flip of a shape is the same shape.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from foveal.errors import ConfigError

CLASSES = ("circle", "square", "triangle", "star")
KEYPOINTS_PER_CLASS = (0, 4, 3, 0)
"""Keypoints per class (vertices, clockwise on screen, starting with the topmost)."""
MAX_KEYPOINTS = max(KEYPOINTS_PER_CLASS)
KEYPOINT_NAMES = tuple(f"vertex_{i + 1}" for i in range(MAX_KEYPOINTS))
SKELETONS = ((), ((0, 1), (1, 2), (2, 3), (3, 0)), ((0, 1), (1, 2), (2, 0)), ())
"""Edges between keypoint indices (0-based) per class."""

ARROW_CLASSES = ("left", "right", "up", "down")
_ARROW_ANGLES = (np.pi, 0.0, -np.pi / 2, np.pi / 2)  # screen angles (y down) of ARROW_CLASSES
_ARROW_JITTER = np.pi / 12  # +-15 degrees around the class direction
_ARROW_LENGTH = (0.5, 0.85)  # tip-to-tail length / image size

_SINGLE_SIZE = (0.35, 0.80)  # circumscribed diameter / image size, single-object scenes
_MULTI_SIZE = (0.25, 0.50)  # same, multi-object scenes
_MIN_VISIBLE = 0.5  # every object keeps at least this fraction of its area visible
_PLACEMENT_TRIES = 30
_MIN_BG_DISTANCE = 150.0  # RGB distance between an object's colour and the background colour
_MIN_OBJ_DISTANCE = 70.0  # RGB distance between colours of objects in one scene


@dataclass
class ShapeObject:
    """One drawn object.

    ``box``: (4,) float32 xyxy in absolute pixels, the tight box of ``mask`` with pixel-edge
    coordinates (a mask spanning columns x0..x1 gives x0 and x1 + 1).
    ``mask``: (H, W) bool, the visible pixels (parts hidden by later objects are removed).
    ``keypoints``: (K, 3) float32 rows of x, y, visibility (COCO: 2 visible, 1 occluded,
    0 outside the image, then x = y = 0); K is ``KEYPOINTS_PER_CLASS[cls]``.
    """

    cls: int
    box: np.ndarray
    mask: np.ndarray
    keypoints: np.ndarray


@dataclass
class Scene:
    """One image with its objects.

    ``image``: (H, W, 3) uint8 RGB. ``semantic``: (H, W) uint8, 0 background and ``cls + 1`` on
    each object's visible pixels (later objects are drawn on top).
    """

    image: np.ndarray
    objects: list[ShapeObject]
    semantic: np.ndarray


@functools.lru_cache(maxsize=8)
def _grids(imgsz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre grids ``xx, yy`` (H, W) and a (imgsz, 4) bilinear upsampling matrix."""
    centres = np.arange(imgsz, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    pos = centres / imgsz * 3.0  # 4 control points spread over the image
    up = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(4, dtype=np.float32)[None, :]))
    return xx, yy, up.astype(np.float32)


def _background(rng: np.random.Generator, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W, 3) float32 background (gradient + low-frequency blobs) and its base colour."""
    xx, yy, up = _grids(imgsz)
    base = rng.uniform(0.0, 255.0, 3).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / imgsz - 0.5 * (np.cos(angle) + np.sin(angle))
    grad = rng.uniform(-25.0, 25.0, 3).astype(np.float32)
    blobs = up @ rng.normal(0.0, 10.0, (3, 4, 4)).astype(np.float32) @ up.T  # (3, H, W)
    return base + ramp[..., None] * grad + blobs.transpose(1, 2, 0), base


def _pick_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_dist: list[float]) -> np.ndarray:
    """The first of 16 random RGB colours far enough from all of ``avoid``, else the farthest one."""
    cands = rng.uniform(0.0, 255.0, (16, 3)).astype(np.float32)
    dist2 = ((cands[:, None, :] - np.stack(avoid)[None]) ** 2).sum(-1)  # (16, len(avoid))
    margin = (dist2 / np.square(min_dist, dtype=np.float32)).min(1)
    ok = np.flatnonzero(margin >= 1.0)
    return cands[ok[0]] if ok.size else cands[int(np.argmax(margin))]


def _vertices(cls: int, rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    """Polygon vertices (V, 2) of a rotated shape with circumradius ``r``; (0, 2) for a circle."""
    rot = rng.uniform(0.0, 2.0 * np.pi)
    if CLASSES[cls] == "circle":
        return np.zeros((0, 2), dtype=np.float32)
    if CLASSES[cls] == "square":
        angles, radii = rot + np.arange(4) * np.pi / 2, np.full(4, r)
    elif CLASSES[cls] == "triangle":
        angles = rot + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.15, 0.15, 3)
        radii = r * rng.uniform(0.9, 1.0, 3)
    else:  # star: 5 points, inner radius 0.45 r
        angles = rot + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.float32)


def _keypoint_order(verts: np.ndarray) -> np.ndarray:
    """Vertices reordered clockwise on screen (y down), starting with the topmost one."""
    centre = verts.mean(0)
    order = np.argsort(np.arctan2(verts[:, 1] - centre[1], verts[:, 0] - centre[0]))
    verts = verts[order]
    return np.roll(verts, -int(np.argmin(verts[:, 1])), axis=0)


def _rasterise(
    cls: int, verts: np.ndarray, cx: float, cy: float, r: float, imgsz: int, pad: int
) -> np.ndarray:
    """The full shape as a bool mask (imgsz + 2 pad)^2 on a canvas padded by ``pad`` pixels."""
    canvas = Image.new("L", (imgsz + 2 * pad, imgsz + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    if CLASSES[cls] == "circle":
        draw.ellipse([cx - r + pad, cy - r + pad, cx + r + pad, cy + r + pad], fill=1)
    else:
        draw.polygon([(float(x) + pad, float(y) + pad) for x, y in verts], fill=1)
    return np.asarray(canvas).view(bool)


def _place(
    rng: np.random.Generator, cls: int, imgsz: int, single: bool, visible: list[np.ndarray], areas: list[int]
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Draw a placement keeping earlier objects and this one at least half visible.

    Returns (mask in the image (H, W) bool, vertices (V, 2), full area) or None when no try fits.
    """
    pad = imgsz // 4  # objects reach at most 12.5% of imgsz beyond the border
    for _ in range(_PLACEMENT_TRIES):
        lo, hi = _SINGLE_SIZE if single else _MULTI_SIZE
        r = rng.uniform(lo, hi) * imgsz / 2
        margin = r if single else 0.5 * r  # multi-object scenes may cut objects at the border
        cx, cy = rng.uniform(margin, imgsz - margin, 2)
        verts = _vertices(cls, rng, cx, cy, r)
        full = _rasterise(cls, verts, cx, cy, r, imgsz, pad)
        inside = full[pad : pad + imgsz, pad : pad + imgsz].copy()
        area, area_in = np.count_nonzero(full), np.count_nonzero(inside)
        if area_in < max(1, _MIN_VISIBLE * area):
            continue
        kept = (np.count_nonzero(vis & ~inside) for vis in visible)
        if all(k >= _MIN_VISIBLE * a for k, a in zip(kept, areas, strict=True)):
            return inside, verts, area
    return None


def _box(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box (4,) float32 of a non-empty (H, W) bool mask, pixel-edge coordinates."""
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def _keypoints(cls: int, verts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(K, 3) float32 keypoints: 2 where the visible mask touches the vertex pixel's 3x3 area."""
    if KEYPOINTS_PER_CLASS[cls] == 0:
        return np.zeros((0, 3), dtype=np.float32)
    h, w = mask.shape
    kps = np.zeros((len(verts), 3), dtype=np.float32)
    for i, (x, y) in enumerate(_keypoint_order(verts)):
        if not (0 <= x < w and 0 <= y < h):
            continue  # outside the image: COCO's (0, 0, 0)
        px, py = int(x), int(y)
        seen = mask[max(py - 1, 0) : py + 2, max(px - 1, 0) : px + 2].any()
        kps[i] = (x, y, 2.0 if seen else 1.0)
    return kps


def generate_scene(rng: np.random.Generator, imgsz: int = 64, n_objects: int = 1) -> Scene:
    """One random scene of ``imgsz`` x ``imgsz`` pixels drawn from ``rng``.

    ``n_objects == 1`` is the single-object mode (classification): one object whose circumscribed
    diameter is 35-80% of the image, fully inside it. Otherwise up to ``n_objects`` objects of
    25-50% that may overlap or be cut by the border, each keeping at least half its area visible
    (an object is left out only when 30 placements fail).
    """
    _check_imgsz(imgsz)
    if n_objects < 1:
        raise ConfigError(f"n_objects {n_objects} must be at least 1")
    canvas, base = _background(rng, imgsz)
    placed: list[tuple[int, np.ndarray, np.ndarray]] = []  # (cls, visible mask, vertices)
    areas: list[int] = []
    colours: list[np.ndarray] = []
    for _ in range(n_objects):
        cls = int(rng.integers(len(CLASSES)))
        found = _place(rng, cls, imgsz, n_objects == 1, [m for _, m, _ in placed], areas)
        if found is None:
            continue
        inside, verts, area = found
        colour = _pick_colour(rng, [base, *colours], [_MIN_BG_DISTANCE] + [_MIN_OBJ_DISTANCE] * len(colours))
        ys, xs = np.nonzero(inside)
        shade_dir = rng.uniform(0.0, 2.0 * np.pi)
        shade = (xs - xs.mean()) * np.cos(shade_dir) + (ys - ys.mean()) * np.sin(shade_dir)
        shade *= rng.uniform(0.0, 15.0) / max(float(np.abs(shade).max()), 1.0)  # linear, up to +-15
        canvas[ys, xs] = colour + shade[:, None].astype(np.float32)
        placed = [(c, m & ~inside, v) for c, m, v in placed] + [(cls, inside, verts)]
        areas.append(area)
        colours.append(colour)
    canvas += (rng.random(canvas.shape, dtype=np.float32) - 0.5) * rng.uniform(8.0, 20.0)  # pixel noise
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    semantic = np.zeros((imgsz, imgsz), dtype=np.uint8)
    objects = []
    for cls, mask, verts in placed:
        semantic[mask] = cls + 1
        objects.append(ShapeObject(cls, _box(mask), mask, _keypoints(cls, verts, mask)))
    return Scene(image=image, objects=objects, semantic=semantic)


def _arrow_vertices(cls: int, rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """(7, 2) polygon of an arrow pointing along ``ARROW_CLASSES[cls]`` (+-15 degrees), inside the image."""
    length = rng.uniform(*_ARROW_LENGTH) * imgsz
    shaft, head, half_head = 0.09 * length, 0.4 * length, 0.28 * length
    tip, neck = length / 2, length / 2 - head
    local = np.array(
        [
            (-tip, -shaft),
            (neck, -shaft),
            (neck, -half_head),
            (tip, 0.0),
            (neck, half_head),
            (neck, shaft),
            (-tip, shaft),
        ]
    )
    angle = _ARROW_ANGLES[cls] + rng.uniform(-_ARROW_JITTER, _ARROW_JITTER)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cx, cy = rng.uniform(tip, imgsz - tip, 2)
    return (local @ rot.T + (cx, cy)).astype(np.float32)


def generate_arrow_scene(rng: np.random.Generator, imgsz: int = 64) -> Scene:
    """One arrow of 50-85% of the image on a textured background, fully inside; its class is the
    direction it points. Same background, colours and noise as ``generate_scene``; no keypoints."""
    _check_imgsz(imgsz)
    canvas, base = _background(rng, imgsz)
    cls = int(rng.integers(len(ARROW_CLASSES)))
    verts = _arrow_vertices(cls, rng, imgsz)
    canvas_mask = Image.new("L", (imgsz, imgsz), 0)
    ImageDraw.Draw(canvas_mask).polygon([(float(x), float(y)) for x, y in verts], fill=1)
    mask = np.asarray(canvas_mask).view(bool)
    canvas[mask] = _pick_colour(rng, [base], [_MIN_BG_DISTANCE])
    canvas += (rng.random(canvas.shape, dtype=np.float32) - 0.5) * rng.uniform(8.0, 20.0)  # pixel noise
    semantic = mask.astype(np.uint8) * (cls + 1)
    obj = ShapeObject(cls, _box(mask), mask, np.zeros((0, 3), dtype=np.float32))
    return Scene(image=np.clip(np.rint(canvas), 0, 255).astype(np.uint8), objects=[obj], semantic=semantic)


def generate_arrows(n: int, imgsz: int = 64, seed: int = 0) -> Iterator[Scene]:
    """Yield ``n`` arrow scenes, the same ones for the same arguments; checked at call time."""
    if n < 0:
        raise ConfigError(f"number of scenes {n} must be 0 or more")
    _check_imgsz(imgsz)
    rng = np.random.default_rng(seed)
    return (generate_arrow_scene(rng, imgsz) for _ in range(n))


def _check_imgsz(imgsz: int) -> None:
    if imgsz < 16:
        raise ConfigError(f"imgsz {imgsz} is too small for the shapes data; use 16 or more")


def generate(
    n: int, imgsz: int = 64, seed: int = 0, single_object: bool = False, max_objects: int = 4
) -> Iterator[Scene]:
    """Yield ``n`` scenes, the same ones for the same arguments (one random stream per seed).

    Multi-object mode draws 1..``max_objects`` objects per scene (a scene that draws one object
    uses the single-object sizes of ``generate_scene``); ``single_object`` draws one per scene.
    Arguments are checked at call time (ConfigError), before the first scene.
    """
    if n < 0:
        raise ConfigError(f"number of scenes {n} must be 0 or more")
    if max_objects < 1:
        raise ConfigError(f"max_objects {max_objects} must be at least 1")
    _check_imgsz(imgsz)
    return _scenes(n, imgsz, np.random.default_rng(seed), single_object, max_objects)


def _scenes(
    n: int, imgsz: int, rng: np.random.Generator, single_object: bool, max_objects: int
) -> Iterator[Scene]:
    for _ in range(n):
        k = 1 if single_object else int(rng.integers(1, max_objects + 1))
        yield generate_scene(rng, imgsz, k)


# -- building blocks for other generators (the moving-shapes video: foveal.data.synth_video) ----------
def draw_background(rng: np.random.Generator, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """A (imgsz, imgsz, 3) float32 textured background and its (3,) base colour, as scenes have."""
    return _background(rng, imgsz)


def shape_outline(cls: int, rng: np.random.Generator, r: float) -> np.ndarray:
    """(V, 2) vertices of a randomly rotated shape of class ``cls`` and circumradius ``r`` around
    (0, 0); (0, 2) for a circle."""
    return _vertices(cls, rng, 0.0, 0.0, r)


def shape_mask(cls: int, outline: np.ndarray, cx: float, cy: float, r: float, imgsz: int) -> np.ndarray:
    """(imgsz, imgsz) bool mask of the shape ``outline`` (from :func:`shape_outline`) centred at
    (``cx``, ``cy``), drawn as scenes draw it (no anti-aliasing)."""
    return _rasterise(cls, outline + np.array([cx, cy], dtype=np.float32), cx, cy, r, imgsz, 0).copy()


def pick_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_dist: list[float]) -> np.ndarray:
    """An RGB colour (3,) float32 at least ``min_dist[i]`` from each ``avoid[i]`` when one of 16 draws is."""
    return _pick_colour(rng, avoid, min_dist)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The tight xyxy box (4,) float32 of a non-empty (H, W) bool mask, pixel-edge coordinates."""
    return _box(mask)


MIN_BG_DISTANCE, MIN_OBJ_DISTANCE = _MIN_BG_DISTANCE, _MIN_OBJ_DISTANCE
