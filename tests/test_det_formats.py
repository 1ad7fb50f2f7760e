"""Detection dataset formats: COCO / YOLO / VOC readers and writers, format detection, conversion, CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from foveal.cli.main import main
from foveal.data.convert import convert
from foveal.data.det_loading import DetectionData, detect_format, load_detection
from foveal.data.formats.coco import write_coco
from foveal.data.formats.voc import write_voc
from foveal.data.formats.yolo import join_polygons, label_path, mask_polygons, write_yolo
from foveal.data.sample import Sample
from foveal.data.synth_writers import write_synthetic
from foveal.data.synthetic import CLASSES, KEYPOINT_NAMES, MAX_KEYPOINTS, generate
from foveal.errors import DataError


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 12 scenes (seed 0, 32 px) written as coco, yolo, yolo-seg and yolo-pose."""
    root = tmp_path_factory.mktemp("det")
    return {
        f: write_synthetic(root / f, n=12, imgsz=32, fmt=f) for f in ("coco", "yolo", "yolo-seg", "yolo-pose")
    }


@pytest.fixture(scope="module")
def scenes() -> list:
    return list(generate(12, 32, seed=0))


def _by_stem(data: DetectionData) -> dict[tuple[str, str], Sample]:
    return {(split, Path(s.path).stem): s for split, part in data.splits.items() for s in part}


def _xyxy(obj: dict) -> np.ndarray:
    x, y, w, h = obj["bbox"]
    return np.array([x, y, x + w, y + h])


def _image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 30)).save(path)
    return path


# ---- readers against references ----


def test_coco_reader_matches_pycocotools(synth: dict[str, Path]) -> None:
    data = load_detection(synth["coco"])
    assert data.source == "coco" and list(data.splits) == ["train", "val", "test"]
    assert data.classes == list(CLASSES) and data.keypoint_names == list(KEYPOINT_NAMES)
    assert data.skeleton == [] and data.flip_idx is None  # the circle (first category) has no edges
    for split, samples in data.splits.items():
        api = COCO(str(synth["coco"] / "annotations" / f"instances_{split}.json"))
        assert len(samples) == len(api.getImgIds())
        for image in api.loadImgs(api.getImgIds()):
            sample = next(s for s in samples if Path(s.path).name == image["file_name"])
            assert data.sizes[sample.path] == (image["height"], image["width"])
            anns = api.loadAnns(api.getAnnIds(imgIds=image["id"]))
            assert [o["category_id"] for o in sample.objects] == [a["category_id"] for a in anns]
            for obj, ann in zip(sample.objects, anns, strict=True):
                assert obj["bbox"] == pytest.approx(ann["bbox"]) and obj["id"] == ann["id"]
                assert obj["keypoints"] == ann["keypoints"] and obj["area"] == ann["area"]
                # the RLE stays usable: pycocotools decodes the same mask from the object
                mask = api.annToMask(ann)
                assert np.array_equal(mask_utils.decode(api.annToRLE({**obj, "image_id": image["id"]})), mask)


def test_yolo_seg_and_pose_synthetic_layouts(synth: dict[str, Path], scenes: list) -> None:
    seg, pose = load_detection(synth["yolo-seg"]), load_detection(synth["yolo-pose"])
    doc = yaml.safe_load((synth["yolo-pose"] / "data.yaml").read_text())
    assert doc["kpt_shape"] == [MAX_KEYPOINTS, 3] and "flip_idx" not in doc  # no valid flip for shapes
    assert pose.skeleton == [] and pose.categories[1]["skeleton"] == [[1, 2], [2, 3], [3, 4], [4, 1]]
    for data in (seg, pose):
        assert sum(len(p) for p in data.splits.values()) == 12
    for sample in (s for part in seg.splits.values() for s in part):
        for obj, shape in zip(sample.objects, scenes[int(Path(sample.path).stem)].objects, strict=True):
            assert obj["category_id"] == shape.cls + 1
            # the traced outline: box within half a pixel; pycocotools fills about the same pixels
            assert np.abs(_xyxy(obj) - shape.box).max() <= 0.5 + 1e-4
            rle = mask_utils.merge(mask_utils.frPyObjects(obj["segmentation"], 32, 32))
            filled = mask_utils.decode(rle).astype(bool)
            iou = (filled & shape.mask).sum() / (filled | shape.mask).sum()
            assert iou > 0.7
    for sample in (s for part in pose.splits.values() for s in part):
        for obj, shape in zip(sample.objects, scenes[int(Path(sample.path).stem)].objects, strict=True):
            np.testing.assert_allclose(_xyxy(obj), shape.box, atol=1e-4)
            kps = np.asarray(obj["keypoints"]).reshape(MAX_KEYPOINTS, 3)
            np.testing.assert_allclose(kps[: len(shape.keypoints)], shape.keypoints, atol=1e-4)
            assert (kps[len(shape.keypoints) :] == 0).all()


def test_mask_polygons_bounds_and_join() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:9, 3:7] = True  # part 1: columns 3..6, rows 2..8
    mask[12:15, 14:18] = True  # part 2
    mask[15, 19] = True  # a lone pixel touching part 2 diagonally only
    parts = mask_polygons(mask)
    joined = join_polygons(parts)
    assert joined.min(0).tolist() == [3, 2] and joined.max(0).tolist() == [20, 16]
    filled = mask_utils.decode(mask_utils.frPyObjects([joined.ravel().tolist()], 20, 20))[..., 0] > 0
    assert (filled & mask).sum() / (filled | mask).sum() > 0.8  # the bridges add no area


def test_voc_reader_hand_made(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _image(root / "JPEGImages" / "a.png", 40, 30)
    _image(root / "JPEGImages" / "b.jpg", 20, 10)
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>40</width><height>30</height></size>"
        "<object><name>dog</name><difficult>1</difficult>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name> cat </name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>6</ymax></bndbox>"
        "</object></annotation>"
    )
    # no <size> and no <filename>: the image is found by its id and measured from its header
    (root / "Annotations" / "b.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>2.5</xmin><ymin>1</ymin><xmax>20</xmax>"
        "<ymax>10</ymax></bndbox></object></annotation>"
    )
    assert detect_format(root) == "voc"
    data = load_detection(root)
    assert data.classes == ["cat", "dog"] and list(data.splits) == ["all"]  # sorted names, one split
    a, b = data.splits["all"]
    assert data.sizes[a.path] == (30, 40) and data.sizes[b.path] == (10, 20)
    # 1-based inclusive pixels: x = xmin - 1, w = xmax - xmin + 1
    assert a.objects[0]["bbox"] == [0, 1, 10, 19] and a.objects[0]["iscrowd"] == 1
    assert a.objects[0]["category_id"] == 2 and a.objects[1]["bbox"] == [4, 4, 1, 2]
    assert b.objects[0]["bbox"] == [1.5, 0, 18.5, 10] and b.objects[0]["iscrowd"] == 0
    # classes.txt fixes the order; ImageSets give the splits
    (root / "classes.txt").write_text("dog\ncat\n")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    data = load_detection(root)
    assert data.classes == ["dog", "cat"] and {k: len(v) for k, v in data.splits.items()} == {
        "train": 1,
        "val": 1,
    }
    assert data.splits["train"][0].objects[0]["category_id"] == 1


def test_yolo_reader_hand_made(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    _image(root / "images" / "train" / "a.png", 100, 50)
    _image(root / "images" / "train" / "nolabel.png", 10, 10)
    _image(root / "pics" / "c.png", 20, 40)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.3 0.2 0.2 0.6\n")
    (root / "val.txt").write_text("pics/c.png\n")
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "val.txt", "names": {0: "x", 1: "y"}})
    )
    data = load_detection(root)
    assert (
        data.source == "yolo" and data.classes == ["x", "y"] and [c["id"] for c in data.categories] == [1, 2]
    )
    a, nolabel = data.splits["train"]
    assert data.sizes[a.path] == (50, 100) and nolabel.objects == [] and data.splits["val"][0].objects == []
    box, polygon = a.objects
    assert (
        box["category_id"] == 2
        and box["bbox"] == pytest.approx([40, 15, 20, 20])
        and box["area"] == pytest.approx(400)
    )
    assert polygon["category_id"] == 1 and "segmentation" not in box
    assert polygon["segmentation"] == [pytest.approx([10, 10, 30, 10, 20, 30])]  # pixels
    assert polygon["bbox"] == pytest.approx([10, 10, 20, 20]) and polygon["area"] == pytest.approx(200)
    assert label_path(root / "images" / "train" / "a.png") == root / "labels" / "train" / "a.txt"


def test_detect_format_and_no_layout(tmp_path: Path, synth: dict[str, Path]) -> None:
    assert detect_format(synth["coco"]) == "coco" and detect_format(synth["yolo"]) == "yolo"
    assert detect_format(synth["coco"] / "annotations" / "instances_val.json") == "coco"
    assert detect_format(synth["yolo"] / "data.yaml") == "yolo"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no detection dataset found.*COCO.*YOLO.*VOC"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DataError, match="no such"):
        load_detection(tmp_path / "missing")


# ---- round trips ----


def test_coco_yolo_coco_round_trip_keeps_boxes_keypoints_categories(
    tmp_path: Path, synth: dict[str, Path]
) -> None:
    src = load_detection(synth["coco"])
    write_yolo(tmp_path / "yolo", src)
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())["kpt_shape"] == [4, 3]
    write_coco(tmp_path / "coco", load_detection(tmp_path / "yolo"))
    back = load_detection(tmp_path / "coco")
    keep = ("id", "name", "keypoints", "skeleton")
    assert [{k: c[k] for k in keep} for c in back.categories] == [
        {k: c[k] for k in keep} for c in src.categories
    ]
    a, b = _by_stem(src), _by_stem(back)
    assert a.keys() == b.keys()  # same splits, same images
    for key, sample in a.items():
        assert src.sizes[sample.path] == back.sizes[b[key].path]
        assert [o["category_id"] for o in sample.objects] == [o["category_id"] for o in b[key].objects]
        for obj, new in zip(sample.objects, b[key].objects, strict=True):
            np.testing.assert_allclose(new["bbox"], obj["bbox"], atol=1e-3)
            old_kps, new_kps = np.reshape(obj["keypoints"], (-1, 3)), np.reshape(new["keypoints"], (-1, 3))
            np.testing.assert_allclose(new_kps[:, :2], old_kps[:, :2], atol=1e-3)
            assert new_kps[:, 2].tolist() == old_kps[:, 2].tolist()
    # the written COCO file is valid for pycocotools
    api = COCO(str(tmp_path / "coco" / "annotations" / "instances_train.json"))
    assert len(api.getImgIds()) == len(src.splits["train"])


def test_yolo_seg_coco_yolo_round_trip_keeps_polygons(tmp_path: Path, synth: dict[str, Path]) -> None:
    convert(synth["yolo-seg"], "coco", tmp_path / "coco")
    convert(tmp_path / "coco", "yolo", tmp_path / "yolo")
    src, back = load_detection(synth["yolo-seg"]), load_detection(tmp_path / "yolo")
    a, b = _by_stem(src), _by_stem(back)
    assert a.keys() == b.keys() and back.classes == src.classes
    for key, sample in a.items():
        for obj, new in zip(sample.objects, b[key].objects, strict=True):
            np.testing.assert_allclose(new["segmentation"][0], obj["segmentation"][0], atol=1e-3)
            np.testing.assert_allclose(new["bbox"], obj["bbox"], atol=1e-3)
    # the COCO polygons are in pixels and give pycocotools the same area as the shoelace formula
    api = COCO(str(tmp_path / "coco" / "annotations" / "instances_train.json"))
    ann = api.loadAnns(api.getAnnIds())[0]
    x0, y0, w, h = ann["bbox"]
    xy = np.reshape(ann["segmentation"][0], (-1, 2))
    assert [x0, y0, x0 + w, y0 + h] == pytest.approx([*xy.min(0), *xy.max(0)])
    assert abs(api.annToMask(ann).sum() - ann["area"]) <= 0.6 * len(xy)  # rasterised vs exact area


def test_yolo_precision_at_640_and_flip_idx(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = _image(tmp_path / "src" / "big.png", 640, 480)
    objects = []
    for _ in range(50):
        x, y = rng.uniform(0, 500), rng.uniform(0, 380)
        w, h = rng.uniform(1, 640 - x), rng.uniform(1, 480 - y)
        kps = [float(rng.uniform(0, 640)), float(rng.uniform(0, 480)), 2, 0.0, 0.0, 0]
        objects.append(
            {"category_id": 7, "bbox": [x, y, w, h], "iscrowd": 0, "area": w * h, "keypoints": kps}
        )
    cat = {"id": 7, "name": "thing", "keypoints": ["left", "right"], "skeleton": [[1, 2]], "flip_idx": [1, 0]}
    data = DetectionData(
        {"train": [Sample(str(img), objects=objects)]}, [cat], {str(img): (480, 640)}, "coco"
    )
    assert data.skeleton == [(0, 1)] and data.flip_idx == [1, 0]
    write_yolo(tmp_path / "yolo", data)
    back = load_detection(tmp_path / "yolo")
    assert back.categories == [{**cat, "id": 1}]  # class index + 1
    for obj, new in zip(objects, back.splits["train"][0].objects, strict=True):
        np.testing.assert_allclose(new["bbox"], obj["bbox"], atol=1e-3)
        np.testing.assert_allclose(new["keypoints"], obj["keypoints"], atol=1e-3)


def test_voc_round_trip_rounds_to_pixel_edges(tmp_path: Path, synth: dict[str, Path]) -> None:
    img = _image(tmp_path / "src" / "p.png", 32, 32)
    objects = [
        {"category_id": 1, "bbox": [2.4, 3.6, 10.2, 5.0], "iscrowd": 0, "area": 51.0},
        {"category_id": 2, "bbox": [0.0, 0.0, 32.0, 32.0], "iscrowd": 1, "area": 1024.0},
    ]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    data = DetectionData({"val": [Sample(str(img), objects=objects)]}, cats, {str(img): (32, 32)}, "coco")
    write_voc(tmp_path / "voc", data)
    xml = ET.parse(tmp_path / "voc" / "Annotations" / "p.xml").getroot()
    boxes = [
        [int(o.find(f"bndbox/{t}").text) for t in ("xmin", "ymin", "xmax", "ymax")]
        for o in xml.iter("object")
    ]
    assert boxes == [[3, 5, 13, 9], [1, 1, 32, 32]]  # edges 2..13, 4..9 (rounded), 1-based inclusive
    assert [o.find("difficult").text for o in xml.iter("object")] == ["0", "1"]
    back = load_detection(tmp_path / "voc")
    assert back.classes == ["a", "b"] and list(back.splits) == ["val"]
    assert [o["bbox"] for o in back.splits["val"][0].objects] == [[2, 4, 11, 5], [0, 0, 32, 32]]
    assert [o["iscrowd"] for o in back.splits["val"][0].objects] == [0, 1]
    # synthetic boxes lie on pixel edges already: COCO -> VOC -> COCO keeps them exactly
    src = load_detection(synth["coco"])
    convert(synth["coco"], "voc", tmp_path / "voc2")
    convert(tmp_path / "voc2", "coco", tmp_path / "coco2")
    again = load_detection(tmp_path / "coco2")
    assert again.classes == src.classes and [c["id"] for c in again.categories] == [1, 2, 3, 4]
    a, b = _by_stem(src), _by_stem(again)
    assert a.keys() == b.keys()
    for key, sample in a.items():
        assert [o["bbox"] for o in b[key].objects] == [o["bbox"] for o in sample.objects]
        assert [o["category_id"] for o in b[key].objects] == [o["category_id"] for o in sample.objects]


def test_coco_single_file_layout_round_trip(tmp_path: Path, synth: dict[str, Path]) -> None:
    src = load_detection(synth["coco"] / "annotations" / "instances_train.json", fmt="coco")
    assert list(src.splits) == ["all"] and len(src.splits["all"]) == 10
    write_coco(tmp_path / "one", src)
    assert (tmp_path / "one" / "annotations.json").is_file() and len(
        list((tmp_path / "one" / "images").iterdir())
    ) == 10
    back = load_detection(tmp_path / "one")
    doc = json.loads((tmp_path / "one" / "annotations.json").read_text())
    ids = [a["id"] for a in doc["annotations"]]
    assert ids == [o["id"] for s in src.splits["all"] for o in s.objects]  # distinct ids are kept
    assert [o["bbox"] for s in back.splits["all"] for o in s.objects] == [
        o["bbox"] for s in src.splits["all"] for o in s.objects
    ]
    # 'all' has no YOLO key: it becomes train
    write_yolo(tmp_path / "y", back, mode="detect")
    assert list(load_detection(tmp_path / "y").splits) == ["train"]


def test_writers_refuse_non_empty_output(tmp_path: Path, synth: dict[str, Path]) -> None:
    data = load_detection(synth["yolo"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    for writer in (write_coco, write_yolo, write_voc):
        with pytest.raises(DataError, match="full.*not empty"):
            writer(tmp_path / "full", data)
    with pytest.raises(DataError, match="full.*not empty"):
        convert(synth["yolo"], "coco", tmp_path / "full")


def test_cli_convert(tmp_path: Path, synth: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "voc"
    assert main(["data", "convert", str(synth["yolo"]), "--to", "voc", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (
        result["from"] == "yolo"
        and result["to"] == "voc"
        and result["images"] == {"train": 10, "val": 1, "test": 1}
    )
    assert result["classes"] == list(CLASSES) and len(list((out / "Annotations").glob("*.xml"))) == 12
    assert result["objects"] == sum(len(s.objects) for p in load_detection(out).splits.values() for s in p)
    # a second run into the same folder, and a folder without a dataset: exit 2 with one line
    assert main(["data", "convert", str(synth["yolo"]), "--to", "voc", "--out", str(out)]) == 2
    assert (
        main(["data", "convert", str(tmp_path / "nothing"), "--to", "coco", "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not empty" in err[0] and "no such dataset" in err[1]
