"""The demo end to end on tiny data: every task's row, the CLI and its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foveal.cli.main import main
from foveal.demo import run_demo

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out

# summary column -> (split, metrics.json key) per task
SUMMARY = {
    "classify": {
        "val accuracy": ("val", "accuracy"),
        "test accuracy": ("test", "accuracy"),
        "val macro F1": ("val", "f1_macro"),
    },
    "segment": {
        "val mIoU": ("val", "miou"),
        "test mIoU": ("test", "miou"),
        "val mean Dice": ("val", "dice"),
        "val pixel accuracy": ("val", "pixel_accuracy"),
    },
    "detect": {
        "val mAP50": ("val", "map50"),
        "val mAP@[.5:.95]": ("val", "map"),
        "test mAP50": ("test", "map50"),
    },
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo's rows by task (48 images, 1 epoch: 5 test images per task)."""
    project = tmp_path_factory.mktemp("demo")
    summary = run_demo(project=str(project), n=48, epochs=1, tasks=("classify", "segment", "detect"))
    return {row["task"]: row for row in summary["tasks"]}


def _column(row: dict, part: str) -> str:
    """The one summary value whose name contains ``part`` (names count the test images shown)."""
    (value,) = (v for name, v in row["metrics"].items() if part in name)
    return value


def _predicted(row: dict) -> list[dict]:
    return json.loads((Path(row["run_dir"]) / "predictions" / "predictions.json").read_text())


def test_demo_runs_every_task(demo: dict) -> None:
    rows = demo  # task -> summary row
    assert set(rows) == {"classify", "segment", "detect"}
    # One epoch on 48 images learns next to nothing (measured: val accuracy 0.20, val mIoU 0.020, val
    # mAP50 0.0), so no bar: every number in the summary is the one the run and its files hold.
    saved = {task: json.loads(Path(row["run_dir"], "metrics.json").read_text()) for task, row in rows.items()}
    for task, columns in SUMMARY.items():
        for column, (split, key) in columns.items():
            value = saved[task][key] if split == "val" else saved[task]["test"][key]
            assert rows[task]["metrics"][column] == pytest.approx(value, abs=1e-6), (task, column)
    for row in rows.values():
        assert row["seconds"] > 0
    predicted = _predicted(rows["classify"])
    right = sum(Path(p["path"]).parent.name == p["labels"][0] for p in predicted)
    assert predicted and _column(rows["classify"], "test images right").split("/")[0] == str(right)
    predicted = _predicted(rows["detect"])
    results = json.loads((Path(rows["detect"]["run_dir"]) / "predictions" / "results.json").read_text())
    data = Path(predicted[0]["path"]).parents[2]
    gt = json.loads((data / "annotations" / "instances_test.json").read_text())
    names = {Path(p["path"]).name for p in predicted}
    ids = {image["id"] for image in gt["images"] if image["file_name"] in names}
    true = sum(ann["image_id"] in ids for ann in gt["annotations"])
    found = sum(len(p["boxes"]) for p in predicted)
    assert true > 0 and len(results) == found
    assert _column(rows["detect"], "found / true objects") == f"{found}/{true}"


def test_demo_counts_the_test_images_it_predicted(demo: dict) -> None:
    count = len(_predicted(demo["classify"]))
    assert count == len(_predicted(demo["detect"])) == 5  # the demo data's test split
    assert _column(demo["classify"], "test images right").endswith(f"/{count}")
    for row in demo.values():
        assert not any(name.startswith("8 test images") for name in row["metrics"]), row["metrics"]


def test_demo_cli_json(tmp_path: Path, capsys) -> None:
    args = ["demo", "--task", "detect", "--n", "40", "--epochs", "1", "--project", str(tmp_path), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["task"] for row in out["tasks"]] == ["detect"]
    assert main(["demo", "--task", "detection", "--project", str(tmp_path)]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()
