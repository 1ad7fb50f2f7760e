"""``--aug auto``: the probe turns label-changing flips off (arrows) and keeps label-preserving ones
(shapes), for classify and segment, through the CLI and the Python API; resumed runs and the processes
of multi-process runs read the decision from config.yaml instead of probing again."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from foveal.data.synth_writers import write_synthetic
from foveal.data.synthetic import ARROW_CLASSES, generate_arrows
from foveal.engine import aug_probe
from foveal.engine.aug_probe import choose_aug
from foveal.engine.setup import prepare_run, resolve_config


@pytest.fixture(scope="module")
def arrows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(
        tmp_path_factory.mktemp("arrows") / "data", n=600, imgsz=32, seed=1, scene="arrows"
    )


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 px: at 32 px the probe learns too little of the shapes to measure anything (it keeps the preset)."""
    return write_synthetic(tmp_path_factory.mktemp("shapes") / "data", n=1000, imgsz=48, seed=1)


def _prepared(data: Path, **options):
    """Task, splits and config of a run long enough to be probed, its aug not yet chosen."""
    return prepare_run(
        resolve_config(**{"data": str(data), "imgsz": 32, "epochs": 40, "batch": 32, **options})
    )


def test_arrows_point_where_their_class_says() -> None:
    """The head's base (the widest cross-section) lies on the class's side of the box centre."""
    for scene in generate_arrows(40, 32, seed=3):
        obj = scene.objects[0]
        widest_x, widest_y = obj.mask.sum(0).argmax() + 0.5, obj.mask.sum(1).argmax() + 0.5
        cx, cy = (obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2
        side = {"left": cx - widest_x, "right": widest_x - cx, "up": cy - widest_y, "down": widest_y - cy}
        assert side[ARROW_CLASSES[obj.cls]] > 0
        assert (scene.semantic > 0).sum() == obj.mask.sum()


def test_arrows_scene_formats(tmp_path: Path) -> None:
    out = write_synthetic(tmp_path / "a", n=12, imgsz=32, scene="arrows", fmt="masks")
    assert (out / "classes.txt").read_text().split() == ["background", *ARROW_CLASSES]
    with pytest.raises(Exception, match="arrows"):
        write_synthetic(tmp_path / "b", n=12, imgsz=32, scene="arrows", fmt="coco")


def test_flips_off_on_arrows_and_deterministic(arrows: Path) -> None:
    task, splits, cfg = _prepared(arrows, aug="light")
    base = {"preset": "light", "vflip": 0.5}
    aug, evidence = choose_aug(task, splits, cfg, base)
    assert aug == {"preset": "light", "vflip": 0.0, "hflip": 0.0}
    for name in ("hflip", "vflip"):
        found = evidence["candidates"][name]
        assert not found["kept"] and found["drop"] > found["margin"] > 0
    assert evidence["probe"]["scored_on"] == "val"
    again = choose_aug(task, splits, cfg, base)[1]
    assert {**again, "probe": None} == {**evidence, "probe": None}  # the same seed: the same decision


def test_hflip_kept_on_shapes(shapes: Path) -> None:
    task, splits, cfg = _prepared(shapes, aug="light", imgsz=48)
    aug, evidence = choose_aug(task, splits, cfg)
    assert aug == "light", evidence["summary"]
    assert evidence["candidates"]["hflip"]["kept"]
    assert evidence["signal"] > 0.1  # the probe learned the shapes: a measured keep, not a fallback


def test_segment_hflip_off_on_arrow_masks(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "m", n=400, imgsz=32, seed=2, scene="arrows", fmt="masks")
    task, splits, cfg = _prepared(data, task="segment", aug="light", batch=16)
    aug, evidence = choose_aug(task, splits, cfg)
    assert aug == {"preset": "light", "hflip": 0.0}, evidence["summary"]
    assert evidence["metric"] == "miou"


def test_skipped_probes_keep_the_preset_and_say_why(arrows: Path, tiny_folder: Path) -> None:
    task, splits, cfg = _prepared(arrows, aug="light")
    aug, evidence = choose_aug(task, splits, cfg, "none")
    assert aug == "none" and "nothing to probe" in evidence["summary"]
    short = resolve_config(data=str(arrows), imgsz=32, epochs=21, aug="light")  # 21 x 480 < 4 x 2560
    assert "too few to pay" in choose_aug(task, splits, short)[1]["summary"]
    task, splits, cfg = _prepared(tiny_folder, aug="light", epochs=2000)  # 12 images
    aug, evidence = choose_aug(task, splits, cfg)
    assert aug == "light" and "too few images" in evidence["summary"]


def test_no_val_split_scores_on_held_out_train(arrows: Path) -> None:
    task, splits, cfg = _prepared(arrows, aug="light")
    train, scored, source = aug_probe._probe_samples({"train": splits["train"]}, cfg.seed)
    assert len(scored) == len(splits["train"]) // 4 and "held-out" in source
    assert not {s.path for s in train} & {s.path for s in scored}


def test_resolved_config_is_not_probed_again(arrows: Path, tmp_path: Path, monkeypatch) -> None:
    """--resume and the processes of a multi-process run read config.yaml, whose aug is resolved."""
    from foveal.config import save_yaml

    task, splits, cfg = _prepared(arrows)  # aug auto: probed here
    assert cfg.aug == {"preset": "light", "hflip": 0.0} and cfg.aug_evidence["candidates"]["hflip"]
    assert task.meta.aug["hflip"] == 0.0  # the task trains with what was chosen
    save_yaml(cfg, tmp_path / "config.yaml")

    def refuse(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(aug_probe, "choose_aug", refuse)
    again = resolve_config(tmp_path / "config.yaml")
    task, _, cfg2 = prepare_run(again)
    assert cfg2.aug == cfg.aug and cfg2.aug_evidence == cfg.aug_evidence and task.meta.aug["hflip"] == 0.0


@pytest.mark.slow  # ~13 s: 22 epochs, long enough to be probed
def test_cli_default_aug_auto_on_arrows(arrows: Path, tmp_path: Path, capsys) -> None:
    from foveal.cli.main import main

    args = ["train", "--data", str(arrows), "--imgsz", "32", "--epochs", "22", "--batch", "64"]
    assert main([*args, "--project", str(tmp_path), "--no-progress"]) == 0
    assert "--aug auto: hflip off (accuracy" in capsys.readouterr().err  # the decision and its evidence
    run = next(tmp_path.glob("*/config.yaml")).parent
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["aug"] == {"preset": "light", "hflip": 0.0}
    assert config["aug_evidence"]["candidates"]["hflip"]["kept"] is False
    page = (run / "report.html").read_text()
    assert "Augmentation (--aug auto)" in page and "hflip off" in page


@pytest.mark.slow
def test_api_default_aug_auto_keeps_hflip_on_shapes(shapes: Path, tmp_path: Path) -> None:
    import foveal

    result = foveal.train(
        data=str(shapes), imgsz=48, epochs=13, batch=64, project=str(tmp_path), progress=False
    )
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["aug"] == "light" and config["aug_evidence"]["candidates"]["hflip"]["kept"] is True


def test_pose_without_flip_idx_keeps_hflip_unmeasured(tmp_path: Path) -> None:
    """A task that cannot map a flip's outputs back (pose keypoints without flip_idx) keeps the preset's
    setting and says why, found before any probe training; its pipeline does not flip such data."""
    data = write_synthetic(tmp_path / "p", n=200, imgsz=32, seed=3, fmt="yolo-pose")
    task, splits, cfg = _prepared(data, task="pose", aug="light", epochs=80, batch=16)
    aug, evidence = choose_aug(task, splits, cfg)
    assert aug == "light" and "probe" not in evidence
    assert (
        evidence["candidates"]["hflip"]["kept"]
        and "flip_idx" in evidence["candidates"]["hflip"]["unmeasured"]
    )
    assert "hflip not measurable" in evidence["summary"]
