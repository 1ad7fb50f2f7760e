"""CLEAR-MOT metrics (Bernardin & Stiefelhagen, 2008) and IDF1 (Ristani et al., 2016) of a tracker's
output against ground truth, with py-motmetrics' semantics (its ``MOTAccumulator`` with an IoU
distance and ``max_iou = 1 - iou``):

per frame, a ground-truth object and a hypothesis may be paired when their IoU >= ``iou``; pairs
of the previous correspondence that still qualify are kept, the rest are matched by the Hungarian
method (minimum total 1 - IoU). A match whose object was last matched to another hypothesis is an
ID switch. Unmatched objects are misses (FN), unmatched hypotheses false positives (FP).

MOTA = 1 - (FN + FP + IDSW) / ground-truth boxes; MOTP (here) = mean IoU of the matches (motmetrics
reports 1 - that); fragmentations = times a ground-truth track goes from tracked to missed within
its tracked span; IDF1 = 2 IDTP / (ground-truth boxes + hypothesis boxes), IDTP from the one-to-one
assignment of whole trajectories that maximises the frames they match (IoU >= ``iou``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from foveal.video.tracking import iou_matrix


@dataclass(frozen=True)
class FrameBoxes:
    """One frame's identified boxes: ``ids`` (N,) ints and ``boxes`` (N, 4) xyxy pixels."""

    ids: np.ndarray
    boxes: np.ndarray

    @classmethod
    def of(cls, ids: Sequence[int], boxes: Any) -> FrameBoxes:
        return cls(
            np.asarray(ids, dtype=np.int64).reshape(-1), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        )


def _hungarian(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return []
    cost = np.where(iou >= threshold, 1.0 - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


def clear_mot(truth: Sequence[FrameBoxes], found: Sequence[FrameBoxes], iou: float = 0.5) -> dict[str, Any]:
    """The metrics of ``found`` (the tracker's boxes per frame) against ``truth`` (same frames, in
    order): mota, motp (mean IoU of matches), idf1, id_switches, fp, fn, fragmentations, matches,
    gt (ground-truth boxes), hyp (hypothesis boxes), frames, gt_ids, hyp_ids."""
    if len(truth) != len(found):
        raise ValueError(f"{len(truth)} ground-truth frames but {len(found)} tracker frames")
    mapping: dict[int, int] = {}
    fp = fn = switches = matches = gt_boxes = hyp_boxes = 0
    iou_sum = 0.0
    tracked: dict[int, list[bool]] = {}  # per object, matched or not in each frame it appears in
    pair_frames: dict[tuple[int, int], int] = {}
    for gt, hyp in zip(truth, found, strict=True):
        overlap = iou_matrix(gt.boxes, hyp.boxes)
        gt_boxes, hyp_boxes = gt_boxes + len(gt.ids), hyp_boxes + len(hyp.ids)
        for i, j in zip(*np.nonzero(overlap >= iou), strict=True):
            key = (int(gt.ids[i]), int(hyp.ids[j]))
            pair_frames[key] = pair_frames.get(key, 0) + 1
        pairs: list[tuple[int, int]] = []
        free_gt, free_hyp = np.ones(len(gt.ids), bool), np.ones(len(hyp.ids), bool)
        hyp_index = {int(h): j for j, h in enumerate(hyp.ids)}
        for i, o in enumerate(gt.ids):
            j = hyp_index.get(mapping.get(int(o), -1))
            if j is not None and free_hyp[j] and overlap[i, j] >= iou:
                pairs.append((i, j))
                free_gt[i] = free_hyp[j] = False
        rest_gt, rest_hyp = np.flatnonzero(free_gt), np.flatnonzero(free_hyp)
        for r, c in _hungarian(overlap[np.ix_(rest_gt, rest_hyp)], iou):
            i, j = int(rest_gt[r]), int(rest_hyp[c])
            o, h = int(gt.ids[i]), int(hyp.ids[j])
            switches += o in mapping and mapping[o] != h
            pairs.append((i, j))
            free_gt[i] = free_hyp[j] = False
        for i, j in pairs:
            mapping[int(gt.ids[i])] = int(hyp.ids[j])
            iou_sum += float(overlap[i, j])
        matches += len(pairs)
        fn, fp = fn + int(free_gt.sum()), fp + int(free_hyp.sum())
        for i, o in enumerate(gt.ids):
            tracked.setdefault(int(o), []).append(not free_gt[i])
    mota = 1.0 - (fn + fp + switches) / gt_boxes if gt_boxes else float("nan")
    return {
        "mota": mota,
        "motp": iou_sum / matches if matches else float("nan"),
        "idf1": _idf1(pair_frames, gt_boxes, hyp_boxes),
        "id_switches": switches,
        "fp": fp,
        "fn": fn,
        "fragmentations": sum(_fragments(states) for states in tracked.values()),
        "matches": matches,
        "gt": gt_boxes,
        "hyp": hyp_boxes,
        "frames": len(truth),
        "gt_ids": len(tracked),
        "hyp_ids": len({int(h) for frame in found for h in frame.ids}),
    }


def _fragments(states: list[bool]) -> int:
    """Tracked -> missed transitions between the first and the last tracked frame."""
    on = [i for i, s in enumerate(states) if s]
    if not on:
        return 0
    span = states[on[0] : on[-1] + 1]
    return sum(1 for a, b in zip(span, span[1:]) if a and not b)


def _idf1(pair_frames: dict[tuple[int, int], int], gt_boxes: int, hyp_boxes: int) -> float:
    from scipy.optimize import linear_sum_assignment

    if gt_boxes + hyp_boxes == 0:
        return float("nan")
    if not pair_frames:
        return 0.0
    gts = sorted({o for o, _ in pair_frames})
    hyps = sorted({h for _, h in pair_frames})
    gain = np.zeros((len(gts), len(hyps)))
    row, col = {o: i for i, o in enumerate(gts)}, {h: j for j, h in enumerate(hyps)}
    for (o, h), n in pair_frames.items():
        gain[row[o], col[h]] = n
    rows, cols = linear_sum_assignment(-gain)
    return 2.0 * float(gain[rows, cols].sum()) / (gt_boxes + hyp_boxes)


def motmetrics_summary(truth: Sequence[FrameBoxes], found: Sequence[FrameBoxes], iou: float = 0.5) -> dict:
    """The same metrics computed by py-motmetrics (the reference; ``pip install motmetrics``):
    mota, motp (as mean IoU), idf1, id_switches, fp, fn, fragmentations."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for gt, hyp in zip(truth, found, strict=True):
        # motmetrics 1.4's own iou_matrix uses np.asfarray, gone in numpy 2: the same distances here
        overlap = iou_matrix(gt.boxes, hyp.boxes)
        dists = np.where(overlap >= iou, 1.0 - overlap, np.nan)
        acc.update(gt.ids.tolist(), hyp.ids.tolist(), dists)
    names = [
        "mota",
        "motp",
        "idf1",
        "num_switches",
        "num_false_positives",
        "num_misses",
        "num_fragmentations",
    ]
    row = mm.metrics.create().compute(acc, metrics=names, name="x").iloc[0]
    return {
        "mota": float(row["mota"]),
        "motp": 1.0 - float(row["motp"]),
        "idf1": float(row["idf1"]),
        "id_switches": int(row["num_switches"]),
        "fp": int(row["num_false_positives"]),
        "fn": int(row["num_misses"]),
        "fragmentations": int(row["num_fragmentations"]),
    }
