"""``foveal data label-errors``: confident learning by hand, box and mask issues, outputs, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from foveal.analysis.confident import (
    calibrate_joint,
    confident_joint,
    find_issues,
    find_multilabel_issues,
    label_quality,
)
from foveal.analysis.label_errors import find_label_errors
from foveal.analysis.mask_issues import low_regions, self_confidence, softmin_quality
from foveal.analysis.object_issues import box_issues, image_score
from foveal.cli.main import main
from foveal.data.manifest import read_manifest
from foveal.data.synth_writers import write_synthetic
from foveal.errors import ConfigError, DataError
from tests.browser import chromium, open_page
from tests.conftest import make_image

EVIL = '<b class="x">&amp'

# 10 images, 3 classes: image 3 (given 0) looks like class 1, image 9 (given 2) like class 0
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PROBS = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.8, 0.1, 0.1],
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.1, 0.8],
        [0.1, 0.2, 0.7],
        [0.7, 0.1, 0.2],
    ]
)


def test_confident_joint_calibration_and_noise_by_hand() -> None:
    counts, thresholds = confident_joint(LABELS, PROBS)
    # thresholds: mean p[j] over the images given j; image 6 (no class over its threshold) not counted
    assert thresholds == pytest.approx([2.5 / 4, 2.1 / 3, 1.7 / 3])
    assert counts.tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 2]]
    joint = calibrate_joint(counts, np.array([4.0, 3.0, 3.0]))
    assert joint == pytest.approx(np.array([[0.3, 0.1, 0], [0, 0.3, 0], [0.1, 0, 0.2]]))
    found = find_issues(LABELS, PROBS)
    assert np.flatnonzero(found.issues).tolist() == [3, 9]
    assert found.noise[0, 1] == pytest.approx(0.25) and found.noise[2, 0] == pytest.approx(1 / 3)
    assert found.noise.sum() == pytest.approx(0.25 + 1 / 3)
    assert found.suggested[[3, 9]].tolist() == [1, 0]


def test_rankings() -> None:
    assert label_quality(LABELS, PROBS)[[3, 9]] == pytest.approx([0.1, 0.2])
    margin = label_quality(LABELS, PROBS, "normalized_margin")
    assert margin[3] == pytest.approx((0.1 - 0.8 + 1) / 2) and margin[0] == pytest.approx(
        (0.9 - 0.05 + 1) / 2
    )
    with pytest.raises(ConfigError, match="--rank"):
        label_quality(LABELS, PROBS, "loss")


def test_multilabel_one_vs_rest_by_hand() -> None:
    labels = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.8, 0.1], [0.1, 0.1], [0.1, 0.9], [0.2, 0.9], [0.1, 0.9]])
    first, second = find_multilabel_issues(labels, probs)
    assert first.confident_joint.tolist() == [[2, 0], [1, 2]]  # image 4: neither side confident
    assert first.joint == pytest.approx(np.array([[0.5, 0.0], [1 / 6, 1 / 3]]))
    assert first.noise[1, 0] == pytest.approx(1 / 3)  # given present, truly absent
    assert np.flatnonzero(first.issues).tolist() == [2] and not second.issues.any()


def test_box_issues_by_hand() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 45, 50, 60], [60, 60, 70, 70], [0, 0, 5, 5]])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    found = box_issues(gt, ["a", "a", "b"], boxes, scores, ["a", "b", "b", "a", "a"])
    kinds = {i.kind: i for i in found}
    assert set(kinds) == {"missing", "wrong_class", "badly_placed"}  # the 0.3 box is not confident
    assert kinds["missing"].box == [60, 60, 70, 70] and kinds["missing"].score == pytest.approx(0.6)
    assert kinds["wrong_class"].given == "a" and kinds["wrong_class"].suggested == "b"
    assert kinds["wrong_class"].score == pytest.approx(0.8)
    placed = kinds["badly_placed"]  # IoU of [40,40,50,50] and [40,45,50,60]: 50 / (100 + 150 - 50)
    assert placed.box == [40, 40, 50, 50] and placed.iou == pytest.approx(0.25)
    assert placed.score == pytest.approx(0.7 * 0.75) and len(found) == 3  # its prediction is not "missing"
    assert image_score(found) == pytest.approx(1 - 0.4 * 0.2 * (1 - 0.7 * 0.75))
    assert box_issues(gt, ["a", "a", "b"], gt, np.ones(3), ["a", "a", "b"]) == []


def test_mask_quality_and_regions_by_hand() -> None:
    given = np.zeros((8, 8), dtype=np.int64)
    given[2:4, 2:6] = 1  # the labelled object
    probs = np.zeros((8, 8, 2))
    probs[..., 0], probs[..., 1] = 0.9, 0.1
    probs[2:4, 2:6] = [0.1, 0.9]
    assert softmin_quality(self_confidence(probs, given)) == pytest.approx(0.9)
    probs[6:8, 0:3] = [0.2, 0.8]  # an unlabelled object: background with low probability
    given[0, 0] = 255  # ignored
    confidence = self_confidence(probs, given)
    assert np.isnan(confidence[0, 0])
    weights = np.exp(-(confidence[np.isfinite(confidence)] - 0.2) / 0.1)
    expected = (weights * confidence[np.isfinite(confidence)]).sum() / weights.sum()
    assert softmin_quality(confidence) == pytest.approx(expected) and expected < 0.3 < np.nanmean(confidence)
    (region,) = low_regions(probs, given)
    assert region.bbox == [0, 6, 3, 8] and region.area == 6
    assert (region.given, region.suggested) == (0, 1) and region.confidence == pytest.approx(0.2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """12 images of 3 classes (one class name full of markup)."""
    root = tmp_path / "classes"
    for c, (name, colour) in enumerate((("red", (200, 0, 0)), ("green", (0, 200, 0)), (EVIL, (0, 0, 200)))):
        for i in range(4):
            make_image(root / name / f"{c}_{i}.png", colour)
    return root


def _classify_oof(folder: Path, tmp_path: Path, wrong: dict[str, str]) -> Path:
    """An oof.json whose model is sure of each image's class folder, except ``wrong`` (file -> class)."""
    names = sorted(p.name for p in folder.iterdir())
    rows = []
    for i, path in enumerate(sorted(folder.rglob("*.png"))):
        sure = wrong.get(path.name, path.parent.name)
        probs = {n: 0.9 if n == sure else 0.1 / (len(names) - 1) for n in names}
        rows.append(
            {
                "fold": i % 3,
                "target": path.parent.name,
                "path": str(path),
                "labels": [sure],
                "scores": [0.9],
                "probs": probs,
            }
        )
    out = tmp_path / "oof.json"
    out.write_text(json.dumps(rows))
    return out


def test_classify_outputs_clean_manifest_and_review(folder: Path, tmp_path: Path) -> None:
    oof = _classify_oof(folder, tmp_path, {"0_1.png": "green", "2_3.png": "red"})
    result = find_label_errors(str(folder), oof, out=tmp_path / "le")
    assert sorted(Path(r["path"]).name for r in result.issues) == ["0_1.png", "2_3.png"]
    by_name = {Path(r["path"]).name: r for r in result.issues}
    assert (by_name["0_1.png"]["given"], by_name["0_1.png"]["suggested"]) == ("red", "green")
    assert (by_name["2_3.png"]["given"], by_name["2_3.png"]["suggested"]) == (EVIL, "red")
    assert {(n["given"], n["true"]) for n in result.noise} == {("red", "green"), (EVIL, "red")}
    doc = json.loads((tmp_path / "le" / "label_errors.json").read_text())
    assert doc["n_images"] == 12 and doc["n_flagged"] == 2
    rows = list(csv.DictReader((tmp_path / "le" / "label_errors.csv").open()))
    assert {r["suggested"] for r in rows} == {"green", "red"}
    manifest = read_manifest(result.clean)
    kept = [p for part in manifest.splits.values() for p in part]
    assert len(kept) == 10 and "red/0_1.png" not in kept and manifest.task == "classify"
    page = (tmp_path / "le" / "review.html").read_text()
    assert EVIL not in page and "&lt;b class=&quot;x&quot;&gt;&amp;amp" in page and "<script" not in page
    assert page.count('<figure class="card">') == 2


def test_review_pages_in_headless_chromium(folder: Path, coco, tmp_path: Path) -> None:
    oof = _classify_oof(folder, tmp_path, {"0_1.png": "green"})
    pages = [find_label_errors(str(folder), oof, out=tmp_path / "classify").out / "review.html"]
    (tmp_path / "det.json").write_text(json.dumps(coco[1]))
    pages.append(
        find_label_errors(str(coco[0]), tmp_path / "det.json", out=tmp_path / "detect").out / "review.html"
    )
    with chromium() as driver:
        for page, images in zip(pages, (1, 2)):
            check = open_page(driver, page)
            assert check.images == check.loaded == images and check.errors == []
            assert check.title.startswith("foveal label errors")


def test_multilabel_flags_a_missing_label(tmp_path: Path) -> None:
    lines = ["path,labels"]
    for i in range(8):
        make_image(tmp_path / f"{i}.png")
        lines.append(f"{i}.png,{'cat;dog' if i < 4 else 'cat'}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    rows = [
        {"fold": 0, "path": str(tmp_path / f"{i}.png"), "probs": {"cat": 0.9, "dog": 0.9 if i < 3 else 0.05}}
        for i in range(8)
    ]  # image 3 is labelled dog, the model sees none
    (tmp_path / "oof.json").write_text(json.dumps(rows))
    result = find_label_errors(str(tmp_path / "labels.csv"), tmp_path / "oof.json", out=tmp_path / "le")
    (issue,) = result.issues
    assert (
        Path(issue["path"]).name == "3.png" and issue["labels"] == ["dog"] and issue["suggested"] == ["cat"]
    )


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, list[dict], dict]:
    """A COCO dataset with one training box dropped and one relabelled, and out-of-fold rows that detect
    every original box (score 0.9); returns (dataset, oof rows, {"dropped", "relabelled"} annotations)."""
    root = write_synthetic(tmp_path / "coco", n=10, imgsz=64, fmt="coco", seed=3)
    ann_file = root / "annotations" / "instances_train.json"
    doc = json.loads(ann_file.read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    rows = {}
    for ann in doc["annotations"]:
        path = str(root / "images" / "train" / files[ann["image_id"]])
        x, y, w, h = ann["bbox"]
        row = rows.setdefault(
            path, {"fold": 0, "target": None, "path": path, "boxes": [], "scores": [], "labels": []}
        )
        row["boxes"].append([x, y, x + w, y + h])
        row["scores"].append(0.9)
        row["labels"].append(names[ann["category_id"]])
    dropped = doc["annotations"].pop(0)
    relabelled = next(a for a in doc["annotations"] if a["image_id"] != dropped["image_id"])
    relabelled["category_id"] = next(c for c in names if c != relabelled["category_id"])
    ann_file.write_text(json.dumps(doc))
    return root, list(rows.values()), {"dropped": dropped, "relabelled": relabelled, "files": files}


def test_detection_missing_and_wrong_class_at_the_edited_boxes(coco, tmp_path: Path) -> None:
    root, rows, edits = coco
    (tmp_path / "oof.json").write_text(json.dumps(rows))
    result = find_label_errors(str(root), tmp_path / "oof.json", out=tmp_path / "le")
    found = {(Path(r["path"]).name, i["kind"]): i for r in result.issues for i in r["issues"]}
    dropped, relabelled = edits["dropped"], edits["relabelled"]
    assert set(found) == {
        (edits["files"][dropped["image_id"]], "missing"),
        (edits["files"][relabelled["image_id"]], "wrong_class"),
    }
    x, y, w, h = dropped["bbox"]
    missing = found[(edits["files"][dropped["image_id"]], "missing")]
    assert missing["box"] == pytest.approx([x, y, x + w, y + h], abs=0.01) and missing["iou"] < 0.5
    assert missing["score"] == pytest.approx(0.9 * (1 - missing["iou"]))
    page = (tmp_path / "le" / "review.html").read_text()
    assert page.count('<figure class="card">') == 2 and "missing" in page
    kept = [p for part in read_manifest(result.clean).splits.values() for p in part]
    assert len(kept) == 8 and read_manifest(result.clean).task == "detect"


def test_bad_oof_files_are_one_line_errors(folder: Path, coco, tmp_path: Path, capsys) -> None:
    root, rows, _ = coco
    (tmp_path / "det.json").write_text(json.dumps(rows))
    out = tmp_path / "never"
    with pytest.raises(DataError, match=r"det\.json: .* not in the dataset"):
        find_label_errors(str(folder), tmp_path / "det.json", out=out)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    shutil.move(str(other / "green"), str(other / "blue"))
    oof = _classify_oof(other, tmp_path, {})
    renamed = [
        {**r, "probs": {("purple" if k == "blue" else k): v for k, v in r["probs"].items()}}
        for r in json.loads(oof.read_text())
    ]
    oof.write_text(json.dumps(renamed))
    with pytest.raises(DataError, match=r"oof\.json: predicts the classes .*purple.*leave out --oof"):
        find_label_errors(str(other), oof, out=out)
    relabelled = [{**r, "target": "red"} for r in json.loads(_classify_oof(folder, tmp_path, {}).read_text())]
    oof.write_text(json.dumps(relabelled))
    with pytest.raises(DataError, match=r"oof\.json: .* has the target 'red' there and .* in the dataset"):
        find_label_errors(str(folder), oof, out=out)
    det_rows = [{**r, "path": str(p)} for r, p in zip(rows * 12, sorted(folder.rglob("*.png")))]
    (tmp_path / "kind.json").write_text(json.dumps(det_rows))
    with pytest.raises(DataError, match=r"kind\.json: its rows have no 'probs'"):
        find_label_errors(str(folder), tmp_path / "kind.json", out=out)
    (tmp_path / "broken.json").write_text("{")
    assert (
        main(
            [
                "data",
                "label-errors",
                "--data",
                str(folder),
                "--oof",
                str(tmp_path / "broken.json"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "broken.json" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_with_oof(folder: Path, tmp_path: Path, capsys) -> None:
    oof = _classify_oof(folder, tmp_path, {"1_0.png": "red"})
    argv = [
        "data",
        "label-errors",
        "--data",
        str(folder),
        "--oof",
        str(oof),
        "--project",
        str(tmp_path / "p"),
        "--rank",
        "normalized_margin",
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["out"] == str(tmp_path / "p" / "label-errors") and result["n_flagged"] == 1
    assert result["issues"][0]["score"] == pytest.approx(1 - (0.05 - 0.9 + 1) / 2)


def _plant(root: Path, fraction: float, seed: int) -> set[str]:
    """Move ``fraction`` of the train and val images into another (random) class folder; their new paths."""
    rng = np.random.default_rng(seed)
    images = sorted(p for split in ("train", "val") for p in (root / split).rglob("*.png"))
    classes = sorted(p.name for p in (root / "train").iterdir())
    moved = set()
    for i in rng.choice(len(images), size=round(fraction * len(images)), replace=False):
        path = images[i]
        other = rng.choice([c for c in classes if c != path.parent.name])
        target = path.parent.parent / str(other) / f"moved_{path.name}"
        shutil.move(str(path), str(target))
        moved.add(str(target.resolve()))
    return moved


@pytest.mark.slow
def test_planted_noise_found_and_clean_manifest_trains(tmp_path: Path, capsys) -> None:
    # arrows: a 32 px model learns them in a minute (shapes need more images and pixels than a test has)
    data = write_synthetic(tmp_path / "arrows", n=1200, imgsz=32, seed=5, scene="arrows")
    planted = _plant(data, 0.1, seed=1)
    argv = ["data", "label-errors", "--data", str(data), "--folds", "3", "--project", str(tmp_path / "runs")]
    argv += ["--model=smallresnet", "--epochs=15", "--imgsz=32", "--batch=32", "--aug=none", "--workers=0"]
    argv += ["--no-progress", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    flagged = [str(Path(r["path"]).resolve()) for r in result["issues"]]
    found = len(set(flagged) & planted)
    at_planted = len(set(flagged[: len(planted)]) & planted) / len(planted)  # the worst len(planted)
    # chance: 10% of the images are planted; measured 0.78 at the planted count, recall 0.89, precision 0.51
    assert at_planted >= 0.6 and found / len(planted) >= 0.7 and found / len(flagged) >= 0.35
    assert (Path(result["out"]) / "cv" / "oof.json").is_file() and (
        Path(result["out"]) / "review.html"
    ).is_file()
    argv = ["train", "--data", result["clean"], "--project", str(tmp_path / "runs"), "--name", "clean"]
    argv += ["--model=lenet", "--epochs=1", "--imgsz=32", "--workers=0", "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "runs" / "clean" / "metrics.json").read_text())
    assert "accuracy" in metrics and metrics["test"]["n"] == len(list((data / "test").rglob("*.png")))


@pytest.mark.slow
def test_segmentation_scores_from_the_fold_checkpoints(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "masks", n=60, imgsz=32, seed=3, fmt="masks")
    options = {"imgsz": 32, "batch": 16, "workers": 0, "progress": False, "epochs": 2}
    result = find_label_errors(str(data), folds=2, task="segment", project=str(tmp_path / "runs"), **options)
    doc = json.loads((result.out / "label_errors.json").read_text())
    assert doc["task"] == "segment" and doc["n_images"] == len(list(data.glob("[tv][ra]*/images/*.png")))
    for row in result.issues:
        assert 0.0 <= row["score"] <= 1.0 and row["regions"]
        for region in row["regions"]:
            x0, y0, x1, y1 = region["bbox"]
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32 and region["area"] >= 4
    page = (result.out / "review.html").read_text()
    assert page.count('<figure class="card">') == min(200, len(result.issues))
    assert read_manifest(result.clean).task == "segment"


def test_segmentation_review_card(tmp_path: Path) -> None:
    from foveal.data.index import index_dataset
    from foveal.report.label_review import review_page

    root = write_synthetic(tmp_path / "masks", n=20, imgsz=32, seed=1, fmt="masks")
    index = index_dataset(root, "segment")
    region = {"bbox": [2, 3, 12, 14], "area": 90, "given": "background", "suggested": EVIL, "confidence": 0.2}
    row = {"path": index.entries[0].path, "fold": 0, "score": 0.7, "quality": 0.3, "regions": [region]}
    doc = {"data": str(root), "oof": "oof.json", "n_images": 20, "n_flagged": 1, "noise": [], "issues": [row]}
    page = review_page(index, doc)
    assert page.count('<figure class="card">') == 1 and page.count('src="data:image/jpeg;base64,') == 1
    assert EVIL not in page and "background \u2192 &lt;b class=&quot;x&quot;&gt;&amp;amp: 90 px" in page
