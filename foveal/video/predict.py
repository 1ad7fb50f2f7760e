"""``foveal.predict_video``: a checkpoint over a video file or a frame folder, streamed, with optional
multi-object tracking.

Frames are decoded one at a time and predicted in batches of ``batch`` through the Task contract
(``predict_input`` -> ``forward`` -> ``postprocess`` -> ``finalize`` to the frame's own size), so
every task works and memory holds one batch. Written into the run folder, each file streamed to a
temporary file and renamed into place at the end (an error leaves none of them):

- ``frames.jsonl``: one JSON object per predicted frame: {"frame", "time", **prediction.to_dict(),
  "summary"} (arrays such as masks left out), with "tracks" ([{"id", "box", "score", "class"}]) and
  "track_ids" (one per detection, 0: no confirmed track) when tracking;
- ``frames.csv``: the same rows (the task's ``table_row``; columns of the first frame);
- ``video.mp4``: each frame rendered by ``task.render`` (with track ids and trajectory tails when
  tracking), at ``fps / stride``;
- ``tracks.json`` (tracking): every confirmed track's trajectory and line crossings
  (``foveal.video.counting``), and the counts;
- ``video.json``: the summary this function returns.

Frames whose size differs from the first frame's are predicted at their own size (boxes in their
pixels); the annotated video keeps the first frame's size (they are resized into it), and they are
counted in the summary ("resized_frames") and in one warning.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from foveal.atomic import AtomicStream, atomic_write_text
from foveal.data.video_io import Frame, FrameReader, VideoWriter, is_video_file
from foveal.engine.checkpoint import Loaded, load
from foveal.engine.evaluation import csv_cell, task_options
from foveal.engine.inference import pick_device
from foveal.errors import ConfigError
from foveal.serialize import dumps
from foveal.tasks.base import Task
from foveal.video.counting import TrackLog, centre_line

log = logging.getLogger("foveal")
TAIL = 30  # trajectory points drawn behind each track
TRACK_CONF = 0.1  # the score threshold when tracking and none is given: the low-score stage needs them


def video_request(sources: Sequence[str] | str, frames: bool = False) -> bool:
    """Whether ``foveal predict`` reads ``sources`` as a video: one video file, or one folder read as
    frames (``frames``: a video option was given). Videos mixed with images: ConfigError."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    videos = [s for s in sources if is_video_file(s)]
    if not videos and not frames:
        return False
    if len(sources) != 1:
        raise ConfigError(f"pass one video or frame folder at a time, got {len(sources)} sources")
    if frames and not videos and not Path(sources[0]).is_dir():
        raise ConfigError(
            f"{sources[0]}: video options (--track, --stride, --start, --end, --frames) need a "
            "video file or a folder of frames"
        )
    return True


class _Outputs:
    """The streamed files of one run (committed together, or all aborted)."""

    def __init__(self, out: Path, track: bool, video: bool, fps: float) -> None:
        self.out = out
        self.jsonl = AtomicStream(out / "frames.jsonl")
        self.csv = AtomicStream(out / "frames.csv")
        self.video = VideoWriter(out / "video.mp4", fps) if video else None
        self.columns: list[str] | None = None
        self.track = track

    def row(self, row: dict[str, Any], table: dict[str, Any]) -> None:
        self.jsonl.write(dumps(row) + "\n")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if self.columns is None:
            self.columns = list(table)
            writer.writerow(self.columns)
        writer.writerow([csv_cell(table.get(column, "")) for column in self.columns])
        self.csv.write(buffer.getvalue())

    def commit(self) -> dict[str, str | None]:
        video = self.video.close() if self.video is not None else None
        return {
            "jsonl": str(self.jsonl.commit()),
            "csv": str(self.csv.commit()),
            "video": None if video is None else str(video),
        }

    def abort(self) -> None:
        self.jsonl.abort()
        self.csv.abort()
        if self.video is not None:
            self.video.abort()


def predict_video(
    weights: str | Path | Loaded,
    source: str | Path,
    *,
    out: str | Path | None = "auto",
    task: str | None = None,
    batch: int = 16,
    device: str = "auto",
    stride: int = 1,
    start: float = 0.0,
    end: float | None = None,
    fps: float | None = None,
    track: bool = False,
    line: Sequence[float] | None = None,
    video: bool = True,
    on_bad_image: str = "error",
    project: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
    tracker: dict[str, Any] | None = None,
    threads: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Predict the frames of ``source`` (a video file read with PyAV, or a folder of images read as
    frames in natural name order at ``fps``, default 25) with checkpoint ``weights``.

    ``stride``, ``start``, ``end`` (seconds): which frames (``foveal.data.video_io.FrameReader``).
    ``track``: follow the predicted boxes with :class:`foveal.video.tracking.ByteTracker`
    (``tracker``: its parameters) and count tracks crossing ``line`` (x1, y1, x2, y2 pixels; default
    the first frame's vertical centre line); a task whose predictions have no boxes refuses it.
    ``video``: write the annotated video. ``options``: the task's post-processing (as
    :func:`foveal.predict`; the tracker's low-score stage sees the boxes >= ``conf``, which is 0.1
    when tracking unless given). ``out``, ``project``, ``name``: the run folder as
    :func:`foveal.predict` (default ``runs/<task>/predict[-N]``). Returns the summary written to
    ``video.json``: source, frames predicted, fps of the source and of the processing, outputs and
    (tracking) counts. ``weights`` may be an exported ``.onnx``/``.ts`` file (its runtime gets
    ``threads`` CPU threads).
    """
    from foveal.engine.rundir import output_dir

    loaded = weights if isinstance(weights, Loaded) else load(weights, task=task, threads=threads)
    if track and "conf" not in options and any(o.name == "conf" for o in loaded.task.predict_options):
        options["conf"] = TRACK_CONF
    options = task_options(loaded.task, options)
    if batch < 1:
        raise ConfigError(f"batch {batch} must be 1 or more")
    with FrameReader(
        source, stride=stride, start=start, end=end, fps=fps, on_bad_image=on_bad_image
    ) as reader:
        folder = output_dir(
            None if out in (None, "auto") else out, loaded.task.name, "predict", project, name
        )
        run = _Run(loaded, reader, Path(folder), track, line, video, tracker or {}, options)
        try:
            run.stream(batch, pick_device(device), progress)
            paths = run.outputs.commit()
        except BaseException:
            run.outputs.abort()
            raise
    return run.finish(paths)


class _Run:
    def __init__(
        self,
        loaded: Loaded,
        reader: FrameReader,
        out: Path,
        track: bool,
        line: Sequence[float] | None,
        video: bool,
        tracker: dict[str, Any],
        options: dict[str, Any],
    ) -> None:
        from foveal.video.tracking import ByteTracker

        self.task: Task = loaded.task
        self.model, self.reader, self.out, self.options = loaded.model, reader, out, options
        self.info = reader.info
        self.outputs = _Outputs(out, track, video, self.info.fps / reader.stride)
        self.tracker = ByteTracker(**tracker) if track else None
        self.log = TrackLog(self.task.class_names, line or centre_line(self.info.size)) if track else None
        self.predicted = self.resized = 0
        self.model_seconds = 0.0
        self.started = time.perf_counter()
        self.weights = str(loaded.path)

    def stream(self, batch: int, device: torch.device, progress: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.model = self.model.to(device).eval()
        self.device = device
        columns = [TextColumn("predicting frames"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, disable=not progress, transient=True) as bar:
            job = bar.add_task("frames", total=self.reader.expected())
            pending: list[Frame] = []
            for frame in self.reader:
                pending.append(frame)
                if len(pending) == batch:
                    self._batch(pending)
                    bar.advance(job, len(pending))
                    pending = []
            if pending:
                self._batch(pending)
                bar.advance(job, len(pending))

    @torch.inference_mode()
    def _batch(self, frames: list[Frame]) -> None:
        tick = time.perf_counter()
        images = torch.stack([self.task.predict_input(frame.image) for frame in frames]).to(self.device)
        predictions = self.task.postprocess(self.task.forward(self.model, images), **self.options)
        self.model_seconds += time.perf_counter() - tick
        for frame, prediction in zip(frames, predictions, strict=True):
            self._frame(frame, self.task.finalize(prediction, frame.image.size))

    def _frame(self, frame: Frame, prediction: Any) -> None:
        self.predicted += 1
        self.resized += frame.image.size != self.info.size
        values = {k: v for k, v in prediction.to_dict().items() if not isinstance(v, np.ndarray)}
        row: dict[str, Any] = {
            "frame": frame.index,
            "time": round(frame.time, 4),
            **values,
            "summary": prediction.summary(),
        }
        tracked: list[Any] = []
        if self.tracker is not None:
            found = self.task.track_boxes(prediction)
            if found is None:
                raise ConfigError(
                    f"--track follows boxes; {self.task.name} predictions have none: drop --track"
                )
            boxes, scores, labels = (np.asarray(a) for a in found)
            tracked = self.tracker.update(boxes, scores, labels)
            ids = [0] * len(boxes)
            for t in tracked:
                ids[t.detection] = t.track_id
                self.log.add(frame.index, t.track_id, t.box, t.score, t.label)
            row["tracks"] = [
                {
                    "id": t.track_id,
                    "box": [round(float(v), 2) for v in t.box],
                    "score": round(t.score, 4),
                    "class": self.task.class_names[t.label],
                }
                for t in tracked
            ]
            row["track_ids"] = ids
        table = {
            "frame": row["frame"],
            "time": row["time"],
            **self.task.table_row({k: v for k, v in row.items() if k not in ("frame", "time")}),
        }
        self.outputs.row(row, table)
        if self.outputs.video is not None:
            image = self.task.render(frame.image, prediction)
            if tracked:
                image = self._draw_tracks(image, frame.image.size, tracked)
            self.outputs.video.write(image)

    def _draw_tracks(self, image: Image.Image, size: tuple[int, int], tracked: list[Any]) -> Image.Image:
        from foveal.report.seg_plots import class_colours

        sx, sy = image.width / size[0], image.height / size[1]
        image = image.convert("RGB")
        draw = ImageDraw.Draw(image)
        colours = class_colours(32)
        draw.line(
            [(self.log.line[0] * sx, self.log.line[1] * sy), (self.log.line[2] * sx, self.log.line[3] * sy)],
            fill=(255, 255, 0),
            width=1,
        )
        for t in tracked:
            colour = tuple(int(c) for c in colours[1 + t.track_id % 31])
            tail = self.log.tracks[t.track_id]["trajectory"][-TAIL:]
            points = [((b[0] + b[2]) / 2 * sx, (b[1] + b[3]) / 2 * sy) for _, b, _ in tail]
            if len(points) > 1:
                draw.line(points, fill=colour, width=1)
            draw.text((t.box[0] * sx + 2, t.box[3] * sy - 11), f"#{t.track_id}", fill=colour)
        return image

    def finish(self, paths: dict[str, str | None]) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        summary: dict[str, Any] = {
            "source": self.info.path,
            "kind": self.info.kind,
            "weights": self.weights,
            "task": self.task.name,
            "fps": self.info.fps,
            "size": list(self.info.size),
            "frames_in_source": self.info.frames,
            "frames_predicted": self.predicted,
            "bad_frames_skipped": self.reader.skipped,
            "resized_frames": self.resized,
            "stride": self.reader.stride,
            "start": self.reader.start,
            "end": self.reader.end,
            "seconds": round(seconds, 3),
            "processing_fps": round(self.predicted / seconds, 2) if seconds else None,
            "model_fps": round(self.predicted / self.model_seconds, 2) if self.model_seconds else None,
            "out": str(self.out),
            "files": {k: v for k, v in paths.items() if v is not None},
        }
        if self.resized:
            log.warning(
                "%s: %d frame(s) differ in size from the first frame %s; predicted at their own size, "
                "resized in the annotated video",
                self.info.path,
                self.resized,
                self.info.size,
            )
        if self.tracker is not None and self.log is not None:
            counts = self.log.counts()
            tracks_path = atomic_write_text(
                self.out / "tracks.json", dumps({"counts": counts, "tracks": self.log.document()})
            )
            summary["counts"] = counts
            summary["files"]["tracks"] = str(tracks_path)
        summary["files"]["summary"] = str(self.out / "video.json")
        atomic_write_text(self.out / "video.json", dumps(summary, indent=1))
        log.info("video predictions written to %s", self.out)
        return summary
