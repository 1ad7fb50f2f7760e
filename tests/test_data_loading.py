"""Reading ImageFolder and CSV data, image modes, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.data.checks import drop_unreadable
from foveal.data.imageio import load_rgb
from foveal.data.loading import load_classification
from foveal.data.sample import Sample
from foveal.errors import BadImageError, DataError
from tests.conftest import make_image


def test_flat_folder_is_split_stratified_and_seeded(tiny_folder: Path) -> None:
    data = load_classification(tiny_folder, val_fraction=0.34, seed=3)
    assert data.class_names == ["blue", "red"] and data.kind == "binary"
    val_labels = sorted(s.label for s in data.split("val"))
    assert val_labels == [0, 0, 1, 1]  # stratified: 2 of each class
    again = load_classification(tiny_folder, val_fraction=0.34, seed=3)
    assert [s.path for s in again.split("val")] == [s.path for s in data.split("val")]
    other = load_classification(tiny_folder, val_fraction=0.34, seed=4)
    assert {s.path for s in other.split("val")} != {s.path for s in data.split("val")}
    assert not {s.path for s in data.split("val")} & {s.path for s in data.split("train")}


def test_split_layout(shapes_folder: Path) -> None:
    data = load_classification(shapes_folder)
    assert data.class_names == ["circle", "square", "star", "triangle"]
    assert data.kind == "multiclass"
    assert all(data.split(s) for s in ("train", "val", "test"))
    sample = data.split("test")[0]
    assert Path(sample.path).parent.name == data.class_names[sample.label]


def test_csv_single_and_multilabel(tmp_path: Path, shapes_csv: Path) -> None:
    data = load_classification(shapes_csv / "labels.csv")
    assert data.kind == "multilabel" and data.class_names == ["circle", "square", "star", "triangle"]
    assert all(isinstance(s.label, list) and s.label for s in data.split("train"))
    assert Path(data.split("train")[0].path).is_file()
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    (tmp_path / "single.csv").write_text(
        "path,label,split\na.png,cat,train\nb.png,dog,train\na.png,dog,val\n"
    )
    single = load_classification(tmp_path / "single.csv")
    assert single.kind == "binary" and [s.label for s in single.split("val")] == [1]


def test_unknown_csv_label_names_file_line_and_value(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    (tmp_path / "train.csv").write_text("path,label\na.png,cat\na.png,dog\na.png,cat\na.png,dog\n")
    (tmp_path / "val.csv").write_text("path,label\na.png,cat\na.png,dgo\n")
    with pytest.raises(DataError, match=r"val.csv:3: unknown label 'dgo' \(did you mean: dog"):
        load_classification(tmp_path / "train.csv", val=tmp_path / "val.csv")


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("L", 128, 128), ("I;16", 65535, 255), ("I;16", 32896, 128), ("P", 1, 77), ("LA", 200, 200)],
)
def test_image_modes_become_rgb(tmp_path: Path, mode: str, value: int, expected: int) -> None:
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    if mode == "P":
        image = Image.new("P", (4, 4), value)
        image.putpalette([0, 0, 0, 77, 77, 77] + [0] * 762)
    elif mode == "LA":
        image = Image.new("LA", (4, 4), (value, 255))
    else:
        image = Image.new(mode, (4, 4), value)
    image.save(path)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[0, 0].tolist() == [expected] * 3


def test_rgba_transparent_pixels_become_black(tmp_path: Path) -> None:
    array = np.zeros((2, 2, 4), np.uint8)
    array[..., 0] = 255
    array[0, 0, 3] = 255
    Image.fromarray(array, "RGBA").save(tmp_path / "a.png")
    rgb = np.asarray(load_rgb(tmp_path / "a.png"))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "no such dataset"),
        ("empty", "the folder is empty"),
        ("single", "only the class 'red'"),
        ("empty_class", "class folder 'blue' holds no images"),
        ("loose", "move the images into one sub-folder"),
    ],
)
def test_bad_layouts(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout in ("single", "empty_class"):
        for i in range(4):
            make_image(root / "red" / f"{i}.png")
    if layout == "empty_class":
        (root / "blue").mkdir()
    if layout == "loose":
        make_image(root / "x.png")
    with pytest.raises(DataError, match=message) as err:
        load_classification(root)
    assert str(root) in str(err.value)


def _bad_files(root: Path) -> list[Path]:
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("not an image")
    good = make_image(root / "good.png", size=64)
    truncated = root / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    return [root / "zero.png", root / "text.png", truncated]


def test_bad_images_raise_naming_the_file(tmp_path: Path) -> None:
    for bad in _bad_files(tmp_path):
        with pytest.raises(BadImageError, match=bad.name):
            load_rgb(bad)


def test_skip_bad_images_warns_with_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = _bad_files(tmp_path)
    samples = [Sample(str(tmp_path / "good.png"), 0)] + [Sample(str(p), 0) for p in bad]
    with pytest.raises(BadImageError, match="and 2 more"):
        drop_unreadable(samples, "error")
    with caplog.at_level(logging.WARNING, logger="foveal"):
        kept = drop_unreadable(samples, "skip")
    assert [s.path for s in kept] == [str(tmp_path / "good.png")]
    assert "skipped 3 unreadable image(s) of 4" in caplog.text and "zero.png" in caplog.text
