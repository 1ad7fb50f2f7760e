"""Video prediction with tracking on a synthetic moving-shapes video: speed and tracking quality.

    python benchmarks/video.py [--weights CKPT] [--n 1500] [--epochs 8] [--frames 300] [--size 128]
        [--objects 4] [--conf 0.1] [--out DIR]

Trains the detect demo model (CenterNet on ``foveal data synth --format coco`` scenes at 64 px;
``--weights`` skips it), writes a ``--frames`` synthetic video of ``--objects`` moving shapes with
known identities (``foveal.data.synth_video``; ``--size`` px, so the shapes have the training data's
relative sizes once the frames are resized to 64 px), predicts it with ``foveal.predict_video(...,
track=True)`` and prints: frames/s end to end (decode + predict + track + render + encode + write),
frames/s of the model alone (predict_input + forward + postprocess), and MOTA, MOTP, IDF1, ID
switches, FP, FN against the ground truth, computed by ``foveal.video.mot`` and by py-motmetrics
side by side; then the same tracker fed the ground-truth boxes (the upper bound of the tracker).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import foveal
from foveal.data.synth_video import write_synthetic_video
from foveal.data.synthetic import CLASSES
from foveal.video.mot import FrameBoxes, clear_mot, motmetrics_summary
from foveal.video.tracking import ByteTracker

KEYS = ("mota", "motp", "idf1", "id_switches", "fp", "fn", "fragmentations")


def _table(name: str, ours: dict, reference: dict | None) -> None:
    print(f"{name}:")
    for key in KEYS:
        mine = ours[key]
        ref = "" if reference is None else reference[key]
        fmt = (lambda v: f"{v:.4f}") if isinstance(mine, float) else str
        print(f"  {key:15s} foveal {fmt(mine):>8s}   motmetrics {fmt(ref) if ref != '' else '-':>8s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--conf", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="foveal-video-"))
    weights = args.weights
    if weights is None:
        tick = time.perf_counter()
        data = foveal.write_synthetic(root / "shapes", n=args.n, imgsz=64, fmt="coco", seed=args.seed)
        result = foveal.train(
            task="detect",
            data=str(data),
            model="centernet",
            epochs=args.epochs,
            imgsz=64,
            batch=32,
            workers=0,
            progress=False,
            project=str(root / "runs"),
            name="detect",
        )
        weights = result.best
        print(
            f"trained in {time.perf_counter() - tick:.0f} s: val map50 {result.metrics['map50']:.3f}, "
            f"map {result.metrics['map']:.3f}"
        )
    clip = write_synthetic_video(
        root / "clip", frames=args.frames, imgsz=args.size, objects=args.objects, seed=args.seed + 1
    )
    truth_doc = json.loads((clip / "truth.json").read_text())
    loaded = foveal.load(weights)
    foveal.predict_video(loaded, clip / "video.mp4", out=root / "warmup", end=0.2, progress=False)
    summary = foveal.predict_video(
        loaded, clip / "video.mp4", out=root / "predict", track=True, conf=args.conf, progress=False
    )
    print(
        f"{summary['frames_predicted']} frames of {args.size} px, {args.objects} objects: "
        f"{summary['processing_fps']} frames/s end to end, {summary['model_fps']} frames/s model only"
    )
    rows = [json.loads(line) for line in (root / "predict" / "frames.jsonl").read_text().splitlines()]
    truth = [FrameBoxes.of([o["id"] for o in objs], [o["box"] for o in objs]) for objs in truth_doc["frames"]]
    found = [
        FrameBoxes.of([t["id"] for t in row["tracks"]], [t["box"] for t in row["tracks"]]) for row in rows
    ]
    _table("tracker on the detector's boxes", clear_mot(truth, found), motmetrics_summary(truth, found))
    tracker, upper = ByteTracker(), []
    for objs in truth_doc["frames"]:
        boxes = np.array([o["box"] for o in objs]).reshape(-1, 4)
        out = tracker.update(boxes, np.full(len(objs), 0.9), [CLASSES.index(o["class"]) for o in objs])
        upper.append(FrameBoxes.of([t.track_id for t in out], [t.box for t in out]))
    _table("tracker on the ground-truth boxes (upper bound)", clear_mot(truth, upper), None)
    counts = summary["counts"]
    print(f"tracks {counts['tracks']} (ground truth: {args.objects}); crossings {counts['crossings']}")
    print(f"outputs in {root / 'predict'}")


if __name__ == "__main__":
    main()
