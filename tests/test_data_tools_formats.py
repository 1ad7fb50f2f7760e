"""Every data tool (check, eda, split, gallery) on every dataset format, from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foveal.cli.main import main
from foveal.data.convert import convert_dataset
from foveal.data.synth_writers import write_synthetic

# name -> (format written by data synth, task read)
FORMATS = {
    "imagefolder": ("imagefolder", "classify"),
    "csv": ("csv", "classify"),
    "masks": ("masks", "segment"),
    "coco-segment": ("coco", "segment"),
    "coco": ("coco", "detect"),
    "yolo": ("yolo", "detect"),
    "yolo-seg": ("yolo-seg", "detect"),
    "yolo-pose": ("yolo-pose", "detect"),
    "voc": ("coco", "detect"),  # converted below
}
N = 24


@pytest.fixture(scope="module", params=sorted(FORMATS))
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    name = request.param
    fmt, task = FORMATS[name]
    root = tmp_path_factory.mktemp(name) / f"data {name} ü"
    write_synthetic(root, n=N, imgsz=32, seed=3, fmt=fmt)
    if name == "voc":
        voc = root.parent / "voc set é"
        convert_dataset(root, "voc", voc)
        root = voc
    return root, task


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code in (0, 1), (argv, out)
    return json.loads(out)


def test_check_eda_split_gallery(
    dataset: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, task = dataset
    checked = _json(capsys, "data", "check", str(root), "--task", task)
    assert checked["task"] == task and checked["n_images"] == N
    assert not [f for f in checked["findings"] if f["kind"] in ("unreadable_image", "label_problem")]

    eda = _json(capsys, "data", "eda", str(root), "--task", task, "--out", str(tmp_path / "eda.html"))
    assert eda["n_images"] == N and eda["task"] == task and len(eda["channel_mean"]) == 3
    page = (tmp_path / "eda.html").read_text(encoding="utf-8")
    assert "<img" in page and "http://" not in page and "https://" not in page

    split = _json(capsys, "data", "split", str(root), "--task", task, "--out", str(tmp_path / "split"))
    manifest = json.loads((tmp_path / "split" / "split.json").read_text(encoding="utf-8"))
    listed = [p for paths in manifest["splits"].values() for p in paths]
    assert len(listed) == len(set(listed)) == N, split
    # the manifest is itself a dataset for every tool
    again = _json(capsys, "data", "check", str(tmp_path / "split" / "split.json"))
    assert again["n_images"] == N and again["task"] == task

    gallery = _json(
        capsys, "gallery", str(root), "--task", task, "--out", str(tmp_path / "g.html"), "--sample", "8"
    )
    assert gallery["images"] == 8
    assert (tmp_path / "g.html").read_text(encoding="utf-8").count('class="card"') == 8
