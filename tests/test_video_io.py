"""Video reading and writing: stride/start/end, frame folders, bad files, frames that change size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.atomic import AtomicStream
from foveal.data.synth_video import generate_video, write_synthetic_video
from foveal.data.video_io import FrameReader, VideoWriter, is_video_file
from foveal.errors import ConfigError, DataError


def _grey_video(path: Path, n: int = 20, size: tuple[int, int] = (48, 32), fps: float = 10.0) -> Path:
    with VideoWriter(path, fps) as writer:
        for i in range(n):
            writer.write(Image.fromarray(np.full((size[1], size[0], 3), 10 * i, np.uint8)))
    return path


def test_is_video_file() -> None:
    assert is_video_file("a/B.MP4") and is_video_file("x.mkv") and is_video_file("x.webm")
    assert not is_video_file("x.png") and not is_video_file("mp4")


def test_read_stride_start_end(tmp_path: Path) -> None:
    path = _grey_video(tmp_path / "grey.mp4")
    reader = FrameReader(path)
    assert reader.info.kind == "video" and reader.info.size == (48, 32) and reader.info.frames == 20
    assert reader.info.fps == pytest.approx(10.0)
    frames = list(reader)
    assert [f.index for f in frames] == list(range(20)) and frames[3].time == pytest.approx(0.3)
    assert abs(int(np.asarray(frames[5].image)[..., 0].mean()) - 50) <= 3  # decoded content, in order
    reader.close()
    with FrameReader(path, stride=3, start=0.5, end=1.6) as reader:
        indices = [f.index for f in reader]
        assert indices == [5, 8, 11, 14] and reader.expected() == len(indices)
    with pytest.raises(ConfigError):
        FrameReader(path, start=2.0, end=1.0)
    with pytest.raises(ConfigError):
        FrameReader(path, stride=0)


def test_frame_folder_natural_order_and_bad_frame(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):
        Image.new("RGB", (16, 12), (i * 20, 0, 0)).save(folder / f"frame{i}.png")
    with FrameReader(folder, fps=5, stride=1) as reader:
        frames = list(reader)
    assert reader.info.kind == "frames" and reader.info.size == (16, 12) and reader.info.frames == 3
    assert [f.image.getpixel((0, 0))[0] for f in frames] == [20, 40, 200]  # frame10 last
    assert [f.time for f in frames] == pytest.approx([0.0, 0.2, 0.4])
    (folder / "frame11.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="frame11.png") as err:
        list(FrameReader(folder))
    assert "\n" not in str(err.value)
    reader = FrameReader(folder, on_bad_image="skip")
    assert len(list(reader)) == 3 and reader.skipped == 1


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"this is not a video at all" * 40])
def test_corrupt_video_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.mp4: not a readable video") as err:
        FrameReader(path)
    assert "\n" not in str(err.value)


def test_truncated_video_names_the_file(tmp_path: Path) -> None:
    data = _grey_video(tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.mp4"):
        list(FrameReader(cut))


def test_frames_that_change_size(tmp_path: Path) -> None:
    """MPEG-TS streams concatenated: the decoder yields frames of both sizes, each at its own size."""
    first, second = _grey_video(tmp_path / "a.ts", 6, (48, 32)), _grey_video(tmp_path / "b.ts", 4, (32, 32))
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    with FrameReader(joined) as reader:
        sizes = [f.image.size for f in reader]
    assert sizes[0] == (48, 32) and (32, 32) in sizes and len(sizes) >= 9
    with VideoWriter(tmp_path / "out.mp4", 10) as writer:
        for size in sizes:
            writer.write(Image.new("RGB", size))
    assert writer.resized == sizes.count((32, 32)) and writer.size == (48, 32)
    with FrameReader(tmp_path / "out.mp4") as reader:
        assert {f.image.size for f in reader} == {(48, 32)}


def test_writer_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out" / "v.mp4"
    with pytest.raises(RuntimeError), VideoWriter(target, 10) as writer:
        writer.write(Image.new("RGB", (33, 17)))  # odd sizes are rounded down to even
        raise RuntimeError("stop")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with VideoWriter(target, 10) as writer:
        writer.write(Image.new("RGB", (33, 17)))
        assert not target.exists()  # only the temporary file exists until close
    assert target.exists() and writer.size == (32, 16) and list(target.parent.iterdir()) == [target]
    with pytest.raises(ConfigError):
        VideoWriter(tmp_path / "v.gif", 10)
    stream = tmp_path / "rows.jsonl"
    with pytest.raises(RuntimeError), AtomicStream(stream) as rows:
        rows.write("{}\n")
        raise RuntimeError("stop")
    assert not stream.exists() and [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_synthetic_video_ground_truth(tmp_path: Path) -> None:
    video = list(generate_video(12, 64, 3, seed=1))
    again = list(generate_video(12, 64, 3, seed=1))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(video, again, strict=True))  # deterministic
    ids = {o["id"] for _, objs in video for o in objs}
    assert ids <= {1, 2, 3} and len(ids) >= 2
    for image, objs in video:
        assert image.shape == (64, 64, 3)
        for obj in objs:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and obj["visible"] >= 0.5
    out = write_synthetic_video(tmp_path / "v", frames=12, imgsz=64, objects=3, seed=1)
    truth = json.loads((out / "truth.json").read_text())
    assert len(truth["frames"]) == 12 and truth["frames"][0] == video[0][1]
    with FrameReader(out / "video.mp4") as reader:
        assert reader.info.frames == 12 and len(list(reader)) == 12
    with pytest.raises(DataError, match="not empty"):
        write_synthetic_video(out)
