"""Counting tracks that cross a line, and the per-track trajectories written to ``tracks.json``.

A crossing is a change of side of a track's box centre between two frames it was observed in. The
line (x1, y1, x2, y2) in frame pixels is treated as infinite; "positive" crossings go towards the
side its normal (y2 - y1, x1 - x2) points to: for the default line, the frame's vertical centre line
drawn top to bottom, that is left to right. A centre within ``margin`` pixels of the line keeps the
side it had, so jitter around the line is not counted as crossings back and forth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def centre_line(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The vertical centre line (top to bottom) of a frame of ``size`` (width, height)."""
    width, height = size
    return (width / 2, 0.0, width / 2, float(height))


class TrackLog:
    """Trajectories of confirmed tracks and their crossings of ``line``."""

    def __init__(self, class_names: Sequence[str], line: Sequence[float], margin: float = 1.0) -> None:
        if len(line) != 4 or (line[0], line[1]) == (line[2], line[3]):
            from foveal.errors import ConfigError

            raise ConfigError(f"line {list(line)}: need x1,y1,x2,y2 with two distinct points (pixels)")
        self.class_names, self.line, self.margin = list(class_names), [float(v) for v in line], margin
        self.tracks: dict[int, dict[str, Any]] = {}
        self._side: dict[int, int] = {}

    def _signed_distance(self, point: np.ndarray) -> float:
        x1, y1, x2, y2 = self.line
        normal = np.array([y2 - y1, x1 - x2])
        return float(np.dot(point - np.array([x1, y1]), normal) / np.linalg.norm(normal))

    def add(self, frame: int, track_id: int, box: np.ndarray, score: float, label: int) -> str | None:
        """Record one observation; returns "positive"/"negative" when the track crossed the line."""
        track = self.tracks.setdefault(
            track_id,
            {
                "id": track_id,
                "class": self.class_names[label],
                "first_frame": frame,
                "trajectory": [],
                "crossings": [],
            },
        )
        track["last_frame"] = frame
        track["trajectory"].append([frame, [round(float(v), 2) for v in box], round(float(score), 4)])
        distance = self._signed_distance((np.asarray(box[:2]) + np.asarray(box[2:])) / 2)
        side = 0 if abs(distance) <= self.margin else (1 if distance > 0 else -1)
        before = self._side.get(track_id, 0)
        if side == 0:
            return None
        self._side[track_id] = side
        if before and side != before:
            direction = "positive" if side > 0 else "negative"
            track["crossings"].append([frame, direction])
            return direction
        return None

    def counts(self) -> dict[str, Any]:
        """Unique confirmed tracks per class, and crossings of the line per class and direction
        (with the tracks that crossed at least once)."""
        tracks: dict[str, int] = {}
        crossings: dict[str, dict[str, int]] = {}
        for track in self.tracks.values():
            name = track["class"]
            tracks[name] = tracks.get(name, 0) + 1
            per = crossings.setdefault(name, {"positive": 0, "negative": 0, "tracks": 0})
            for _, direction in track["crossings"]:
                per[direction] += 1
            per["tracks"] += bool(track["crossings"])
        total = {
            key: sum(per[key] for per in crossings.values()) for key in ("positive", "negative", "tracks")
        }
        return {
            "tracks": len(self.tracks),
            "tracks_by_class": tracks,
            "line": self.line,
            "crossings_by_class": {k: v for k, v in crossings.items() if v["tracks"]},
            "crossings": total,
        }

    def document(self) -> list[dict[str, Any]]:
        """Every track (by id): id, class, first_frame, last_frame, trajectory [[frame, box, score]],
        crossings [[frame, direction]]."""
        return [self.tracks[k] for k in sorted(self.tracks)]
