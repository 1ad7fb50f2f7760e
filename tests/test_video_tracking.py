"""The tracker on the synthetic video's ground truth, the MOT metrics against py-motmetrics, and
line counting."""

from __future__ import annotations

import numpy as np
import pytest

from foveal.data.synth_video import generate_video
from foveal.data.synthetic import CLASSES
from foveal.video.counting import TrackLog, centre_line
from foveal.video.mot import FrameBoxes, clear_mot, motmetrics_summary
from foveal.video.tracking import ByteTracker, KalmanBox, iou_matrix


def _track_truth(seed: int, drop: float, jitter: float, frames: int = 150, objects: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    tracker, truth, found = ByteTracker(), [], []
    for _, objs in generate_video(frames, 128, objects, seed=seed):
        boxes = np.array([o["box"] for o in objs]).reshape(-1, 4)
        labels = np.array([CLASSES.index(o["class"]) for o in objs], dtype=np.int64)
        truth.append(FrameBoxes.of([o["id"] for o in objs], boxes))
        keep = rng.random(len(objs)) >= drop
        noisy = boxes + rng.normal(0, jitter, boxes.shape)
        scores = rng.uniform(0.6, 0.95, len(objs))
        out = tracker.update(noisy[keep], scores[keep], labels[keep])
        found.append(FrameBoxes.of([t.track_id for t in out], [t.box for t in out]))
    return clear_mot(truth, found)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tracker_on_ground_truth_boxes(seed: int) -> None:
    exact = _track_truth(seed, drop=0.0, jitter=0.0)
    assert exact["id_switches"] == 0 and exact["mota"] >= 0.99 and exact["hyp_ids"] == exact["gt_ids"]
    noisy = _track_truth(seed, drop=0.05, jitter=1.0)
    assert noisy["id_switches"] == 0 and noisy["fp"] == 0
    assert noisy["mota"] >= 0.9  # the dropped 5% are misses
    assert noisy["motp"] > 0.9


def test_tracker_ids_low_scores_and_max_age() -> None:
    tracker = ByteTracker(min_hits=2, max_age=2)
    box = np.array([[10.0, 10.0, 30.0, 30.0]])
    first = tracker.update(box, [0.9], [0])  # the stream's first frame confirms at once
    assert [t.track_id for t in first] == [1]
    assert tracker.update(box + 1, [0.3], [0])[0].track_id == 1  # a low score continues a track
    assert tracker.update(box + 2, [0.3], [1]) == []  # another class does not
    new = [tracker.update(np.array([[60.0, 60, 80, 80]]) + i, [0.9], [2]) for i in range(2)]
    assert new[0] == [] and [t.track_id for t in new[1]] == [2]  # tentative, then confirmed as id 2
    for _ in range(3):
        tracker.update(np.zeros((0, 4)), [], [])
    assert tracker.tracks == []  # lost longer than max_age


def test_kalman_follows_constant_velocity() -> None:
    kalman = KalmanBox(np.array([0.0, 0.0, 10.0, 10.0]))
    for step in range(1, 20):
        kalman.predict()
        kalman.update(np.array([2.0 * step, step, 10 + 2.0 * step, 10 + step]))
    kalman.predict()
    assert np.allclose(kalman.box, [40, 20, 50, 30], atol=0.5)


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]], dtype=float)
    assert np.allclose(iou_matrix(a, b), [[1 / 3, 1.0], [0.0, 0.0]])


def _random_sequence(rng: np.random.Generator, frames: int = 40, n: int = 5) -> tuple[list, list]:
    pos, vel = rng.uniform(0, 80, (n, 2)), rng.normal(0, 2, (n, 2))
    perm, truth, found = np.arange(n), [], []
    for t in range(frames):
        p = pos + vel * t
        boxes = np.concatenate([p, p + 20], 1)
        present = rng.random(n) > 0.1
        truth.append(FrameBoxes.of(np.arange(n)[present], boxes[present]))
        if rng.random() < 0.1:
            perm = rng.permutation(n)  # identity swaps
        kept = rng.random(n) > 0.15
        noisy = boxes + rng.normal(0, 3, boxes.shape)
        extra = rng.uniform(0, 100, (int(rng.integers(0, 3)), 2))
        hyp = np.concatenate([noisy[kept], np.concatenate([extra, extra + 20], 1)])
        found.append(FrameBoxes.of([*(perm[kept] + 10), *range(100 + 3 * t, 100 + 3 * t + len(extra))], hyp))
    return truth, found


def _hand_made() -> tuple[list, list]:
    box = np.array([[0.0, 0, 10, 10]])
    other = np.array([[50.0, 50, 60, 60]])
    truth = [FrameBoxes.of([1, 2], np.concatenate([box + t, other])) for t in range(6)]
    found = [
        FrameBoxes.of([7, 8], np.concatenate([box, other])),
        FrameBoxes.of([7, 8], np.concatenate([box + 1, other])),
        FrameBoxes.of([8], other),  # object 1 missed
        FrameBoxes.of([9, 8, 5], np.concatenate([box + 3, other, box + 40])),  # 1 -> 9: a switch; a FP
        FrameBoxes.of([8, 9], np.concatenate([box + 4, other])),  # ids exchanged: two switches
        FrameBoxes.of([], np.zeros((0, 4))),
    ]
    return truth, found


def test_clear_mot_hand_made() -> None:
    metrics = clear_mot(*_hand_made())
    assert (metrics["fn"], metrics["fp"], metrics["id_switches"]) == (3, 1, 3)
    assert metrics["mota"] == pytest.approx(1 - 7 / 12)


@pytest.mark.parametrize("seed", range(6))
def test_clear_mot_matches_motmetrics(seed: int) -> None:
    pytest.importorskip("motmetrics", reason="py-motmetrics (the reference) is not installed")
    truth, found = _hand_made() if seed == 0 else _random_sequence(np.random.default_rng(seed))
    ours, reference = clear_mot(truth, found), motmetrics_summary(truth, found)
    for key in ("id_switches", "fp", "fn", "fragmentations"):
        assert ours[key] == reference[key], key
    for key in ("mota", "motp", "idf1"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-9), key


def test_line_crossings() -> None:
    log = TrackLog(["circle", "square"], centre_line((100, 50)))
    path = [10, 40, 49.5, 50.5, 60, 90, 30]  # right, jitter on the line, right, then back left
    events = [log.add(i, 1, np.array([x - 5, 20, x + 5, 30]), 0.9, 0) for i, x in enumerate(path)]
    assert [e for e in events if e] == ["positive", "negative"]
    log.add(0, 2, np.array([0, 0, 10, 10]), 0.8, 1)
    counts = log.counts()
    assert counts["tracks_by_class"] == {"circle": 1, "square": 1}
    assert counts["crossings"] == {"positive": 1, "negative": 1, "tracks": 1}
    assert log.document()[0]["trajectory"][0] == [0, [5.0, 20.0, 15.0, 30.0], 0.9]
