"""A synthetic video of moving shapes with known identities, for testing and benchmarking trackers.

The shapes are drawn as in the synthetic detection data (``foveal.data.synthetic``: same classes,
sizes, colours, background texture and pixel noise), so a detector trained on ``foveal data synth
--format coco`` at the same image size finds them. Each object keeps its class, size, rotation and
colour and moves at a constant velocity, bouncing off the frame's borders (it stays inside the
frame); objects may cross and hide each other (later ids are drawn on top). The pixel noise is
drawn anew in every frame.

Ground truth per frame: the objects at least ``MIN_VISIBLE`` visible, each as {"id", "class", "box"}
(box: the tight xyxy box of its visible pixels, absolute pixels, pixel-edge coordinates) with its
"visible" fraction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foveal.data.synthetic import (
    CLASSES,
    MIN_BG_DISTANCE,
    MIN_OBJ_DISTANCE,
    draw_background,
    mask_box,
    pick_colour,
    shape_mask,
    shape_outline,
)
from foveal.errors import ConfigError, DataError

MIN_VISIBLE = 0.5
_SIZE = (0.25, 0.45)  # circumscribed diameter / frame size
_SPEED = (0.01, 0.03)  # pixels per frame / frame size


@dataclass
class MovingShape:
    """One object of the video: ``id`` (1..), class index ``cls``, circumradius ``r``, ``outline``
    (V, 2) around its centre, ``colour`` (3,), centre ``pos`` (2,) and ``vel`` (2,) in pixels per frame."""

    id: int
    cls: int
    r: float
    outline: np.ndarray
    colour: np.ndarray
    pos: np.ndarray
    vel: np.ndarray

    def step(self, imgsz: int) -> None:
        """Move one frame, bouncing off the borders (the centre stays ``r`` inside)."""
        self.pos = self.pos + self.vel
        for axis in range(2):
            lo, hi = self.r, imgsz - self.r
            if self.pos[axis] < lo or self.pos[axis] > hi:
                self.pos[axis] = 2 * (lo if self.pos[axis] < lo else hi) - self.pos[axis]
                self.vel[axis] = -self.vel[axis]


def _objects(rng: np.random.Generator, imgsz: int, n: int, base: np.ndarray) -> list[MovingShape]:
    shapes: list[MovingShape] = []
    for i in range(n):
        cls = i % len(CLASSES) if n <= len(CLASSES) else int(rng.integers(len(CLASSES)))
        r = rng.uniform(*_SIZE) * imgsz / 2
        colour = pick_colour(rng, [base, *(s.colour for s in shapes)],
                             [MIN_BG_DISTANCE] + [MIN_OBJ_DISTANCE] * len(shapes))  # fmt: skip
        angle = rng.uniform(0, 2 * np.pi)
        vel = rng.uniform(*_SPEED) * imgsz * np.array([np.cos(angle), np.sin(angle)])
        pos = rng.uniform(r, imgsz - r, 2)
        shapes.append(MovingShape(i + 1, cls, r, shape_outline(cls, rng, r), colour, pos, vel))
    return shapes


def generate_video(
    frames: int = 60, imgsz: int = 64, objects: int = 3, seed: int = 0
) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    """Yield ``frames`` pairs (image (imgsz, imgsz, 3) uint8 RGB, ground truth of the frame); the same
    video for the same arguments. ``objects`` shapes (classes cycling through the four when at most
    four). Arguments are checked at call time."""
    if frames < 1 or objects < 1 or imgsz < 32:
        raise ConfigError(f"frames {frames}, objects {objects}, imgsz {imgsz}: need >= 1, >= 1 and >= 32")
    return _frames(frames, imgsz, objects, np.random.default_rng(seed))


def _frames(frames: int, imgsz: int, n: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, list]]:
    background, base = draw_background(rng, imgsz)
    shapes = _objects(rng, imgsz, n, base)
    noise = rng.uniform(8.0, 20.0)
    yy, xx = np.mgrid[0:imgsz, 0:imgsz].astype(np.float32)
    for _ in range(frames):
        canvas = background.copy()
        masks = [shape_mask(s.cls, s.outline, *s.pos, s.r, imgsz) for s in shapes]
        for s, mask in zip(shapes, masks, strict=True):  # later ids on top
            shade = ((xx - s.pos[0]) + (yy - s.pos[1])) / (2 * s.r) * 8.0
            canvas[mask] = s.colour + shade[mask][:, None]
        canvas += (rng.random(canvas.shape, dtype=np.float32) - 0.5) * noise
        truth = []
        for i, (s, mask) in enumerate(zip(shapes, masks, strict=True)):
            visible = mask.copy()
            for later in masks[i + 1 :]:
                visible &= ~later
            fraction = visible.sum() / max(1, mask.sum())
            if fraction >= MIN_VISIBLE:
                box = [float(v) for v in mask_box(visible)]
                truth.append(
                    {"id": s.id, "class": CLASSES[s.cls], "box": box, "visible": round(float(fraction), 3)}
                )
        yield np.clip(np.rint(canvas), 0, 255).astype(np.uint8), truth
        for s in shapes:
            s.step(imgsz)


def write_synthetic_video(
    out: str | Path,
    frames: int = 60,
    imgsz: int = 64,
    objects: int = 3,
    seed: int = 0,
    fps: float = 25.0,
    as_frames: bool = False,
) -> Path:
    """Write the moving-shapes video into the new or empty folder ``out``: ``video.mp4`` (or, with
    ``as_frames``, ``frames/000000.png``, ...) and ``truth.json`` ({"fps", "size", "classes",
    "frames": one list of {"id", "class", "box", "visible"} per frame}). Returns ``out``."""
    from PIL import Image

    from foveal.atomic import atomic_write_text
    from foveal.data.video_io import VideoWriter
    from foveal.serialize import dumps

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder '{out}' is not empty; choose an empty or new folder")
    truth = []
    video = generate_video(frames, imgsz, objects, seed)
    if as_frames:
        (out / "frames").mkdir(parents=True)
        for i, (image, objs) in enumerate(video):
            Image.fromarray(image).save(out / "frames" / f"{i:06d}.png")
            truth.append(objs)
    else:
        with VideoWriter(out / "video.mp4", fps) as writer:
            for image, objs in video:
                writer.write(Image.fromarray(image))
                truth.append(objs)
    doc = {"fps": fps, "size": [imgsz, imgsz], "classes": list(CLASSES), "seed": seed, "frames": truth}
    atomic_write_text(out / "truth.json", dumps(doc))
    return out
