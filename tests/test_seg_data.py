"""Reading segmentation data (images + masks, COCO), class files, mask decoding and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from foveal.data.formats.coco import coco_semantic_mask, find_coco, read_coco
from foveal.data.formats.masks import MaskSpec, decode_mask, read_class_file, read_mask_folder
from foveal.data.sample import Sample
from foveal.data.seg_loading import check_masks, decode_target, load_segmentation
from foveal.data.synth_writers import write_synthetic
from foveal.data.synthetic import CLASSES, generate
from foveal.errors import ConfigError, DataError
from tests.conftest import make_image

NAMES = ["background", *CLASSES]
PALETTE = [(0, 0, 0), (250, 0, 0), (0, 240, 0), (0, 0, 230)]


@pytest.fixture(scope="module")
def scenes() -> list:
    """The scenes that write_synthetic(n=40, imgsz=32, seed=5) writes, for exact comparisons."""
    return list(generate(40, 32, 5))


def _index_map(seed: int, shape: tuple[int, int] = (12, 16), k: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, shape).astype(np.uint8)


def _pair(root: Path, stem: str, mask: Image.Image, image_ext: str = ".png", size: int | None = None) -> None:
    """Write ``root/images/<stem><ext>`` (the mask's size unless ``size``) and ``root/masks/<stem>.png``."""
    w, h = mask.size
    image = root / "images" / f"{stem}{image_ext}"
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size or h, size or w, 3), 90, np.uint8)).save(image)
    (root / "masks" / stem).parent.mkdir(parents=True, exist_ok=True)
    mask.save(root / "masks" / f"{stem}.png")


def _palette_mask(values: np.ndarray) -> Image.Image:
    image = Image.fromarray(values, mode="P")
    colours = [*PALETTE, *[(224, 224, 192)] * 252]  # 256 entries, so index 255 survives saving
    image.putpalette([v for colour in colours for v in colour])
    return image


def _rgb_mask(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(PALETTE, np.uint8)[values])


# --- synthetic datasets: both written formats load and decode to the generator's semantic maps ---


def test_synthetic_masks_load_and_decode_exactly(tmp_path: Path, scenes: list) -> None:
    root = write_synthetic(tmp_path / "m", n=40, imgsz=32, seed=5, fmt="masks")
    splits, spec = load_segmentation(root)
    assert spec.class_names == NAMES and spec.colours is None
    assert sorted(splits) == ["test", "train", "val"]
    assert sum(len(s) for s in splits.values()) == 40
    for sample in [s for part in splits.values() for s in part]:
        assert Path(sample.path).parent.parent.name == Path(sample.mask).parent.parent.name
        target = decode_target(sample, spec, size=(32, 32))
        assert target.dtype == np.int64
        np.testing.assert_array_equal(target, scenes[int(Path(sample.path).stem)].semantic)
    assert len(check_masks(splits["train"], spec)) == len(splits["train"])


def test_synthetic_coco_loads_and_matches_pycocotools(tmp_path: Path, scenes: list) -> None:
    root = write_synthetic(tmp_path / "c", n=40, imgsz=32, seed=5, fmt="coco")
    assert set(find_coco(root)) == {"train", "val", "test"}
    splits, spec = load_segmentation(root)
    assert spec.class_names == NAMES
    assert spec.category_to_index == {i + 1: i + 1 for i in range(len(CLASSES))}
    coco = COCO(str(root / "annotations" / "instances_val.json"))
    for sample in splits["val"]:
        index = int(Path(sample.path).stem)
        target = decode_target(sample, spec)
        np.testing.assert_array_equal(target, scenes[index].semantic)
        reference = np.zeros((32, 32), np.int64)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=index + 1)):
            reference[coco.annToMask(ann) > 0] = ann["category_id"]
        np.testing.assert_array_equal(target, reference)
        assert {"category_id", "bbox", "segmentation", "iscrowd", "area", "keypoints"} <= set(
            sample.objects[0]
        )


# --- layouts ---


def test_flat_layout_gets_a_seeded_split_and_inferred_classes(tmp_path: Path) -> None:
    for i in range(10):
        _pair(tmp_path, f"im{i}", Image.fromarray(_index_map(i, k=3 + (i == 4)), mode="L"), image_ext=".jpg")
    splits, spec = load_segmentation(tmp_path, val_fraction=0.3, seed=1)
    assert spec.class_names == ["background", "class_1", "class_2", "class_3"]
    assert len(splits["val"]) == 3 and len(splits["train"]) == 7
    assert not {s.path for s in splits["val"]} & {s.path for s in splits["train"]}
    assert list(load_segmentation(tmp_path, split_off_val=False)[0]) == ["all"]
    again, _ = load_segmentation(tmp_path, val_fraction=0.3, seed=1)
    assert [s.path for s in again["val"]] == [s.path for s in splits["val"]]
    other, _ = load_segmentation(tmp_path, val_fraction=0.3, seed=2)
    assert {s.path for s in other["val"]} != {s.path for s in splits["val"]}
    assert all(Path(s.mask).stem == Path(s.path).stem and s.path.endswith(".jpg") for s in splits["train"])


def test_images_split_layout_and_nested_stems(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for i in range(2):
            mask = Image.fromarray(_index_map(i), mode="L")
            _pair(tmp_path, f"{split}/sub/a{i}", mask)
    (tmp_path / "classes.txt").write_text("background\nroad\ncar\n\nsky\n")
    found, spec = read_mask_folder(tmp_path)
    assert sorted(found) == ["train", "val"] and spec.class_names == ["background", "road", "car", "sky"]
    sample = found["val"][1]
    assert Path(sample.path).parts[-4:] == ("images", "val", "sub", "a1.png")
    assert Path(sample.mask).parts[-4:] == ("masks", "val", "sub", "a1.png")
    splits, _ = load_segmentation(tmp_path)
    assert [len(splits["train"]), len(splits["val"])] == [2, 2]


def test_separate_val_folder_uses_the_train_classes(tmp_path: Path) -> None:
    for i in range(4):
        _pair(tmp_path / "tr", f"a{i}", Image.fromarray(_index_map(i), mode="L"))
    _pair(tmp_path / "va", "b", Image.fromarray(_index_map(9, k=2), mode="L"))
    splits, spec = load_segmentation(tmp_path / "tr", val=tmp_path / "va")
    assert len(spec.class_names) == 4 and len(splits["train"]) == 4
    assert [Path(s.path).name for s in splits["val"]] == ["b.png"]


# --- decoding index, palette and RGB masks ---


def test_index_palette_and_rgb_masks_decode_exactly(tmp_path: Path) -> None:
    values = _index_map(3)
    values[0, :3] = 255  # ignore
    spec = MaskSpec(["bg", "a", "b", "c"], colours=PALETTE)
    Image.fromarray(values, mode="L").save(tmp_path / "l.png")
    _palette_mask(values).save(tmp_path / "p.png")
    Image.fromarray(values.astype(np.uint16) * 1).save(tmp_path / "i16.png")
    for name in ("l.png", "p.png", "i16.png"):
        decoded = decode_mask(str(tmp_path / name), spec)
        assert decoded.dtype == np.int64
        np.testing.assert_array_equal(decoded, values)
    rgb = values.copy()
    rgb[values == 255] = 0
    _rgb_mask(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(decode_mask(str(tmp_path / "rgb.png"), spec), rgb)


def test_palette_masks_without_class_file_keep_indices_and_lend_colours(tmp_path: Path) -> None:
    for i in range(3):
        _pair(tmp_path, f"p{i}", _palette_mask(_index_map(i)))
    splits, spec = read_mask_folder(tmp_path)
    assert spec.class_names == ["background", "class_1", "class_2", "class_3"] and spec.colours == PALETTE
    np.testing.assert_array_equal(decode_mask(splits["all"][2].mask, spec), _index_map(2))


def test_rgb_masks_without_colour_table_ask_for_classes_yaml(tmp_path: Path) -> None:
    _pair(tmp_path, "c", _rgb_mask(_index_map(1)))
    with pytest.raises(DataError, match=r"c\.png.*add classes\.yaml"):
        read_mask_folder(tmp_path)


# --- class files ---


@pytest.mark.parametrize(
    ("text", "colours"),
    [
        ("- bg\n- a\n- b\n- c\n", None),
        ("bg: [0, 0, 0]\na: [250, 0, 0]\nb: [0, 240, 0]\nc: [0, 0, 230]\n", PALETTE),
        ("- {name: bg, color: [0, 0, 0]}\n- {name: a, color: [250, 0, 0]}\n"
         "- {name: b, colour: [0, 240, 0]}\n- {name: c, color: [0, 0, 230]}\n", PALETTE),
        ("names: {0: bg, 1: a, 2: b, 3: c}\n", None),
    ],
)  # fmt: skip
def test_classes_yaml_variants(tmp_path: Path, text: str, colours: list | None) -> None:
    (tmp_path / "classes.yaml").write_text(text)
    spec = read_class_file(tmp_path / "classes.yaml")
    assert spec.class_names == ["bg", "a", "b", "c"] and spec.colours == colours


def test_classes_txt_with_colours_decodes_rgb_masks(tmp_path: Path) -> None:
    values = _index_map(4)
    _pair(tmp_path, "x", _rgb_mask(values))
    (tmp_path / "classes.txt").write_text("back ground 0 0 0\ncat 250 0 0\ndog 0 240 0\nbird 0 0 230\n")
    splits, spec = read_mask_folder(tmp_path)
    assert spec.class_names == ["back ground", "cat", "dog", "bird"] and spec.colours == PALETTE
    np.testing.assert_array_equal(decode_target(splits["all"][0], spec, size=(16, 12)), values)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("classes.yaml", "a: [0, 0]\n", r"class 'a' has colour \[0, 0\]"),
        ("classes.yaml", "- {name: a, color: [1, 2, 3]}\n- b\n", "some classes have a colour"),
        ("classes.yaml", "[a, b\n", "not valid YAML"),
        ("classes.yaml", "- a\n- a\n", r"\['a'\] listed twice"),
        ("classes.yaml", "a: [1, 1, 1]\nb: [1, 1, 1]\n", "share one colour"),
        ("classes.txt", "\n# nothing\n", "no classes listed"),
        ("classes.yaml", "", "no classes listed"),
        ("classes.yaml", "7\n", "expected a list of class names"),
    ],
)
def test_bad_class_files_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=rf"{name}: .*{message}"):
        read_class_file(tmp_path / name)


# --- COCO rendering ---


def test_coco_polygon_rle_and_crowd_match_pycocotools(tmp_path: Path) -> None:
    h, w = 20, 24
    square = np.zeros((h, w), np.uint8)
    square[2:9, 3:12] = 1
    blob = np.zeros((h, w), np.uint8)
    blob[6:15, 8:20] = 1
    compressed = mask_utils.encode(np.asfortranarray(blob))
    compressed["counts"] = compressed["counts"].decode()
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((3, 3), np.uint8), ((16, 1), (1, 20)))))
    crowd["counts"] = crowd["counts"].decode()
    polygons = [[1, 1, 14, 1, 14, 12, 1, 12], [20, 1, 23]]  # the second, a single point, draws nothing
    uncompressed = {"size": [h, w], "counts": [int(c) for c in _runs(square)]}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": polygons},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": compressed},
        {"id": 3, "image_id": 1, "category_id": 7, "segmentation": uncompressed, "iscrowd": 0},
        {"id": 4, "image_id": 1, "category_id": 3, "segmentation": crowd, "iscrowd": 1},
    ]
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
        "annotations": anns,
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
    }
    (tmp_path / "images").mkdir()
    Image.new("RGB", (w, h)).save(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    samples, categories = read_coco(tmp_path / "annotations.json", tmp_path / "images")
    assert len(categories) == 2 and "image_id" not in samples[0].objects[0]
    mapping = {3: 1, 7: 2}
    out = coco_semantic_mask(samples[0].objects, h, w, mapping)
    coco = COCO(str(tmp_path / "annotations.json"))
    reference = np.zeros((h, w), np.int64)
    for ann in coco.loadAnns([1, 2, 3, 4]):  # later annotations over earlier ones
        reference[coco.annToMask(ann) > 0] = 255 if ann.get("iscrowd") else mapping[ann["category_id"]]
    np.testing.assert_array_equal(out, reference)
    assert set(np.unique(out)) == {0, 1, 2, 255} and (out[16:19, 1:4] == 255).all()
    given = MaskSpec(["background", "dog", "cat"])
    splits, spec = load_segmentation(tmp_path, class_spec=given, split_off_val=False)
    assert spec.category_to_index == mapping and given.category_to_index is None and list(splits) == ["all"]
    np.testing.assert_array_equal(decode_target(splits["all"][0], spec), reference)
    assert MaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    return ([0] if flat[0] else []) + np.diff(bounds).tolist()


# --- bad input: each error names the file and the fix ---


def test_image_without_mask_errors_or_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(6):
        _pair(tmp_path, f"a{i}", Image.fromarray(_index_map(i), mode="L"))
    for i in (2, 4):
        (tmp_path / "masks" / f"a{i}.png").unlink()
    make_image(tmp_path / "masks" / "orphan.png")
    with pytest.raises(DataError, match=r"a2\.png: no mask .*\(and 1 more .*--on-bad-image skip"):
        read_mask_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        splits, _ = read_mask_folder(tmp_path, on_bad_image="skip")
    assert [Path(s.path).stem for s in splits["all"]] == ["a0", "a1", "a3", "a5"]
    skipped = [r.getMessage() for r in caplog.records if "without a mask" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 2 image(s)" in skipped[0] and "a2.png" in skipped[0]
    assert any("1 mask(s) without an image" in r.getMessage() and "orphan.png" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_no_masks_at_all(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "a.png")
    with pytest.raises(DataError, match=r"a\.png: no mask for this image, nor for any other"):
        read_mask_folder(tmp_path)
    with pytest.raises(DataError, match="no images/ folder"):
        load_segmentation(tmp_path / "images")


def test_bad_masks_fail_fast_or_are_skipped_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _pair(tmp_path, "good", Image.fromarray(_index_map(0), mode="L"))
    _pair(tmp_path, "small", Image.fromarray(_index_map(1), mode="L"), size=10)
    bad_value = _index_map(2)
    bad_value[3, 3] = 9
    _pair(tmp_path, "value", Image.fromarray(bad_value, mode="L"))
    (tmp_path / "classes.txt").write_text("bg\na\nb\nc\n")
    splits, spec = read_mask_folder(tmp_path)
    samples = {Path(s.path).stem: s for s in splits["all"]}
    with pytest.raises(
        DataError, match=r"small\.png: mask is 16x12 pixels but its image .*small\.png is 10x10"
    ):
        check_masks([samples["small"]], spec)
    with pytest.raises(DataError, match=r"value\.png: mask value 9 \(1 pixels\) .*classes\.txt"):
        check_masks([samples["value"]], spec)
    with pytest.raises(DataError, match=r"\(and 1 more bad masks\)"):
        check_masks(list(samples.values()), spec)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        kept = check_masks(list(samples.values()), spec, on_bad_image="skip")
    assert [Path(s.path).stem for s in kept] == ["good"]
    assert "skipped 2 image(s) with a bad mask of 3" in caplog.text


def test_unknown_rgb_colour_names_file_colour_and_count(tmp_path: Path) -> None:
    values = _index_map(5)
    rgb = np.asarray(PALETTE, np.uint8)[values]
    rgb[:2, :3] = (7, 8, 9)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"m\.png: colour \(7, 8, 9\) \(6 pixels\) .*classes\.yaml"):
        decode_mask(str(tmp_path / "m.png"), MaskSpec(["a", "b", "c", "d"], colours=PALETTE))


def test_coco_bad_input(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"annotations\.json: not valid JSON"):
        load_segmentation(tmp_path)
    doc = {
        "images": [{"id": i, "file_name": f"{i}.png"} for i in range(3)],
        "annotations": [{"id": 5, "image_id": 0, "category_id": 2, "segmentation": [[0, 0, 4, 0, 4, 4]]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"0\.png: image listed in .*annotations\.json not found \(3 of 3"):
        read_coco(tmp_path / "annotations.json", tmp_path)
    for i in range(3):
        make_image(tmp_path / "images" / f"{i}.png")
    with pytest.raises(DataError, match=r"annotations\.json: annotation 5 has category_id 2"):
        load_segmentation(tmp_path)
    sample = Sample(str(tmp_path / "images" / "0.png"), objects=doc["annotations"])
    with pytest.raises(DataError, match=r"0\.png: annotation 5: category_id 2"):
        decode_target(sample, MaskSpec(["background", "cat"], category_to_index={1: 1}))


def test_mask_spec_rejects_an_ignore_index_inside_the_classes() -> None:
    with pytest.raises(ConfigError, match="ignore index 2"):
        MaskSpec(["a", "b", "c"], ignore_index=2)


def test_masks_matching_no_image_or_only_background(tmp_path: Path) -> None:
    _pair(tmp_path, "a", Image.fromarray(np.zeros((8, 8), np.uint8), mode="L"))
    with pytest.raises(DataError, match="every mask holds only background"):
        read_mask_folder(tmp_path)
    (tmp_path / "masks" / "a.png").rename(tmp_path / "masks" / "b.png")
    with pytest.raises(DataError, match=r"a\.png: no mask with this file name"):
        read_mask_folder(tmp_path)
    with pytest.raises(DataError, match="no image has a mask"):
        read_mask_folder(tmp_path, on_bad_image="skip")


def test_check_masks_covers_coco_targets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_image(tmp_path / "a.png", size=16)
    good = Sample(
        str(tmp_path / "a.png"), objects=[{"id": 1, "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}]
    )
    rle = {"size": [8, 8], "counts": [64]}
    bad = Sample(str(tmp_path / "a.png"), objects=[{"id": 2, "category_id": 1, "segmentation": rle}])
    spec = MaskSpec(["background", "cat"], category_to_index={1: 1})
    with pytest.raises(
        DataError, match=r"a\.png: annotation 2: RLE size \[8, 8\] is not the image's \[16, 16\]"
    ):
        check_masks([good, bad], spec)
    with caplog.at_level(logging.WARNING, logger="foveal"):
        assert check_masks([good, bad], spec, on_bad_image="skip") == [good]
    assert "skipped 1 image(s) with a bad mask of 2" in caplog.text
