"""``foveal data eda``: statistics against numpy / the written files, a self-contained escaped page."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.cli.main import main
from foveal.data.eda import eda_dataset
from foveal.data.health import check_dataset, check_dataset_records
from foveal.data.synth_writers import write_synthetic
from foveal.errors import DataError
from foveal.report.eda_html import write_eda_html

XSS = "<script>alert(1)</script>"


def _image(
    path: Path, seed: int, size: tuple[int, int] = (16, 12), mode: str = "RGB", fmt: str = "PNG"
) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    if mode == "RGBA":
        array[..., 3] = np.where(rng.random((size[1], size[0])) < 0.5, 0, 255)  # exact compositing
        image = Image.fromarray(array, mode="RGBA")
    elif mode == "L":
        image = Image.fromarray(array[..., 0], mode="L")
    else:
        image = Image.fromarray(array[..., :3], mode="RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    return path


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """CSV dataset in a folder with a space and non-ASCII characters: 'cat' 10 images (one an exact
    copy of a train image placed in val), the class XSS 2 images; one grayscale, one RGBA, one JPEG."""
    root = tmp_path_factory.mktemp("eda") / "eda dätä ü"
    rows = []
    for i in range(9):
        mode = "L" if i == 1 else "RGBA" if i == 2 else "RGB"
        fmt, ext = ("JPEG", "jpg") if i == 3 else ("PNG", "png")
        size = (20, 20) if i < 4 else (16, 12)
        _image(root / "images" / f"cät {i}.{ext}", i, size, mode, fmt)
        rows.append({"path": f"images/cät {i}.{ext}", "label": "cat", "split": "train" if i < 6 else "val"})
    shutil.copy(root / "images" / "cät 0.png", root / "images" / "copy of cät 0.png")
    rows.append({"path": "images/copy of cät 0.png", "label": "cat", "split": "val"})
    for i, split in enumerate(("train", "val")):
        _image(root / "images" / f"x{i}.png", 100 + i)
        rows.append({"path": f"images/x{i}.png", "label": XSS, "split": split})
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root, rows


def _reference_rgb(path: Path) -> np.ndarray:
    """(H*W, 3) float64 in [0, 1], decoded with numpy only: L replicated, RGBA composited on black."""
    array = np.asarray(Image.open(path)).astype(np.float64)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3] * (array[..., 3:] / 255.0)
    return array.reshape(-1, 3) / 255.0


def test_counts_imbalance_and_channel_stats(csv_data: tuple[Path, list[dict[str, str]]]) -> None:
    root, rows = csv_data
    report = eda_dataset(root, samples_per_class=3)
    expected: dict[str, Counter[str]] = {}
    for row in rows:
        expected.setdefault(row["label"], Counter())[row["split"]] += 1
    assert report.class_counts == {k: dict(v) for k, v in expected.items()}
    assert report.images_per_split == {"train": 7, "val": 5} and report.n_images == 12
    assert report.imbalance_ratio == pytest.approx(5.0)  # 10 cat : 2 XSS
    assert report.imbalance_by_split == {"train": pytest.approx(6.0), "val": pytest.approx(4.0)}
    pixels = np.concatenate([_reference_rgb(root / row["path"]) for row in rows])
    np.testing.assert_allclose(report.channel_mean, pixels.mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(report.channel_std, pixels.std(axis=0), rtol=0, atol=1e-6)
    assert report.pixels == len(pixels)
    assert report.formats == {"PNG": 11, "JPEG": 1}
    assert report.modes == {"RGB": 10, "L": 1, "RGBA": 1}
    assert report.total_bytes == sum((root / row["path"]).stat().st_size for row in rows)
    assert sorted(map(tuple, report.common_sizes)) == [(16, 12, 7), (20, 20, 5)]
    assert sum(report.width["counts"]) == 12 and report.width["min"] == 16 and report.width["max"] == 20
    assert {len(v) for v in report.samples.values()} == {2, 3}  # 3 per class, 2 for the 2-image class
    json.loads(json.dumps(report.to_dict()))


def test_one_decode_per_image(
    csv_data: tuple[Path, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stats pass opens each file once; previews come from that decode; check stays the same."""
    import foveal.data.health as health

    root, rows = csv_data
    opened: Counter[str] = Counter()
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened[str(fp) if isinstance(fp, str | Path) else "bytes"] += 1
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(health.Image, "open", counting_open)
    wanted = {str(root / rows[0]["path"])}
    result = check_dataset_records(root, previews=lambda index: wanted)
    assert opened == {"bytes": len(rows)}  # one decode of each file's bytes, nothing else opened
    assert {r.path for r in result.records if r.preview is not None} == wanted
    assert all(r.channel_sum is not None and r.file_size > 0 for r in result.records)
    assert result.report.to_dict()["counts"] == check_dataset(root).to_dict()["counts"]


def test_html_self_contained_escaped_with_leakage(
    csv_data: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> None:
    root, _ = csv_data
    report = eda_dataset(root, samples_per_class=2)
    leak = [g for g in report.groups if g["kind"] == "leakage_exact"]
    assert len(leak) == 1
    copy, original = str(root / "images" / "copy of cät 0.png"), str(root / "images" / "cät 0.png")
    assert sorted((m["path"], m["split"]) for m in leak[0]["members"]) == [(copy, "val"), (original, "train")]
    out = write_eda_html(report, tmp_path / "out dir ü" / "eda report.html")
    page = out.read_text(encoding="utf-8")

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.urls: list[tuple[str, str, str]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.urls += [(tag, k, v or "") for k, v in attrs if k in ("src", "href")]

    parser = Links()
    parser.feed(page)
    assert all(not v.startswith(("http://", "https://", "//")) for _, _, v in parser.urls)
    images = [v for tag, k, v in parser.urls if tag == "img"]
    assert images and all(v.startswith("data:image/") for v in images)
    assert "<script" not in page and XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the leakage group shows both thumbnails side by side with their splits
    start = page.index("<b>leakage_exact</b>")
    group = page[start : page.index("</div></div>", start)]
    assert group.count("<img") == 2 and ">train" in group and ">val" in group
    assert report.thumbnails[copy] in group and report.thumbnails[original] in group


def test_detection_stats_equal_coco_json(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "coco", n=24, imgsz=128, seed=7, fmt="coco")
    report = eda_dataset(root)
    per_image: Counter[int] = Counter()
    buckets = Counter()
    per_class: Counter[str] = Counter()
    for ann_file in (root / "annotations").glob("*.json"):
        doc = json.loads(ann_file.read_text())
        names = {c["id"]: c["name"] for c in doc["categories"]}
        objects = Counter(a["image_id"] for a in doc["annotations"])
        per_image.update(objects[image["id"]] for image in doc["images"])
        for a in doc["annotations"]:
            buckets["small" if a["area"] < 32**2 else "medium" if a["area"] < 96**2 else "large"] += 1
            per_class[names[a["category_id"]]] += 1
    det = report.detection
    assert det is not None and report.task == "detect"
    assert det["objects_per_image"] == dict(per_image)
    assert det["size_buckets"] == {k: buckets[k] for k in ("small", "medium", "large")}
    assert buckets["small"] and buckets["medium"]  # the reference exercises two ranges at least
    assert {k: sum(v.values()) for k, v in report.class_counts.items()} == dict(per_class)
    assert det["n_objects"] == sum(per_class.values()) == int(np.sum(det["centre_heatmap"]))
    assert sum(det["box_width"]["counts"]) == det["n_objects"]


def test_segmentation_pixel_frequencies_equal_numpy(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "seg", n=16, imgsz=32, seed=8, fmt="masks")
    report = eda_dataset(root)
    seg = report.segmentation
    assert seg is not None and report.task == "segment"
    names = (root / "classes.txt").read_text().split()
    masks = [np.asarray(Image.open(p)) for p in sorted(root.glob("*/masks/*.png"))]
    pixels = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=len(names))
    present = np.sum([np.bincount(m.ravel(), minlength=len(names)) > 0 for m in masks], axis=0)
    assert list(seg["pixel_fraction"]) == names
    np.testing.assert_allclose(list(seg["pixel_fraction"].values()), pixels / pixels.sum(), atol=1e-12)
    np.testing.assert_allclose(list(seg["image_fraction"].values()), present / len(masks), atol=1e-12)
    assert seg["labelled_pixels"] == sum(m.size for m in masks) and seg["ignored_pixels"] == 0
    expected = {n: int(c) for n, c in zip(names, present, strict=True) if c}
    assert {k: sum(v.values()) for k, v in report.class_counts.items() if v} == expected


def test_imagefolder_counts_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_synthetic(tmp_path / "shapes", n=40, imgsz=32, seed=2)
    expected: dict[str, Counter[str]] = {}
    for png in root.glob("*/*/*.png"):  # {split}/{class}/{i}.png
        expected.setdefault(png.parent.name, Counter())[png.parent.parent.name] += 1
    assert sum(sum(v.values()) for v in expected.values()) == 40
    out = tmp_path / "eda.html"
    assert main(["data", "eda", str(root), "--out", str(out), "--samples-per-class", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert out.is_file() and result["out"] == str(out)
    assert result["class_counts"] == {k: dict(v) for k, v in expected.items()}
    assert result["normalisation"].startswith("--mean ") and len(result["channel_mean"]) == 3
    assert main(["data", "eda", str(root), "--out", str(tmp_path / "b.html")]) == 0
    printed = capsys.readouterr().out
    assert "40 images" in printed and "--mean" in printed and str(tmp_path / "b.html") in printed


def test_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        eda_dataset(empty)
    with pytest.raises(DataError, match="no such"):
        eda_dataset(tmp_path / "missing")
    assert main(["data", "eda", str(empty), "--out", str(tmp_path / "x.html")]) == 2
    assert main(["data", "eda", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "empty" in err and "no such" in err
    assert not (tmp_path / "x.html").exists()
