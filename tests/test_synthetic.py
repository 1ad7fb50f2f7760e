"""Tests for the synthetic shapes generator and its dataset writers."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.ops import masks_to_boxes

from foveal.data.synth_writers import rle_encode, write_synthetic
from foveal.data.synthetic import CLASSES, KEYPOINTS_PER_CLASS, MAX_KEYPOINTS, generate, generate_scene
from foveal.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def multi() -> list:
    return list(generate(150, imgsz=48, seed=3, max_objects=4))


@pytest.fixture(scope="module")
def single() -> list:
    return list(generate(400, imgsz=48, seed=4, single_object=True))


def _tight_box(mask: np.ndarray) -> np.ndarray:
    """Reference: torchvision's inclusive box, +1 on the max side for pixel-edge coordinates."""
    box = masks_to_boxes(torch.from_numpy(mask)[None])[0].numpy()
    return box + np.array([0, 0, 1, 1], dtype=np.float32)


def _rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2
    return np.repeat(values, rle["counts"]).astype(bool).reshape((h, w), order="F")


def test_same_seed_same_scenes_other_seed_differs() -> None:
    a, b = list(generate(5, 32, seed=7)), list(generate(5, 32, seed=7))
    c = list(generate(5, 32, seed=8))
    for sa, sb in zip(a, b, strict=True):
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.semantic, sb.semantic)
        assert len(sa.objects) == len(sb.objects)
        for oa, ob in zip(sa.objects, sb.objects, strict=True):
            assert oa.cls == ob.cls and np.array_equal(oa.mask, ob.mask)
            assert np.array_equal(oa.box, ob.box) and np.array_equal(oa.keypoints, ob.keypoints)
    assert not all(np.array_equal(sa.image, sc.image) for sa, sc in zip(a, c, strict=True))


def test_scene_shapes_and_dtypes(multi: list) -> None:
    scene = multi[0]
    assert scene.image.shape == (48, 48, 3) and scene.image.dtype == np.uint8
    assert scene.semantic.shape == (48, 48) and scene.semantic.dtype == np.uint8
    counts = np.bincount([len(s.objects) for s in multi], minlength=5)
    assert counts[0] == 0 and counts[1:].min() > 0  # 1..4 objects, every count occurs
    for obj in scene.objects:
        assert obj.box.shape == (4,) and obj.box.dtype == np.float32
        assert obj.mask.shape == (48, 48) and obj.mask.dtype == bool
        assert obj.keypoints.shape == (KEYPOINTS_PER_CLASS[obj.cls], 3) and obj.keypoints.dtype == np.float32


def test_boxes_are_tight_boxes_of_masks(multi: list, single: list) -> None:
    for scene in multi + single:
        for obj in scene.objects:
            assert obj.mask.any()
            np.testing.assert_array_equal(obj.box, _tight_box(obj.mask))


def test_semantic_map_agrees_with_instance_masks(multi: list) -> None:
    for scene in multi:
        expected = np.zeros_like(scene.semantic)
        covered = np.zeros(scene.semantic.shape, dtype=int)
        for obj in scene.objects:
            expected[obj.mask] = obj.cls + 1
            covered += obj.mask
        assert covered.max() <= 1  # visible instance masks never overlap
        np.testing.assert_array_equal(scene.semantic, expected)


def test_every_object_keeps_visible_pixels(multi: list) -> None:
    assert all(obj.mask.sum() >= 8 for s in multi for obj in s.objects)


def test_objects_are_drawn_in_their_colour(single: list) -> None:
    for scene in single[:50]:
        mask = scene.objects[0].mask
        inside, outside = scene.image[mask].mean(0), scene.image[~mask].mean(0)
        assert np.linalg.norm(inside - outside) > 40  # contrast that a CNN can learn from


def test_keypoints_lie_near_their_box(multi: list, single: list) -> None:
    visible_seen = occluded_seen = 0
    for scene in multi + single:
        for obj in scene.objects:
            for x, y, v in obj.keypoints:
                assert v in (0, 1, 2)
                if v == 0:
                    assert x == 0 and y == 0
                    continue
                x0, y0, x1, y1 = obj.box
                tol = 2.0 if v == 2 else scene.image.shape[0]
                assert x0 - tol <= x <= x1 + tol and y0 - tol <= y <= y1 + tol
                visible_seen += v == 2
                occluded_seen += v == 1
    assert visible_seen > 100 and occluded_seen > 0
    # a lone object inside the image shows all its keypoints
    assert all((o.keypoints[:, 2] == 2).all() for s in single for o in s.objects)


def test_single_object_size_and_class_balance(single: list) -> None:
    classes = np.array([s.objects[0].cls for s in single])
    counts = np.bincount(classes, minlength=len(CLASSES))
    assert counts.min() >= 70 and counts.max() <= 130  # 100 expected per class
    boxes = np.stack([s.objects[0].box for s in single])
    extents = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 48
    assert extents.min() >= 0.25 and extents.max() <= 0.8 + 2 / 48  # + rasterisation
    # colour independent of class: mean object colour per class stays close
    means = np.array(
        [
            np.mean([s.image[s.objects[0].mask].mean() for s in single if s.objects[0].cls == c])
            for c in range(len(CLASSES))
        ]
    )
    assert means.max() - means.min() < 30


def test_generate_scene_and_bad_arguments() -> None:
    scene = generate_scene(np.random.default_rng(0), imgsz=32, n_objects=3)
    assert 1 <= len(scene.objects) <= 3
    with pytest.raises(ConfigError, match="imgsz"):
        generate(2, imgsz=8)
    with pytest.raises(ConfigError, match="max_objects"):
        generate(2, max_objects=0)


def test_rle_round_trip() -> None:
    mask = np.zeros((5, 4), dtype=bool)
    mask[0, 0] = mask[2:4, 1:3] = True
    rle = rle_encode(mask)
    assert rle["size"] == [5, 4] and rle["counts"][:3] == [0, 1, 6]  # column-major, zeros first
    np.testing.assert_array_equal(_rle_decode(rle), mask)


def test_imagefolder_layout(tmp_path) -> None:
    out = write_synthetic(tmp_path / "ds", n=40, imgsz=32, seed=1, fmt="imagefolder")
    files = sorted(out.glob("*/*/*.png"))
    assert len(files) == 40 and (out / "README.txt").read_text().count("seed 1") == 1
    splits = {f.parts[-3] for f in files}
    assert splits == {"train", "val", "test"} and {f.parts[-2] for f in files} <= set(CLASSES)
    assert sum(f.parts[-3] == "train" for f in files) == 32
    scenes = list(generate(40, 32, seed=1, single_object=True))
    for f in files:
        with Image.open(f) as im:
            assert im.mode == "RGB" and im.size == (32, 32)
            scene = scenes[int(f.stem)]
            np.testing.assert_array_equal(np.asarray(im), scene.image)
            assert f.parts[-2] == CLASSES[scene.objects[0].cls]
    again = write_synthetic(tmp_path / "again", n=40, imgsz=32, seed=1, fmt="imagefolder")
    assert sorted(p.relative_to(again) for p in again.rglob("*.png")) == [p.relative_to(out) for p in files]


def test_csv_layout(tmp_path) -> None:
    out = write_synthetic(tmp_path / "ds", n=12, imgsz=32, seed=2, fmt="csv")
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and list(rows[0]) == ["path", "labels"]
    for row, scene in zip(rows, generate(12, 32, seed=2), strict=True):
        with Image.open(out / row["path"]) as im:
            assert im.mode == "RGB"
        assert row["labels"].split(";") == [CLASSES[c] for c in sorted({o.cls for o in scene.objects})]


def test_coco_layout(tmp_path) -> None:
    out = write_synthetic(tmp_path / "ds", n=20, imgsz=32, seed=3, fmt="coco")
    n_images, ann_ids = 0, []
    for split in ("train", "val", "test"):
        doc = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        assert [c["id"] for c in doc["categories"]] == [1, 2, 3, 4]
        for cat in doc["categories"]:
            assert cat["supercategory"] == "shape" and len(cat["keypoints"]) == MAX_KEYPOINTS
        assert doc["categories"][2]["skeleton"] == [[1, 2], [2, 3], [3, 1]]
        images = {im["id"]: im for im in doc["images"]}
        n_images += len(images)
        for ann in doc["annotations"]:
            ann_ids.append(ann["id"])
            im = images[ann["image_id"]]
            with Image.open(out / "images" / split / im["file_name"]) as pil:
                assert pil.size == (im["width"], im["height"]) == (32, 32)
            mask = _rle_decode(ann["segmentation"])
            x0, y0, x1, y1 = _tight_box(mask)
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
            assert ann["area"] == mask.sum() and ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 4
            kps = np.array(ann["keypoints"]).reshape(MAX_KEYPOINTS, 3)
            assert ann["num_keypoints"] == np.count_nonzero(kps[:, 2])
            assert (kps[KEYPOINTS_PER_CLASS[ann["category_id"] - 1] :] == 0).all()
    assert n_images == 20
    assert len(ann_ids) == len(set(ann_ids)) > 20


def test_yolo_layout(tmp_path) -> None:
    out = write_synthetic(tmp_path / "ds", n=20, imgsz=32, seed=4, fmt="yolo", splits=(0.5, 0.5, 0.0))
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(CLASSES)) and data["train"] == "images/train"
    assert data["val"] == "images/val" and "test" not in data
    scenes = list(generate(20, 32, seed=4))
    labels = sorted(out.glob("labels/*/*.txt"))
    assert len(labels) == 20 and len(list(out.glob("images/*/*.png"))) == 20
    for f in labels:
        assert (out / "images" / f.parent.name / f"{f.stem}.png").exists()
        rows = np.loadtxt(f, ndmin=2)
        assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
        objs = scenes[int(f.stem)].objects
        np.testing.assert_array_equal(rows[:, 0], [o.cls for o in objs])
        np.testing.assert_allclose(rows[:, 3] * 32, [o.box[2] - o.box[0] for o in objs], atol=1e-4)


def test_masks_layout(tmp_path) -> None:
    out = write_synthetic(tmp_path / "ds", n=10, imgsz=32, seed=5, fmt="masks")
    assert (out / "classes.txt").read_text().split() == ["background", *CLASSES]
    masks = sorted(out.glob("*/masks/*.png"))
    assert len(masks) == 10
    scenes = list(generate(10, 32, seed=5))
    for f in masks:
        with Image.open(f) as im, Image.open(f.parent.parent / "images" / f.name) as img:
            assert im.mode == "L" and img.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), scenes[int(f.stem)].semantic)


def test_non_empty_folder_and_unknown_format(tmp_path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="full.*empty"):
        write_synthetic(tmp_path / "full", n=2)
    with pytest.raises(ConfigError, match="did you mean: coco"):
        write_synthetic(tmp_path / "new", n=2, fmt="cocoo")
    with pytest.raises(ConfigError, match="splits"):
        write_synthetic(tmp_path / "new", n=2, splits=(0.5, 0.2, 0.2))
    assert not (tmp_path / "new").exists()


def test_generation_speed() -> None:
    start = time.perf_counter()
    for _ in generate(500, imgsz=64, seed=0):
        pass
    elapsed = time.perf_counter() - start
    print(f"\nshapes: 500 multi-object 64 px scenes in {elapsed:.2f} s ({4 * elapsed:.2f} s per 2,000)")
