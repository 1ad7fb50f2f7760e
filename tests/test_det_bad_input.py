"""Bad detection input: clipping, refused or skipped annotations and images, empty data, CLI exit codes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from PIL import Image

from foveal.cli.main import main
from foveal.data.det_loading import load_detection
from foveal.errors import DataError


@pytest.fixture(autouse=True)
def _foveal_logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI turns propagation off for its own handler; caplog listens on the root logger."""
    monkeypatch.setattr(logging.getLogger("foveal"), "propagate", True)


def _image(path: Path, width: int = 40, height: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (10, 200, 90)).save(path)


def _ann(ident: int, image_id: int = 1, category_id: int = 1, bbox: list | None = None, **extra) -> dict:
    return {
        "id": ident,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox or [1, 1, 5, 5],
        **extra,
    }


def _coco(root: Path, annotations: list[dict], extra_images: list[dict] = ()) -> Path:
    """annotations.json + images/: two 40x30 images (ids 1, 2), categories a (1) and b (2, 2 keypoints)."""
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}, {"id": 2, "file_name": "b.png"}]
    for entry in images:
        _image(root / "images" / entry["file_name"])
    categories = [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b", "keypoints": ["l", "r"], "skeleton": [[1, 2]]},
    ]
    doc = {"images": images + list(extra_images), "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "foveal"]


def test_boxes_outside_the_image_are_clipped_with_one_warning(tmp_path: Path, caplog) -> None:
    anns = [
        _ann(1, bbox=[-5, 2, 10, 5]),
        _ann(2, image_id=2, bbox=[35, 25, 10, 10]),
        _ann(3, bbox=[1, 2, 3, 4]),
    ]
    root = _coco(tmp_path / "c", anns)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        data = load_detection(root)
    a, b = data.splits["all"]
    assert data.sizes[b.path] == (30, 40)  # no width/height in the file: read from the header
    assert [o["bbox"] for o in a.objects] == [[0, 2, 5, 5], [1, 2, 3, 4]] and b.objects[0]["bbox"] == [
        35,
        25,
        5,
        5,
    ]
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "clipped 2 box(es)" in warnings[0] and "annotation id 1" in warnings[0]


COCO_CASES = [  # (annotations, extra image entries, error pattern, skip warning)
    (
        [_ann(7, bbox=[5, 5, 0, 4]), _ann(8, bbox=[50, 5, 5, 5])],
        [],
        r"annotations.json: annotation id 7: box \[x, y, w, h\] \[5, 5, 0, 4\] has no area inside the 40x30",
        "skipped 2 box(es) without area",
    ),
    (
        [_ann(3, category_id=9)],
        [],
        r"annotation id 3: category_id 9 is not one of the category ids \[1, 2\]; fix the annotation",
        "skipped 1 annotation(s) with an unknown category",
    ),
    (
        [_ann(3, image_id=99)],
        [],
        r"annotation id 3 has image_id 99, which is not in 'images'; add the image entry",
        "skipped 1 annotation(s) of image ids not in 'images'",
    ),
    (
        [_ann(3, category_id=2, keypoints=[1, 1, 2])],
        [],
        r"annotation id 3: keypoints have 3 values but category 'b' has K=2 keypoints; give 3\*K = 6",
        "skipped 1 annotation(s) with keypoints of the wrong length",
    ),
    (
        [_ann(3, image_id=3)],
        [{"id": 3, "file_name": "gone.png", "width": 40, "height": 30}],
        r"gone.png: image id 3 listed in .*annotations.json not found; put it in .*images or fix its file_",
        "skipped 1 missing image(s)",
    ),
]


@pytest.mark.parametrize(("anns", "extra", "error", "warning"), COCO_CASES)
def test_coco_bad_input_errors_or_is_skipped(tmp_path: Path, caplog, anns, extra, error, warning) -> None:
    root = _coco(tmp_path / "c", [_ann(1), *anns], extra)
    with pytest.raises(DataError, match=error) as info:
        load_detection(root)
    assert "\n" not in str(info.value) and "--on-bad-image skip" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        data = load_detection(root, on_bad_image="skip")
    assert [len(s.objects) for s in data.splits["all"]] == [1, 0]  # only the good annotation is left
    assert [Path(s.path).name for s in data.splits["all"]] == ["a.png", "b.png"]
    assert len(_warnings(caplog)) == 1 and warning in _warnings(caplog)[0]


def test_malformed_json_and_empty_coco(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "annotations.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"j/annotations.json: not valid JSON"):
        load_detection(tmp_path / "j")
    empty = _coco(tmp_path / "e", [])
    doc = json.loads((empty / "annotations.json").read_text())
    (empty / "annotations.json").write_text(json.dumps({**doc, "images": []}))
    with pytest.raises(DataError, match="no images in this COCO dataset"):
        load_detection(empty)
    # every image missing: skipping leaves nothing, which is an error too
    (empty / "annotations.json").write_text(json.dumps({**doc, "images": [{"id": 1, "file_name": "x.png"}]}))
    with pytest.raises(DataError, match="no images .* after skipping bad input"):
        load_detection(empty, on_bad_image="skip")


def _yolo(root: Path, lines: list[str], kpt_shape: list | None = None) -> Path:
    _image(root / "images" / "train" / "a.png", 100, 50)
    _image(root / "images" / "train" / "b.png", 100, 50)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("".join(f"{line}\n" for line in lines))
    doc = {"train": "images/train", "names": ["x", "y"]}
    if kpt_shape:
        doc["kpt_shape"] = kpt_shape
    (root / "data.yaml").write_text(yaml.safe_dump(doc))
    return root


YOLO_CASES = [  # (bad line, error pattern, warning)
    ("0 0.5 0.5 0.2", r"a.txt:2: 4 fields; a line is 'cls cx cy w h'", "skipped 1 malformed label line(s)"),
    ("0 0.5 abc 0.2 0.2", r"a.txt:2: 'abc' is not a number", "skipped 1 malformed label line(s)"),
    (
        "0.5 0.5 0.5 0.2 0.2",
        r"a.txt:2: class index '0.5' is not an integer",
        "skipped 1 malformed label line(s)",
    ),
    (
        "5 0.5 0.5 0.2 0.2",
        r"a.txt:2: class index 5 is not in 0..1 \(the names in data.yaml\)",
        "skipped 1 label line(s) with a class index out of range",
    ),
    (
        "0 0.5 1.5 0.2 0.2",
        r"a.txt:2: value 1.5 is outside \[0, 1\]; YOLO coordinates are normalised",
        "skipped 1 label line(s) with values outside [0, 1]",
    ),
    ("1 0.5 0.5 0.0 0.2", r"a.txt:2: box \[x, y, w, h\] .* has no area", "skipped 1 box(es) without area"),
]


@pytest.mark.parametrize(("line", "error", "warning"), YOLO_CASES)
def test_yolo_bad_lines_error_or_are_skipped(tmp_path: Path, caplog, line, error, warning) -> None:
    root = _yolo(tmp_path / "y", ["1 0.5 0.5 0.2 0.2", line, "0 0.25 0.5 0.1 0.1"])
    with pytest.raises(DataError, match=error) as info:
        load_detection(root)
    assert "\n" not in str(info.value)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        data = load_detection(root, on_bad_image="skip")
    a = data.splits["train"][0]
    assert [o["category_id"] for o in a.objects] == [2, 1]  # the lines around the bad one are kept
    assert len(_warnings(caplog)) == 1 and warning in _warnings(caplog)[0]


def test_yolo_one_warning_per_kind_with_counts(tmp_path: Path, caplog) -> None:
    lines = ["0 0.5 0.5", "0 1 2 3 4 5", "7 0.5 0.5 0.1 0.1", "9 0.5 0.5 0.1 0.1", "0 0.95 0.5 0.2 0.2"]
    root = _yolo(tmp_path / "y", lines)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        data = load_detection(root, on_bad_image="skip")
    assert data.splits["train"][0].objects[0]["bbox"] == pytest.approx([85, 20, 15, 10])  # clipped at 100
    warnings = _warnings(caplog)
    assert len(warnings) == 3
    assert sum("clipped 1 box(es)" in w for w in warnings) == 1
    assert sum("skipped 2 malformed label line(s)" in w and "a.txt:1" in w for w in warnings) == 1
    assert sum("skipped 2 label line(s) with a class index out of range" in w for w in warnings) == 1


def test_yolo_pose_line_length_and_missing_listed_image(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "p", ["0 0.5 0.5 0.2 0.2 0.5 0.5 2"], kpt_shape=[2, 3])
    with pytest.raises(DataError, match=r"a.txt:1: 8 fields; with kpt_shape \[2, 3\] .* \(11 fields\)"):
        load_detection(root)
    root = _yolo(tmp_path / "m", ["0 0.5 0.5 0.2 0.2"])
    (root / "list.txt").write_text("images/train/a.png\nimages/train/gone.png\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "list.txt", "names": ["x", "y"]}))
    with pytest.raises(DataError, match=r"gone.png: image file not found"):
        load_detection(root)
    assert len(load_detection(root, on_bad_image="skip").splits["train"]) == 1
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "nowhere/", "names": ["x"]}))
    with pytest.raises(DataError, match=r"data.yaml: train 'nowhere/' is not an image folder"):
        load_detection(root)


def test_empty_yolo_and_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "y" / "images" / "train").mkdir(parents=True)
    (tmp_path / "y" / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["x"]}))
    with pytest.raises(DataError, match="no images in this YOLO dataset"):
        load_detection(tmp_path / "y")
    (tmp_path / "y" / "data.yaml").write_text("train: [unclosed\n")
    with pytest.raises(DataError, match="data.yaml: not valid YAML"):
        load_detection(tmp_path / "y", fmt="yolo")


def _voc(root: Path, body: str, name: str = "a") -> Path:
    _image(root / "JPEGImages" / f"{name}.jpg")
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / f"{name}.xml").write_text(body)
    return root


def _voc_object(name: str, box: tuple) -> str:
    corners = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><bndbox>{corners}</bndbox></object>"


def test_voc_bad_input(tmp_path: Path, caplog) -> None:
    root = _voc(tmp_path / "v", f"<annotation>{_voc_object('cat', (1, 1, 5, 5))}</annotation>")
    _voc(root, "<annotation><object><name>cat</name>", name="b")  # truncated XML
    with pytest.raises(DataError, match=r"Annotations/b.xml: not valid XML"):
        load_detection(root)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        data = load_detection(root, on_bad_image="skip")
    assert [Path(s.path).name for s in data.splits["all"]] == ["a.jpg"]
    assert "skipped 1 malformed XML file(s)" in caplog.text
    objects = _voc_object("cat", (1, 1, "x", 5)) + _voc_object("cat", (2, 2, 6, 6))
    root = _voc(tmp_path / "w", f"<annotation>{objects}</annotation>")
    with pytest.raises(DataError, match=r"a.xml: object 1 \('cat'\): bndbox .*'xmax': 'x'.* lacks"):
        load_detection(root)
    assert load_detection(root, on_bad_image="skip").splits["all"][0].objects[0]["bbox"] == [1, 1, 5, 5]
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation>{_voc_object('kat', (1, 1, 5, 5))}</annotation>"
    )
    (root / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match=r"object 1 \('kat'\): class 'kat' is not one of \['cat', 'dog'\]"):
        load_detection(root)
    (root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(DataError, match=r"a.xml: no image for it in .*JPEGImages"):
        load_detection(root, fmt="voc")


def test_cli_bad_input_exits_2_or_skips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _coco(tmp_path / "c", [_ann(1), _ann(2, category_id=5)])
    assert main(["data", "convert", str(root), "--to", "yolo", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "annotation id 2: category_id 5" in err[0] and "annotations.json" in err[0]
    assert not (tmp_path / "y").exists()
    args = [
        "data",
        "convert",
        str(root),
        "--to",
        "yolo",
        "--out",
        str(tmp_path / "y"),
        "--on-bad-image",
        "skip",
    ]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == 1
    assert (tmp_path / "y" / "labels" / "all").exists() is False and (
        tmp_path / "y" / "labels" / "train"
    ).is_dir()
    with pytest.raises(SystemExit) as info:  # argparse refuses an unknown --to
        main(["data", "convert", str(root), "--to", "bmp", "--out", str(tmp_path / "z")])
    assert info.value.code == 2
