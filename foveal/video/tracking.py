"""Multi-object tracking by detection in the spirit of ByteTrack (Zhang et al., ECCV 2022) over SORT
(Bewley et al., 2016): one constant-velocity Kalman filter per track and IoU association with the
Hungarian method, in two stages by detection score. Pure numpy/scipy and deterministic.

Per frame (:meth:`ByteTracker.update`), with boxes xyxy absolute pixels:

1. every track's Kalman filter predicts its box in this frame;
2. detections scoring >= ``high_score`` are matched to the confirmed tracks (tracked and lost) on
   IoU >= ``match_iou``;
3. detections scoring in [``low_score``, ``high_score``) are matched to the confirmed tracks still
   unmatched that were tracked in the previous frame, on IoU >= ``low_match_iou`` (ByteTrack's
   second association: occluded, blurred objects score low but still continue a track);
4. high-score detections left are matched to the tentative tracks (IoU >= ``tentative_iou``); a
   tentative track that finds no detection is dropped;
5. high-score detections left are matched to the lost tracks by centre distance: within
   ``recover_dist`` times the track's last box diagonal of its predicted or last observed centre
   (objects hidden for a while reappear where neither IoU nor a velocity extrapolated from
   partly hidden boxes expects them); 0 turns this stage off;
6. high-score detections left scoring >= ``new_score`` start tentative tracks; a tentative track
   is confirmed after ``min_hits`` consecutive matched frames (on the stream's first frame at once);
7. a confirmed track without a match is lost, and removed after ``max_age`` frames without one.

With ``class_aware`` a detection only matches a track of its class. Track ids are 1, 2, ... in the
order tracks are confirmed (tentative tracks that die never take an id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_POS, _VEL = 1.0 / 20, 1.0 / 160  # Kalman noise per unit of box size (ByteTrack's weights)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, column) of the Hungarian assignment maximising the total IoU among pairs with
    IoU >= ``threshold`` (others are never matched)."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return []
    cost = np.where(iou >= threshold, 1.0 - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


def _xywh(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


class KalmanBox:
    """A constant-velocity Kalman filter of one box: state (cx, cy, w, h, vx, vy, vw, vh) in pixels and
    pixels per frame; noise proportional to the box's size (width for x and w, height for y and h)."""

    def __init__(self, box: np.ndarray) -> None:
        z = _xywh(np.asarray(box, dtype=np.float64))
        self.mean = np.concatenate([z, np.zeros(4)])
        w, h = max(z[2], 1.0), max(z[3], 1.0)
        std = np.array(
            [
                2 * _POS * w,
                2 * _POS * h,
                2 * _POS * w,
                2 * _POS * h,
                10 * _VEL * w,
                10 * _VEL * h,
                10 * _VEL * w,
                10 * _VEL * h,
            ]
        )
        self.cov = np.diag(std**2)

    def _scale(self, weight: float) -> np.ndarray:
        w, h = max(self.mean[2], 1.0), max(self.mean[3], 1.0)
        return weight * np.array([w, h, w, h])

    def predict(self) -> None:
        """Advance one frame."""
        q = np.diag(np.concatenate([self._scale(_POS), self._scale(_VEL)]) ** 2)
        self.mean[:4] += self.mean[4:]
        self.mean[2:4] = np.maximum(self.mean[2:4], 1.0)
        f = np.eye(8)
        f[:4, 4:] = np.eye(4)
        self.cov = f @ self.cov @ f.T + q

    def update(self, box: np.ndarray) -> None:
        """Correct the state with an observed box (xyxy)."""
        r = np.diag(self._scale(_POS) ** 2)
        s = self.cov[:4, :4] + r
        gain = np.linalg.solve(s, self.cov[:4, :]).T  # (8, 4) = P H^T S^-1 (S symmetric)
        self.mean = self.mean + gain @ (_xywh(np.asarray(box, dtype=np.float64)) - self.mean[:4])
        self.cov = self.cov - gain @ self.cov[:4, :]

    @property
    def box(self) -> np.ndarray:
        """The state's box, xyxy."""
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class Track:
    """One tracked object: ``id`` (0 while tentative), class index ``label``, ``state`` ("tentative",
    "tracked", "lost"), ``hits`` (consecutive matched frames while tentative, then all matched frames),
    ``missed`` (frames since the last match) and the last matched ``box`` (xyxy) and ``score``."""

    label: int
    box: np.ndarray
    score: float
    frame: int
    kalman: KalmanBox
    id: int = 0
    state: str = "tentative"
    hits: int = 1
    missed: int = 0
    first_frame: int = field(default=-1)

    def __post_init__(self) -> None:
        self.first_frame = self.frame


@dataclass(frozen=True)
class TrackedBox:
    """A confirmed track's box in one frame: ``track_id``, ``box`` (4,) xyxy, ``score``, ``label``
    (class index) and ``detection``, the index of the detection it came from in this frame's input."""

    track_id: int
    box: np.ndarray
    score: float
    label: int
    detection: int


class ByteTracker:
    """The tracker; feed it each frame's detections in order with :meth:`update`. Parameters as in
    the module's description (defaults follow ByteTrack's MOT17 settings; ``match_iou`` 0.2 is its
    ``match_thresh`` 0.8 on 1 - IoU)."""

    def __init__(
        self,
        *,
        high_score: float = 0.5,
        low_score: float = 0.1,
        new_score: float = 0.6,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        tentative_iou: float = 0.3,
        min_hits: int = 2,
        max_age: int = 30,
        recover_dist: float = 1.0,
        class_aware: bool = True,
    ) -> None:
        self.high_score, self.low_score, self.new_score = high_score, low_score, new_score
        self.match_iou, self.low_match_iou, self.tentative_iou = match_iou, low_match_iou, tentative_iou
        self.min_hits, self.max_age, self.class_aware = min_hits, max_age, class_aware
        self.recover_dist = recover_dist
        self.tracks: list[Track] = []
        self.next_id = 1
        self.frames = 0

    def _iou(self, tracks: list[Track], boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        iou = iou_matrix(np.array([t.kalman.box for t in tracks]).reshape(-1, 4), boxes)
        if self.class_aware and iou.size:
            iou = np.where(np.array([t.label for t in tracks])[:, None] == labels[None, :], iou, 0.0)
        return iou

    def _associate(
        self, tracks: list[Track], dets: list[int], boxes: np.ndarray, labels: np.ndarray, threshold: float
    ) -> tuple[list[tuple[Track, int]], list[Track], list[int]]:
        pairs = match(self._iou(tracks, boxes[dets], labels[dets]), threshold)
        matched = [(tracks[r], dets[c]) for r, c in pairs]
        used_t, used_d = {r for r, _ in pairs}, {c for _, c in pairs}
        left_t = [t for i, t in enumerate(tracks) if i not in used_t]
        return matched, left_t, [d for j, d in enumerate(dets) if j not in used_d]

    def _recover(
        self, tracks: list[Track], dets: list[int], boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[list[tuple[Track, int]], list[int]]:
        """Lost tracks and high-score detections left, paired by the distance of the detection's
        centre to the track's predicted or last observed centre, within ``recover_dist`` times the
        track's last box diagonal (Hungarian on that distance; same class when ``class_aware``)."""
        from scipy.optimize import linear_sum_assignment

        if not tracks or not dets or self.recover_dist <= 0:
            return [], dets
        centres = (boxes[dets, :2] + boxes[dets, 2:]) / 2
        cost = np.full((len(tracks), len(dets)), np.inf)
        for i, t in enumerate(tracks):
            seen = [(t.box[:2] + t.box[2:]) / 2, t.kalman.mean[:2]]
            dist = np.min([np.linalg.norm(centres - c, axis=1) for c in seen], axis=0)
            scale = float(np.hypot(*(t.box[2:] - t.box[:2])))
            ok = dist <= self.recover_dist * scale
            if self.class_aware:
                ok &= labels[dets] == t.label
            cost[i, ok] = dist[ok] / max(scale, 1e-6)
        rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
        pairs = [(tracks[r], dets[c]) for r, c in zip(rows, cols, strict=True) if np.isfinite(cost[r, c])]
        used = {d for _, d in pairs}
        return pairs, [d for d in dets if d not in used]

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[TrackedBox]:
        """One frame's detections: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,) class
        indices. Returns the confirmed tracks matched in this frame, by track id."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        frame, first = self.frames, self.frames == 0
        self.frames += 1
        for track in self.tracks:
            track.kalman.predict()
        high = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= self.high_score]
        low = [i for i in np.argsort(-scores, kind="stable") if self.low_score <= scores[i] < self.high_score]
        confirmed = [t for t in self.tracks if t.state != "tentative"]
        tentative = [t for t in self.tracks if t.state == "tentative"]
        matched, left, high = self._associate(confirmed, high, boxes, labels, self.match_iou)
        recent = [t for t in left if t.state == "tracked"]
        more, _, _ = self._associate(recent, low, boxes, labels, self.low_match_iou)
        found, _, high = self._associate(tentative, high, boxes, labels, self.tentative_iou)
        lost = [t for t in left if t.state == "lost" and id(t) not in {id(m) for m, _ in more}]
        back, high = self._recover(lost, high, boxes, labels)
        matched += more + found + back
        hit = {id(t) for t, _ in matched}
        for track, d in matched:
            track.kalman.update(boxes[d])
            track.box, track.score, track.frame, track.missed = boxes[d].copy(), float(scores[d]), frame, 0
            track.hits += 1
            if track.state == "tentative" and track.hits >= self.min_hits:
                self._confirm(track)
            elif track.state == "lost":
                track.state = "tracked"
        kept = []
        for track in self.tracks:
            if id(track) in hit:
                kept.append(track)
            elif track.state != "tentative":
                track.missed += 1
                if track.state == "tracked":
                    track.kalman.mean[6:] = 0.0  # a hidden object's box size is not extrapolated
                track.state = "lost"
                if track.missed <= self.max_age:
                    kept.append(track)
        for d in high:
            if scores[d] >= self.new_score:
                track = Track(int(labels[d]), boxes[d].copy(), float(scores[d]), frame, KalmanBox(boxes[d]))
                if first or self.min_hits <= 1:
                    self._confirm(track)
                matched.append((track, d))
                kept.append(track)
        self.tracks = kept
        out = [TrackedBox(t.id, t.box, t.score, t.label, d) for t, d in matched if t.state == "tracked"]
        return sorted(out, key=lambda b: b.track_id)

    def _confirm(self, track: Track) -> None:
        track.state, track.id = "tracked", self.next_id
        self.next_id += 1
