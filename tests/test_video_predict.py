"""End to end: ``foveal predict`` on a synthetic video with a tiny detector (tracking) and a tiny
classifier (per-frame labels); the files written, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import foveal
from foveal.cli.main import main
from foveal.data.synth_video import write_synthetic_video
from foveal.data.video_io import FrameReader
from foveal.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    found = {}
    for task, fmt, model in (("detect", "coco", "centernet"), ("classify", "imagefolder", None)):
        data = foveal.write_synthetic(root / fmt, n=40, imgsz=32, fmt=fmt)
        options = {"model": model} if model else {}
        result = foveal.train(
            task=task,
            data=str(data),
            epochs=1,
            imgsz=32,
            batch=8,
            workers=0,
            progress=False,
            project=str(root / "runs"),
            name=task,
            **options,
        )
        found[task] = result.best
    found["video"] = (
        write_synthetic_video(root / "clip", frames=24, imgsz=64, objects=3, seed=2) / "video.mp4"
    )
    found["root"] = root
    return found


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_predict_video_with_tracking_from_the_cli(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pred"
    code = main(
        [
            "predict",
            "--weights",
            str(trained["detect"]),
            str(trained["video"]),
            "--track",
            "--stride",
            "2",
            "--start",
            "0.2",
            "--end",
            "0.8",
            "--out",
            str(out),
            "--conf",
            "0.05",
        ]
    )
    assert code == 0
    summary = json.loads((out / "video.json").read_text())
    expected = [i for i in range(24) if 0.2 - 1e-9 <= i / 25 < 0.8][::2]  # frames 5, 7, ..., 19
    rows = _rows(out / "frames.jsonl")
    assert [row["frame"] for row in rows] == expected and summary["frames_predicted"] == len(expected)
    assert all({"time", "boxes", "scores", "labels", "tracks", "track_ids"} <= set(row) for row in rows)
    assert all(len(row["track_ids"]) == len(row["boxes"]) for row in rows)
    with open(out / "frames.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(expected)
    with FrameReader(out / "video.mp4") as reader:
        assert reader.info.size == (64, 64) and len(list(reader)) == len(expected)
    assert reader.info.fps == pytest.approx(12.5)
    tracks = json.loads((out / "tracks.json").read_text())
    assert set(tracks) == {"counts", "tracks"} and tracks["counts"]["line"] == [32.0, 0.0, 32.0, 64.0]
    assert summary["counts"] == tracks["counts"] and summary["processing_fps"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["frames.csv", "frames.jsonl", "tracks.json", "video.json", "video.mp4"]
    )


@pytest.mark.slow
def test_predict_video_track_schema_and_counts(trained: dict[str, Path], tmp_path: Path) -> None:
    """Low tracker thresholds so the barely trained detector's boxes make tracks: the schema."""
    low = {"high_score": 0.05, "low_score": 0.01, "new_score": 0.05}
    summary = foveal.predict_video(
        trained["detect"],
        trained["video"],
        out=tmp_path / "p",
        track=True,
        tracker=low,
        conf=0.01,
        video=False,
        progress=False,
        line=[0, 32, 64, 32],
    )
    assert "video" not in summary["files"] and not (tmp_path / "p" / "video.mp4").exists()
    doc = json.loads((tmp_path / "p" / "tracks.json").read_text())
    assert doc["tracks"], "no tracks at all"
    ids = [t["id"] for t in doc["tracks"]]
    assert ids == list(range(1, len(ids) + 1))
    for track in doc["tracks"]:
        assert {"id", "class", "first_frame", "last_frame", "trajectory", "crossings"} <= set(track)
        frame, box, score = track["trajectory"][0]
        assert frame == track["first_frame"] and len(box) == 4 and 0 <= score <= 1
    assert sum(doc["counts"]["tracks_by_class"].values()) == len(ids)
    assert doc["counts"]["line"] == [0.0, 32.0, 64.0, 32.0]


@pytest.mark.slow
def test_classifier_on_a_frame_folder(trained: dict[str, Path], tmp_path: Path) -> None:
    clip = write_synthetic_video(tmp_path / "clip", frames=6, imgsz=48, objects=1, seed=0, as_frames=True)
    summary = foveal.predict_video(
        trained["classify"], clip / "frames", out=tmp_path / "c", fps=3, progress=False
    )
    rows = _rows(tmp_path / "c" / "frames.jsonl")
    assert [row["frame"] for row in rows] == list(range(6)) and rows[2]["time"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    assert all(row["labels"] and "tracks" not in row for row in rows)
    assert summary["kind"] == "frames" and summary["task"] == "classify"
    with FrameReader(tmp_path / "c" / "video.mp4") as reader:
        assert len(list(reader)) == 6
    with pytest.raises(ConfigError, match="--track"):
        foveal.predict_video(
            trained["classify"], clip / "frames", out=tmp_path / "t", track=True, progress=False
        )
    assert [p for p in (tmp_path / "t").iterdir()] == []  # nothing half-written


@pytest.mark.slow
def test_bad_video_is_a_one_line_error(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01" * 500)
    with pytest.raises(DataError, match="broken.mp4: not a readable video"):
        foveal.predict_video(trained["detect"], broken, out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
    assert main(["predict", "--weights", str(trained["detect"]), str(broken), str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one video or frame folder at a time" in err[0]
    images = foveal.predict(
        trained["detect"], [str(trained["root"] / "coco" / "images")], out=tmp_path / "img"
    )
    assert len(images) == 40  # an image folder without video options stays images


def test_tracking_lowers_the_default_score_threshold(monkeypatch, tmp_path) -> None:
    """--track without --conf predicts at conf 0.1 (ByteTrack's low-score stage); a given conf stays."""
    import foveal.video.predict as video

    seen = []
    monkeypatch.setattr(video, "task_options", lambda task, options: seen.append(dict(options)) or {})
    monkeypatch.setattr(video, "FrameReader", _Stop)

    class Task:
        predict_options = (type("O", (), {"name": "conf"})(),)

    loaded = video.Loaded(Task(), None, {}, tmp_path)
    for options, expected in (({}, 0.1), ({"conf": 0.4}, 0.4)):
        with pytest.raises(_StopError):  # stopped where the frames would be read
            video.predict_video(loaded, tmp_path / "clip.mp4", track=True, **options)
        assert seen.pop()["conf"] == expected
    with pytest.raises(_StopError):
        video.predict_video(loaded, tmp_path / "clip.mp4")
    assert "conf" not in seen.pop()


class _StopError(Exception):
    pass


def _Stop(*args, **kwargs):  # noqa: N802 (stands in for the FrameReader class)
    raise _StopError
