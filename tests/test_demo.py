"""The demo end to end on tiny data: every task's row, the CLI and its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from foveal.cli.main import main
from foveal.demo import run_demo


def test_demo_runs_every_task(tmp_path: Path) -> None:
    summary = run_demo(project=str(tmp_path), n=48, epochs=1, tasks=("classify", "segment", "detect"))
    rows = {row["task"]: row for row in summary["tasks"]}
    assert set(rows) == {"classify", "segment", "detect"}
    assert 0.0 <= rows["classify"]["metrics"]["val accuracy"] <= 1.0
    assert 0.0 <= rows["segment"]["metrics"]["val mIoU"] <= 1.0
    assert 0.0 <= rows["detect"]["metrics"]["val mAP50"] <= 1.0
    found, true = rows["detect"]["metrics"]["8 test images: found / true objects"].split("/")
    assert int(true) > 0 and int(found) >= 0
    for row in rows.values():
        assert Path(row["run_dir"], "metrics.json").is_file() and row["seconds"] > 0
    assert (Path(rows["detect"]["run_dir"]) / "predictions" / "results.json").is_file()


def test_demo_cli_json(tmp_path: Path, capsys) -> None:
    args = ["demo", "--task", "detect", "--n", "40", "--epochs", "1", "--project", str(tmp_path), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["task"] for row in out["tasks"]] == ["detect"]
    assert main(["demo", "--task", "detection", "--project", str(tmp_path)]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()
