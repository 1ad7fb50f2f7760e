"""Whole classification runs through the Python API: artefacts, metrics, checkpoints, resume, transfer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import foveal
from foveal.engine.checkpoint import read_checkpoint
from foveal.errors import CheckpointError

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out

FAST = {"imgsz": 32, "batch": 32, "workers": 0, "progress": False}


@pytest.fixture(scope="module")
def base_run(shapes_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> foveal.TrainResult:
    project = tmp_path_factory.mktemp("runs")
    return foveal.train(task="classify", data=str(shapes_folder), epochs=3, project=str(project), **FAST)


def test_run_folder_has_every_artefact(base_run: foveal.TrainResult) -> None:
    run = base_run.run_dir
    for name in (
        "config.yaml",
        "metrics.json",
        "history.json",
        "report.html",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "logs/metrics.csv",
        "plots/loss.png",
        "plots/metrics.png",
        "plots/confusion_matrix.png",
        "plots/roc.png",
        "plots/pr.png",
    ):
        assert (run / name).is_file(), name
    assert list((run / "logs").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc", "per_class", "test"):
        assert key in metrics
    assert set(metrics["per_class"]) == {"circle", "square", "star", "triangle"}
    assert len(metrics["history"]) == 3 and metrics["history"][-1]["epoch"] == 2
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * 8  # last.ckpt is the final state, even when best.ckpt is older
    losses = [row["train/loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0]
    assert "<img" in (run / "report.html").read_text()


def test_checkpoint_is_self_contained_and_safe(base_run: foveal.TrainResult) -> None:
    raw = torch.load(base_run.best, map_location="cpu", weights_only=True)
    meta = raw["foveal"]["meta"]
    assert meta["class_names"] == ["circle", "square", "star", "triangle"]
    assert meta["imgsz"] == 32 and meta["model"] == "smallresnet" and len(meta["mean"]) == 3
    loaded = foveal.load(base_run.best)
    assert not loaded.model.training
    assert loaded.model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)


def test_evaluate_matches_the_run_and_predict_writes_files(
    base_run: foveal.TrainResult, shapes_folder: Path, tmp_path: Path
) -> None:
    metrics = foveal.evaluate(base_run.best, shapes_folder, split="val", workers=0)
    recorded = json.loads((base_run.run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"])
    assert metrics["confusion_matrix"] == recorded["confusion_matrix"]
    images = sorted((shapes_folder / "test").rglob("*.png"))[:5]
    rows = foveal.predict(
        base_run.best, [str(p) for p in images], out=tmp_path / "pred", topk=2, workers=0, render=True
    )
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert all(len(r["labels"]) == 2 and r["scores"][0] >= r["scores"][1] for r in rows)
    assert abs(sum(rows[0]["probs"].values()) - 1.0) < 1e-5
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text()) == rows
    assert (tmp_path / "pred" / "predictions.csv").read_text().count("\n") == 6
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 5


def test_config_reproduces_the_run(base_run: foveal.TrainResult) -> None:
    config = yaml.safe_load((base_run.run_dir / "config.yaml").read_text())
    assert config["model"] == "smallresnet" and config["epochs"] == 3
    again = foveal.train(config=base_run.run_dir / "config.yaml")
    assert again.run_dir != base_run.run_dir and again.run_dir.name == "smallresnet-2"
    assert again.metrics["accuracy"] == pytest.approx(base_run.metrics["accuracy"], abs=1e-9)
    assert again.metrics["confusion_matrix"] == base_run.metrics["confusion_matrix"]


def test_resume_continues_from_last_checkpoint(shapes_folder: Path, tmp_path: Path) -> None:
    first = foveal.train(data=str(shapes_folder), epochs=1, project=str(tmp_path), **FAST)
    resumed = foveal.train(resume=first.run_dir, epochs=2)
    assert resumed.run_dir == first.run_dir
    history = json.loads((first.run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    last = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 * len(range(0, 256, 32))  # 8 steps per epoch, two epochs


def test_transfer_learning_new_head_frozen_backbone(base_run: foveal.TrainResult, tmp_path: Path) -> None:
    from tests.conftest import make_image

    for i in range(12):
        make_image(tmp_path / "two" / "red" / f"{i}.png", (220, 30, 30), 32)
        make_image(tmp_path / "two" / "blue" / f"{i}.png", (30, 30, 220), 32)
    source = read_checkpoint(base_run.best)["state_dict"]
    run = foveal.train(
        data=str(tmp_path / "two"),
        epochs=1,
        pretrained=str(base_run.best),
        freeze="backbone",
        project=str(tmp_path / "runs"),
        **FAST,
    )
    tuned = read_checkpoint(run.best)["state_dict"]
    assert tuned["model.head.weight"].shape[0] == 2
    backbone = [k for k in tuned if k.startswith("model.features.")]
    assert backbone and all(torch.equal(tuned[k], source[k]) for k in backbone)  # weights and BN stats
    later = foveal.train(
        data=str(tmp_path / "two"),
        epochs=2,
        pretrained=str(base_run.best),
        freeze="backbone",
        unfreeze_at=1,
        project=str(tmp_path / "runs"),
        **FAST,
    )
    released = read_checkpoint(later.last)["state_dict"]
    assert any(not torch.equal(released[k], source[k]) for k in backbone)


def test_multilabel_csv_run(shapes_csv: Path, tmp_path: Path) -> None:
    run = foveal.train(data=str(shapes_csv / "labels.csv"), epochs=1, project=str(tmp_path), **FAST)
    assert {"f1_samples", "hamming_accuracy", "per_class"} <= set(run.metrics)
    assert run.metrics["per_class"]["star"]["ap"] is not None
    rows = foveal.predict(run.best, str(shapes_csv / "images"), workers=0)
    assert all(set(r["labels"]) <= {"circle", "square", "star", "triangle"} for r in rows)
    assert all(all(p >= 0.5 for p in r["scores"]) for r in rows)


def test_options_heavy_aug_ema_lookahead_focal_onecycle(shapes_folder: Path, tmp_path: Path) -> None:
    run = foveal.train(
        data=str(shapes_folder),
        epochs=1,
        project=str(tmp_path),
        aug="heavy",
        ema=True,
        ema_decay=0.9,
        optimizer="sgd",
        nesterov=True,
        lookahead=True,
        loss="focal",
        scheduler="onecycle",
        warmup_epochs=0.5,
        grad_clip=1.0,
        label_smoothing=0.1,
        balance="weights",
        model="smallresnet_se",
        **FAST,
    )
    checkpoint = read_checkpoint(run.best)
    assert checkpoint["foveal"]["weights"] == "ema"
    assert any(k.startswith("ema.module.") for k in checkpoint["state_dict"])
    ema = {
        k[len("ema.module.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("ema.module.")
    }
    loaded = foveal.load(run.best)
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in ema.items() if k != "n_averaged")


def test_lr_auto_runs_range_test(shapes_folder: Path, tmp_path: Path) -> None:
    run = foveal.train(data=str(shapes_folder), epochs=1, lr="auto", project=str(tmp_path), **FAST)
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert isinstance(config["lr"], float) and 1e-6 <= config["lr"] <= 1.0
    assert (run.run_dir / "plots" / "lr_find.png").is_file()


def test_skip_bad_images_trains_anyway(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import make_image

    for i in range(8):
        make_image(tmp_path / "d" / "a" / f"{i}.png", (200, 0, 0), 32)
        make_image(tmp_path / "d" / "b" / f"{i}.png", (0, 0, 200), 32)
    (tmp_path / "d" / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(foveal.FovealError, match="broken.png"):
        foveal.train(data=str(tmp_path / "d"), epochs=1, project=str(tmp_path / "r"), **FAST)
    run = foveal.train(
        data=str(tmp_path / "d"), epochs=1, project=str(tmp_path / "r"), on_bad_image="skip", **FAST
    )
    assert "skipped 1 unreadable image(s)" in caplog.text
    assert run.best.is_file()


def test_checkpoint_of_another_task_is_refused(base_run: foveal.TrainResult, tmp_path: Path) -> None:
    raw = torch.load(base_run.best, weights_only=True)
    raw["foveal"]["meta"]["task"] = "segment"
    torch.save(raw, tmp_path / "other.ckpt")
    with pytest.raises(
        CheckpointError, match="not a foveal checkpoint|unknown task 'segment'|'segment' checkpoint"
    ):
        foveal.load(tmp_path / "other.ckpt", task="classify")
    with pytest.raises(CheckpointError, match="'classify' checkpoint, not 'segment'"):
        foveal.load(base_run.best, task="segment")
    np.save(tmp_path / "junk.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="junk.npy"):
        foveal.load(tmp_path / "junk.npy")


def test_early_stopping_stops_when_the_metric_stalls(shapes_folder: Path, tmp_path: Path) -> None:
    run = foveal.train(
        data=str(shapes_folder),
        epochs=10,
        lr=1e-12,
        model="lenet",  # no BatchNorm: with a zero step the metric cannot move
        patience=2,
        scheduler="none",
        project=str(tmp_path),
        **FAST,
    )
    assert run.metrics["epochs_run"] == 3  # the first epoch sets the best, two more without improvement
