"""Frames in and out: a video file (PyAV) or a folder of images read as a stream, and an annotated
video written atomically.

Reading is a generator: one decoded frame at a time, never the whole video in memory. ``start`` and
``end`` are seconds of the video's timeline (frame times from the stream's timestamps, relative to
its first frame; a frame folder's frame ``i`` is at ``i / fps``); the kept frames are those with
``start <= time < end``, then every ``stride``-th of them (the first kept frame is the first at or
after ``start``). Frames before ``start`` are decoded and skipped (no seeking), so frame indices are
exact. Frames keep the size they were decoded at: a video whose frames change size yields frames of
different sizes (the caller decides; :class:`VideoWriter` resizes them to its first frame's size
and counts them).
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image

from foveal.data.imageio import is_image_file, load_rgb
from foveal.errors import BadImageError, ConfigError, DataError

log = logging.getLogger("foveal")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
DEFAULT_FOLDER_FPS = 25.0


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the file name has a known video extension (case-insensitive)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its ``index`` in the source (0-based, counting every frame, kept or not),
    ``time`` in seconds and the RGB ``image`` at its decoded size."""

    index: int
    time: float
    image: Image.Image


@dataclass(frozen=True)
class VideoInfo:
    """A source's ``path``, ``kind`` ("video" or "frames"), ``fps`` (frames per second; a folder's
    is given), ``size`` (width, height) of its first frame and ``frames``, its frame count when the
    container says (None: unknown)."""

    path: str
    kind: str
    fps: float
    size: tuple[int, int]
    frames: int | None


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def folder_frames(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder``, in natural name order (frame2 before frame10)."""
    files = sorted((p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p)), key=_natural_key)
    if not files:
        raise DataError(f"{folder}: no image files found to read as frames; pass a folder of images")
    return files


class FrameReader:
    """The frames of ``source`` (a video file or a folder of images) as an iterator of :class:`Frame`.

    ``stride``: every k-th kept frame; ``start``/``end``: seconds (``end`` None: to the end);
    ``fps``: a frame folder's frame rate (default 25; a video's own rate is used when None).
    ``on_bad_image``: "error" (a frame that fails to decode raises DataError naming the file and
    frame index) or "skip" (it is left out and counted in ``skipped``). The source is opened here,
    so an unreadable file fails at construction; ``info`` describes it. Use as a context manager or
    call :meth:`close`.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        stride: int = 1,
        start: float = 0.0,
        end: float | None = None,
        fps: float | None = None,
        on_bad_image: str = "error",
    ) -> None:
        if stride < 1:
            raise ConfigError(f"stride {stride} must be 1 or more")
        if start < 0 or (end is not None and end <= start):
            raise ConfigError(f"start {start} / end {end}: need 0 <= start < end (seconds)")
        if on_bad_image not in ("error", "skip"):
            raise ConfigError(f"on_bad_image '{on_bad_image}': choose error or skip")
        if fps is not None and fps <= 0:
            raise ConfigError(f"fps {fps} must be positive")
        self.path = Path(source)
        self.stride, self.start, self.end, self.on_bad_image = stride, start, end, on_bad_image
        self.skipped = 0
        self._container: Any = None
        if self.path.is_dir():
            self._files = folder_frames(self.path)
            with Image.open(self._files[0]) as first:
                size = first.size
            rate = fps or DEFAULT_FOLDER_FPS
            self.info = VideoInfo(str(self.path), "frames", rate, size, len(self._files))
        elif self.path.is_file():
            self.info = self._open_video(fps)
        else:
            raise DataError(f"{self.path}: no such file or folder; check the path")

    def _open_video(self, fps: float | None) -> VideoInfo:
        import av

        try:
            container = av.open(str(self.path))
        except av.error.FFmpegError as err:
            raise DataError(
                f"{self.path}: not a readable video ({err.strerror or type(err).__name__}); "
                "check the file is complete, or re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
            ) from err
        if not container.streams.video:
            container.close()
            raise DataError(f"{self.path}: no video stream in the file; pass a video with a picture track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if stream.codec_context is None or not stream.codec_context.name:
            container.close()
            raise DataError(f"{self.path}: unsupported video codec; re-encode it (e.g. with libx264)")
        rate = fps or float(stream.average_rate or stream.guessed_rate or 0) or DEFAULT_FOLDER_FPS
        self._container, self._stream = container, stream
        size = (int(stream.codec_context.width), int(stream.codec_context.height))
        return VideoInfo(str(self.path), "video", rate, size, int(stream.frames) or None)

    def expected(self) -> int | None:
        """How many frames iteration yields, when the source's frame count is known (else None)."""
        total = self.info.frames
        if total is None:
            return None
        first = min(total, math.ceil(self.start * self.info.fps - 1e-6))
        last = total if self.end is None else min(total, math.ceil(self.end * self.info.fps - 1e-6))
        return max(0, -(-(last - first) // self.stride))

    def __iter__(self) -> Iterator[Frame]:
        frames = self._folder() if self.info.kind == "frames" else self._video()
        kept = 0
        for index, time, load in frames:
            if time < self.start - 1e-6:
                continue
            if self.end is not None and time >= self.end - 1e-6:
                break
            kept += 1
            if (kept - 1) % self.stride:
                continue
            image = load()
            if image is not None:
                yield Frame(index, time, image)

    def _folder(self) -> Iterator[tuple[int, float, Any]]:
        def loader(path: Path) -> Any:
            def load() -> Image.Image | None:
                try:
                    return load_rgb(path)
                except BadImageError as err:
                    if self.on_bad_image == "error":
                        raise DataError(f"{err} (frame {self._files.index(path)} of {self.path})") from err
                    self.skipped += 1
                    return None

            return load

        for index, path in enumerate(self._files):
            yield index, index / self.info.fps, loader(path)

    def _video(self) -> Iterator[tuple[int, float, Any]]:
        import av

        stream, index, origin = self._stream, 0, None
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
                decoded = packet.decode()
            except StopIteration:
                return
            except av.error.FFmpegError as err:
                if self.on_bad_image == "error":
                    raise DataError(
                        f"{self.path}: frame {index} failed to decode ({err.strerror or err}); "
                        "re-encode the video, or pass --on-bad-image skip"
                    ) from err
                self.skipped += 1
                continue
            for frame in decoded:
                time = float(frame.time) if frame.time is not None else index / self.info.fps
                origin = time if origin is None else origin
                yield index, time - origin, (lambda f=frame: f.to_image())
                index += 1

    def close(self) -> None:
        """Close the video file (a frame folder holds nothing open)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pick_codec() -> str:
    """The encoder for annotated videos: H.264 (libx264) when the PyAV build has it, else MPEG-4 part 2."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class VideoWriter:
    """An annotated video written frame by frame to a temporary file beside ``path`` and renamed to
    ``path`` by :meth:`close`; :meth:`abort` (or an exception inside ``with``) deletes it, so no
    half-written video is left. The first frame fixes the size (rounded down to even numbers, which
    yuv420p needs); later frames of another size are resized to it and counted in ``resized``."""

    def __init__(self, path: str | os.PathLike, fps: float, codec: str | None = None) -> None:
        import av

        self.path = Path(path)
        container_format = _container_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=f".partial{self.path.suffix}", dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._container = av.open(str(self._tmp), mode="w", format=container_format)
        self._codec, self._fps = codec or pick_codec(), Fraction(fps).limit_denominator(1001)
        self._stream: Any = None
        self.size: tuple[int, int] | None = None
        self.frames = self.resized = 0

    def write(self, image: Image.Image) -> None:
        """Encode one RGB frame."""
        import av

        if self._stream is None:
            self.size = (max(2, image.width // 2 * 2), max(2, image.height // 2 * 2))
            self._stream = self._container.add_stream(self._codec, rate=self._fps)
            self._stream.width, self._stream.height = self.size
            self._stream.pix_fmt = "yuv420p"
            if self._codec == "libx264":
                self._stream.options = {"preset": "veryfast", "crf": "20"}
        if image.size != self.size:
            if (image.width // 2 * 2, image.height // 2 * 2) != self.size:
                self.resized += 1
            image = image.resize(self.size, Image.BILINEAR)
        frame = av.VideoFrame.from_image(image.convert("RGB"))
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path | None:
        """Flush the encoder and move the video into place; returns its path (None: no frame written,
        nothing left behind)."""
        if self._container is None:
            return self.path if self.path.exists() else None
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()
        except BaseException:
            self._container = None
            self._tmp.unlink(missing_ok=True)
            raise
        self._container = None
        if not self.frames:
            self._tmp.unlink(missing_ok=True)
            return None
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self._tmp, 0o666 & ~mask)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop and delete the temporary file."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception as err:  # the file is deleted either way
                log.debug("closing an aborted video: %s", err)
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _container_format(path: Path) -> str:
    formats = {
        ".mp4": "mp4",
        ".m4v": "mp4",
        ".mov": "mov",
        ".mkv": "matroska",
        ".avi": "avi",
        ".ts": "mpegts",
    }
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise ConfigError(f"{path}: write videos as {', '.join(formats)}; got '{suffix or 'no suffix'}'")
    return formats[suffix]
