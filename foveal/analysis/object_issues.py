"""Label issues of one image's boxes from out-of-fold detections vs its ground truth (xyxy pixels).

- ``missing``: a confident prediction (score >= ``conf``) overlapping no ground truth box by IoU >=
  ``iou`` (any class), unless it is the evidence of a badly placed box; score = prediction score x
  (1 - its best IoU with any ground truth box);
- ``wrong_class``: a confident prediction overlapping a ground truth box of another class by IoU >= ``iou``
  while no prediction of the box's own class does; score = prediction score x IoU;
- ``badly_placed``: a ground truth box whose best confident same-class prediction has IoU in
  [``low``, ``iou``); score = prediction score x (1 - IoU).

An image's score is 1 - prod(1 - s) over its issues: the chance at least one is real, were they independent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from foveal.ops.boxes import box_iou_numpy

KINDS = ("missing", "wrong_class", "badly_placed")


@dataclass
class BoxIssue:
    """One suspicious box: ``kind`` (one of KINDS), the ``box`` it is about (xyxy pixels: the prediction
    for missing and wrong_class, the ground truth for badly_placed), ``given`` (the ground truth class,
    None for missing), ``suggested`` (the predicted class) and box, ``iou``, ``score`` in [0, 1]."""

    kind: str
    box: list[float]
    given: str | None
    suggested: str
    predicted_box: list[float]
    iou: float
    score: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _box(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]


def box_issues(
    gt_boxes: np.ndarray,
    gt_labels: list[str],
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: list[str],
    conf: float = 0.5,
    iou: float = 0.5,
    low: float = 0.1,
) -> list[BoxIssue]:
    """Issues of one image: ground truth ``gt_boxes`` (G, 4) with class names ``gt_labels``, predictions
    ``boxes`` (P, 4), ``scores`` (P,), ``labels``; highest score first."""
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    keep = np.flatnonzero(np.asarray(scores, dtype=np.float64) >= conf)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[keep]
    scores = np.asarray(scores, dtype=np.float64)[keep]
    labels = [labels[i] for i in keep]
    overlaps = (
        box_iou_numpy(boxes, gt_boxes)
        if len(boxes) and len(gt_boxes)
        else np.zeros((len(boxes), len(gt_boxes)))
    )
    issues: list[BoxIssue] = []
    placing: set[int] = set()  # predictions that are the evidence of a badly placed box
    for g in range(len(gt_boxes)):
        same = [p for p in range(len(boxes)) if labels[p] == gt_labels[g]]
        best_same = max((float(overlaps[p, g]) for p in same), default=0.0)
        if best_same >= iou:
            continue
        other = [p for p in range(len(boxes)) if labels[p] != gt_labels[g] and overlaps[p, g] >= iou]
        if other:
            p = max(other, key=lambda q: scores[q] * overlaps[q, g])
            issues.append(
                BoxIssue(
                    "wrong_class",
                    _box(boxes[p]),
                    gt_labels[g],
                    labels[p],
                    _box(boxes[p]),
                    float(overlaps[p, g]),
                    float(scores[p] * overlaps[p, g]),
                )
            )
        elif best_same >= low:
            p = max(same, key=lambda q: overlaps[q, g])
            issues.append(
                BoxIssue(
                    "badly_placed",
                    _box(gt_boxes[g]),
                    gt_labels[g],
                    labels[p],
                    _box(boxes[p]),
                    best_same,
                    float(scores[p] * (1.0 - best_same)),
                )
            )
            placing.add(p)
    for p in range(len(boxes)):
        best = float(overlaps[p].max()) if len(gt_boxes) else 0.0
        if best < iou and p not in placing:
            issues.append(
                BoxIssue(
                    "missing",
                    _box(boxes[p]),
                    None,
                    labels[p],
                    _box(boxes[p]),
                    best,
                    float(scores[p] * (1.0 - best)),
                )
            )
    return sorted(issues, key=lambda i: -i.score)


def image_score(issues: list[BoxIssue]) -> float:
    """1 - prod(1 - score) over the issues (0 without any)."""
    return float(1.0 - np.prod([1.0 - i.score for i in issues])) if issues else 0.0
