"""``foveal gallery``: the HTML contact sheet, its mistakes, escaping, and the page in headless Chromium."""

from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic
from foveal.errors import DataError
from foveal.report.gallery import MIN_MIOU, detection_mistake, mean_iou, write_gallery
from tests.browser import chromium, open_page
from tests.conftest import make_image

EVIL = "<script>alert(1)</script>"


class Cards(HTMLParser):
    """Each <figure class="card">: its attributes, <img> count and the text of its caption spans."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self._span: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "figure" and "card" in attrs.get("class", "").split():
            self.cards.append({**attrs, "imgs": 0, "target": "", "pred": "", "path": ""})
        elif self.cards and tag == "img":
            self.cards[-1]["imgs"] += 1
        elif self.cards and tag == "span":
            self._span = attrs.get("class")
            if self._span == "path":
                self.cards[-1]["title"] = attrs["title"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if self.cards and self._span in ("target", "pred", "path"):
            self.cards[-1][self._span] += data


def cards_of(path: Path) -> list[dict]:
    return Cards(path.read_text(encoding="utf-8")).cards


def mistakes_of(cards: list[dict]) -> set[str]:
    return {Path(c["title"]).name for c in cards if "mistake" in c["class"].split()}


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder shapes (24 images, 32 px, 4 classes) under a path with a space and a non-ASCII char."""
    return write_synthetic(tmp_path_factory.mktemp("gallery") / "my data ü", n=24, imgsz=32, seed=3)


@pytest.fixture(scope="module")
def classify_preds(folder: Path) -> tuple[Path, set[str]]:
    """predictions.json for ``folder``: right for all but every 5th image (predicted the next class)."""
    classes = sorted(p.name for p in (folder / "train").iterdir())
    images = sorted(folder.glob("*/*/*.png"))
    rows, wrong = [], set()
    for i, image in enumerate(images):
        label = image.parent.name
        if i % 5 == 0:
            label = classes[(classes.index(label) + 1) % len(classes)]
            wrong.add(image.name)
        # one path written un-normalised: matching resolves both sides
        path = image.parent / ".." / image.parent.name / image.name if i == 1 else image
        rows.append({"path": str(path), "labels": [label], "scores": [0.8], "probs": {label: 0.8}})
    out = folder.parent / "classify_predictions.json"
    out.write_text(json.dumps(rows))
    return out, wrong


def test_sample_gives_n_stratified_thumbnails(folder: Path, tmp_path: Path) -> None:
    result = write_gallery(folder, tmp_path / "g.html", sample=10, seed=1)
    cards = cards_of(tmp_path / "g.html")
    assert result.images == len(cards) == 10 and all(c["imgs"] == 1 for c in cards)
    per_class = Counter(Path(c["title"]).parent.name for c in cards)
    total = Counter(p.parent.name for p in folder.glob("*/*/*.png"))
    for name, n in total.items():  # each class gets its proportional share, rounded either way
        assert int(10 * n / 24) <= per_class[name] <= int(10 * n / 24) + 1
    write_gallery(folder, tmp_path / "again.html", sample=10, seed=1)
    assert [c["title"] for c in cards_of(tmp_path / "again.html")] == [c["title"] for c in cards]


def test_every_classification_card_shows_its_class(folder: Path, tmp_path: Path) -> None:
    result = write_gallery(folder, tmp_path / "g.html")
    cards = cards_of(tmp_path / "g.html")
    assert result.images == len(cards) == 24 and result.mistakes == 0
    for card in cards:  # ImageFolder: the class is the image's folder name
        assert card["target"] == Path(card["title"]).parent.name
        assert json.loads(card["data-classes"]) == [card["target"]]


def test_classification_mistakes_are_exactly_the_wrong_predictions(
    folder: Path, classify_preds: tuple[Path, set[str]], tmp_path: Path
) -> None:
    predictions, wrong = classify_preds
    result = write_gallery(folder, tmp_path / "g.html", predictions=predictions)
    cards = cards_of(tmp_path / "g.html")
    assert len(wrong) == 5 and result.mistakes == 5 and result.unmatched == 0
    assert mistakes_of(cards) == wrong
    assert {Path(c["title"]).name for c in cards if c["data-mistake"] == "1"} == wrong
    assert all(c["pred"].startswith("pred: ") and c["pred"].endswith("0.80") for c in cards)
    only = write_gallery(folder, tmp_path / "only.html", predictions=predictions, mistakes_only=True)
    assert only.images == 5 and {Path(c["title"]).name for c in cards_of(tmp_path / "only.html")} == wrong


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("coco") / "data", n=12, imgsz=32, seed=4, fmt="coco")


def test_detection_mistakes_from_a_hand_edited_results_file(coco: Path, tmp_path: Path) -> None:
    docs = [json.loads(p.read_text()) for p in sorted((coco / "annotations").glob("*.json"))]
    images = {i["id"]: i["file_name"] for d in docs for i in d["images"]}
    anns = [a for d in docs for a in d["annotations"]]
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in anns
    ]
    for r in results[::2]:  # half of them also carry file_name (foveal's results do); the rest: image_id
        r["file_name"] = images[r["image_id"]]
    removed = results.pop(0)
    first = images[removed["image_id"]]
    shifted = next(r for r in results if images[r["image_id"]] != first)
    shifted["bbox"] = [shifted["bbox"][0] + shifted["bbox"][2], *shifted["bbox"][1:]]  # IoU 0 with its box
    second = images[shifted["image_id"]]
    quiet = next(r for r in results if images[r["image_id"]] not in (first, second))
    results.append({**quiet, "bbox": [0, 0, 5, 5], "score": 0.1})  # below the 0.3 score: not judged
    results.append({**quiet, "file_name": "not-in-the-dataset.png", "image_id": 999})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    result = write_gallery(coco, tmp_path / "g.html", predictions=path)
    cards = cards_of(tmp_path / "g.html")
    assert len(cards) == 12 and result.unmatched == 1
    assert mistakes_of(cards) == {first, second} and result.mistakes == 2
    assert all(c["data-mistake"] in ("0", "1") for c in cards)  # every split is judged


def test_detection_mistakes_from_foveal_prediction_rows(coco: Path, tmp_path: Path) -> None:
    """predictions.json rows of `foveal predict` (boxes xyxy, class names) for the train images only."""
    doc = json.loads((coco / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    rows = []
    for image in doc["images"]:
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        labels = [names[a["category_id"]] for a in anns]
        rows.append(
            {
                "path": str(coco / "images" / "train" / image["file_name"]),
                "boxes": boxes,
                "labels": labels,
                "scores": [0.8] * len(anns),
                "count": len(anns),
            }
        )
    wrong, empty = rows[0], rows[1]
    wrong["labels"][0] = next(n for n in names.values() if n != wrong["labels"][0])  # a class mix-up
    empty.update(boxes=[], labels=[], scores=[])  # nothing found
    (tmp_path / "predictions.json").write_text(json.dumps(rows))
    result = write_gallery(coco, tmp_path / "g.html", predictions=tmp_path / "predictions.json")
    cards = cards_of(tmp_path / "g.html")
    assert (
        mistakes_of(cards)
        == {Path(wrong["path"]).name, Path(empty["path"]).name}
        == {Path(c["title"]).name for c in cards if c["data-mistake"] == "1"}
    )
    judged = {Path(c["title"]).name for c in cards if c["data-mistake"] in ("0", "1")}
    assert judged == {i["file_name"] for i in doc["images"]} and result.mistakes == 2  # val/test: not judged


def test_detection_matching_rule() -> None:
    from pycocotools import mask as mask_utils

    gt = [{"category_id": 1, "bbox": [10, 10, 20, 20]}, {"category_id": 2, "bbox": [0, 0, 8, 8]}]
    shifted = [12, 12, 20, 20]
    iou = mask_utils.iou([shifted], [gt[0]["bbox"]], [0])[0, 0]  # the reference IoU
    assert iou >= 0.5
    preds = [
        {"category_id": 1, "bbox": shifted, "score": 0.9},
        {"category_id": 2, "bbox": [0, 0, 8, 8], "score": 0.5},
    ]
    assert detection_mistake(gt, preds) == (0, 0)
    assert detection_mistake(gt, preds[:1]) == (1, 0)  # a target box without prediction
    assert detection_mistake(gt, [*preds, {**preds[0], "score": 0.4}]) == (0, 1)  # a duplicate is extra
    wrong_class = [{**preds[0], "category_id": 2}, preds[1]]
    assert detection_mistake(gt, wrong_class) == (1, 1)


@pytest.fixture(scope="module")
def masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("masks") / "data", n=12, imgsz=32, seed=5, fmt="masks")


def test_segmentation_gallery_with_predictions(masks: Path, tmp_path: Path) -> None:
    rows, ground_truth = [], sorted(masks.glob("*/masks/*.png"))
    (tmp_path / "masks").mkdir()
    for i, mask in enumerate(ground_truth):
        target = np.asarray(Image.open(mask))
        predicted = np.zeros_like(target) if i == 2 else target  # one image predicted all background
        Image.fromarray(predicted, mode="L").save(tmp_path / "masks" / f"{i:05d}.png")
        image = mask.parent.parent / "images" / mask.name
        rows.append({"path": str(image), "mask_png": f"masks/{i:05d}.png", "overlay": "", "areas": {}})
    (tmp_path / "predictions.json").write_text(json.dumps(rows))
    plain = write_gallery(masks, tmp_path / "plain.html")
    assert plain.images == 12 and all(c["imgs"] == 1 for c in cards_of(tmp_path / "plain.html"))
    result = write_gallery(masks, tmp_path / "g.html", predictions=tmp_path / "predictions.json")
    cards = cards_of(tmp_path / "g.html")
    assert len(cards) == 12 and all(c["imgs"] == 2 for c in cards)  # target beside prediction
    assert mistakes_of(cards) == {ground_truth[2].name} and result.mistakes == 1
    assert all(c["pred"] == "mIoU 1.00" for c in cards if c["data-mistake"] == "0")


def test_mean_iou_matches_sklearn() -> None:
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(0)
    target, predicted = rng.integers(0, 4, (20, 20)), rng.integers(0, 3, (20, 20))
    target[0, :5] = 255  # ignored pixels are left out
    valid = target != 255
    labels = np.union1d(target[valid], predicted[valid])
    expected = jaccard_score(target[valid], predicted[valid], labels=labels, average="macro")
    assert mean_iou(target, predicted) == pytest.approx(expected)
    assert mean_iou(target, target) == 1.0 > MIN_MIOU


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV dataset whose classes are an HTML injection attempt and a name with quotes and &."""
    root = tmp_path_factory.mktemp("evil") / "data ü"
    lines = ["path,label"]
    for i in range(4):
        make_image(root / "images" / f"e{i}.png", (220, 20, 20))
        make_image(root / "images" / f"q{i}.png", (20, 20, 220))
        lines += [f"images/e{i}.png,{EVIL}", f'images/q{i}.png,"a&b ""q"" ü"']
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_user_strings_are_escaped(evil: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.html"
    write_gallery(evil, out)
    text = out.read_text(encoding="utf-8")
    assert EVIL not in text and "alert(1)" in text  # present, but only escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    cards = cards_of(out)
    assert sorted(c["target"] for c in cards) == sorted([EVIL] * 4 + ['a&b "q" ü'] * 4)


def test_pages_in_headless_chromium(
    driver, folder: Path, classify_preds, coco: Path, masks: Path, tmp_path: Path
) -> None:
    from PIL import Image as PILImage
    from selenium.webdriver.common.by import By

    pages = {
        "classify": write_gallery(folder, tmp_path / "classify.html", predictions=classify_preds[0]),
        "detect": write_gallery(coco, tmp_path / "detect.html"),
        "segment": write_gallery(masks, tmp_path / "segment.html", size=96),
    }
    for name, result in pages.items():
        check = open_page(driver, result.out)
        assert check.images == check.loaded == result.images > 0, name
        assert check.errors == [], (name, check.errors)
        assert check.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with PILImage.open(check.screenshot) as shot:
            shot.verify()
    open_page(driver, tmp_path / "classify.html")
    cards = driver.find_elements(By.CSS_SELECTOR, "figure.card")
    classes = [json.loads(c.get_attribute("data-classes"))[0] for c in cards]
    driver.find_element(By.CSS_SELECTOR, 'button.cls[data-class="circle"]').click()
    assert [c.is_displayed() for c in cards] == [k == "circle" for k in classes] and "circle" in classes
    driver.find_element(By.CSS_SELECTOR, "button.cls:not([data-class])").click()
    assert all(c.is_displayed() for c in cards)
    driver.find_element(By.ID, "mistakes-only").click()
    shown = {Path(c.get_attribute("innerText").splitlines()[-1]).name for c in cards if c.is_displayed()}
    assert shown == classify_preds[1]


def test_escaped_class_names_in_chromium(driver, evil: Path, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    write_gallery(evil, tmp_path / "evil.html")
    check = open_page(driver, tmp_path / "evil.html")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert check.errors == [] and check.loaded == check.images == 8
    targets = driver.find_elements(By.CSS_SELECTOR, "figure.card .target")
    assert sorted(t.text for t in targets) == sorted([EVIL] * 4 + ['a&b "q" ü'] * 4)
    evil_button = next(
        b for b in driver.find_elements(By.CSS_SELECTOR, "button.cls") if b.text.startswith(EVIL)
    )
    evil_button.click()
    assert [t.is_displayed() for t in targets] == [t.text == EVIL for t in targets]
    assert driver.find_element(By.ID, "shown").text == "4"


def test_user_errors(tmp_path: Path, folder: Path, coco: Path, classify_preds) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        write_gallery(tmp_path / "empty", tmp_path / "g.html")
    (tmp_path / "nothing" / "cat").mkdir(parents=True)
    with pytest.raises(DataError):
        write_gallery(tmp_path / "nothing", tmp_path / "g.html")
    bad = tmp_path / "bad.json"
    for content in ('{"predictions": []}', "not json", '[{"file": "x.png"}]'):
        bad.write_text(content)
        with pytest.raises(DataError, match="unknown predictions format") as err:
            write_gallery(folder, tmp_path / "g.html", predictions=bad)
        assert str(bad) in str(err.value) and "expected" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="classify predictions, but .* is a detect dataset"):
        write_gallery(coco, tmp_path / "g.html", predictions=classify_preds[0])
    assert not (tmp_path / "g.html").exists()


def test_cli(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out dir" / "gallery.html"
    argv = ["gallery", str(folder), "--out", str(out), "--sample", "6", "--size", "64", "--json"]
    assert main([*argv, "--classes", "circle,star", "--split", "train"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 6 == len(cards_of(out)) and result["out"] == str(out)
    assert {json.loads(c["data-classes"])[0] for c in cards_of(out)} <= {"circle", "star"}
    assert all("/train/" in c["title"] for c in cards_of(out))
    assert main(["gallery", str(folder), "--out", str(out), "--classes", "circel"]) == 2
    assert "did you mean: circle" in capsys.readouterr().err
    assert main(["gallery", str(folder), "--out", str(out), "--predictions", str(tmp_path / "no.json")]) == 2
