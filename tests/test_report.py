"""The run report: built from the run folder, comparisons included, escaped, and loaded in Chromium."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

import foveal
from foveal.cli.main import main
from foveal.report.html import write_report
from tests.browser import browser, open_page  # noqa: F401  (browser is a fixture)

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classification run whose class is named like a script tag."""
    root = tmp_path_factory.mktemp("report") / "data"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(24):
        label = EVIL if i % 2 else "plain"
        colour = (220, 40, 40) if i % 2 else (40, 40, 220)
        Image.new("RGB", (16, 16), tuple(min(255, c + i) for c in colour)).save(root / "images" / f"{i}.png")
        rows.append({"path": f"images/{i}.png", "label": label, "split": "val" if i % 4 == 0 else "train"})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    result = foveal.train(
        data=str(root / "labels.csv"), model="lenet", epochs=1, imgsz=16, batch=8, workers=0, progress=False,
        project=str(tmp_path_factory.mktemp("runs")),
    )  # fmt: skip
    return result.run_dir


def test_training_writes_the_report_with_data_and_plots(run: Path) -> None:
    page = (run / "report.html").read_text(encoding="utf-8")
    for section in ("id='metrics'", "id='plots'", "id='data'", "id='config'"):
        assert section in page
    data = json.loads((run / "data.json").read_text())
    assert data["splits"]["train"]["images"] == 18 and data["splits"]["val"]["images"] == 6
    assert page.count("<img") == len(list((run / "plots").glob("*.png")))


def test_report_shows_comparisons_and_rebuilds_from_the_cli(run: Path, capsys: pytest.CaptureFixture) -> None:
    (run / "comparisons").mkdir(exist_ok=True)
    (run / "comparisons" / "tta.json").write_text(
        json.dumps({"tta": "hflip", "split": "val", "metrics": {"accuracy": 0.91, "f1_macro": 0.9}})
    )
    (run / "comparisons" / "ensemble.json").write_text(
        json.dumps({"method": "mean", "split": "val", "members": ["a", "b"], "metrics": {"accuracy": 0.95}})
    )
    (run / "comparisons" / "baseline-hog-logreg.json").write_text(
        json.dumps({"features": "hog", "model": "logreg", "metrics": {"accuracy": 0.7, "test": None}})
    )
    assert main(["report", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(run / "report.html")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Single model vs TTA vs ensemble vs baseline" in page
    shown = [("TTA (hflip)", "0.9100"), ("ensemble of 2 (mean)", "0.9500")]
    shown.append(("baseline hog + logreg", "0.7000"))
    for label, value in shown:
        assert label in page and value in page


def test_report_is_escaped_and_self_contained(run: Path) -> None:
    page = write_report(run).read_text(encoding="utf-8")
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert all(src.startswith("data:image/png;base64,") for src in page.split('src="')[1:])


def test_report_loads_in_chromium(run: Path, browser) -> None:  # noqa: F811
    from selenium.common.exceptions import NoAlertPresentException

    check = open_page(browser, write_report(run), run / "report-screenshot.png")
    assert check.images > 0 and check.loaded == check.images
    assert not check.errors, check.errors
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert EVIL in browser.find_element("tag name", "body").text  # shown as text
    assert check.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_folder_without_metrics_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "metrics.json" in capsys.readouterr().err
