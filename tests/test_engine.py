"""Engine pieces: config validation, run folders, atomic writes, trainer settings, JSON output."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from foveal.atomic import atomic_write, atomic_write_text
from foveal.config import load_yaml, make_config
from foveal.engine.callbacks import AtomicCheckpointIO, History
from foveal.engine.rundir import new_run_dir
from foveal.engine.trainer import build_trainer
from foveal.errors import ConfigError
from foveal.serialize import dumps
from foveal.tasks.classify import ClassifyTask
from tests.task_metas import meta_for


def test_config_unknown_options_suggest_close_matches(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option 'epoch' .did you mean: epochs"):
        make_config(epoch=3)
    (tmp_path / "c.yaml").write_text("lr: 0.01\nbatch_size: 8\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown option 'batch_size' \(did you mean: batch"):
        load_yaml(tmp_path / "c.yaml")
    (tmp_path / "bad.yaml").write_text("lr: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    for bad in ({"epochs": 0}, {"lr": "fast"}, {"lr": -1.0}, {"freeze": "head"}, {"device": "gpu"}):
        with pytest.raises(ConfigError):
            make_config(**bad)
    assert make_config(lr="0.5").lr == 0.5 and make_config(lr="auto").lr == "auto"


def test_run_folders_never_overwrite(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "exp")
    (first / "keep.txt").write_text("x")
    assert [new_run_dir(tmp_path, "exp").name for _ in range(2)] == ["exp-2", "exp-3"]
    assert (first / "keep.txt").read_text() == "x"


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.json", "old")

    def explode(handle) -> None:
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, explode)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert target.stat().st_mode & 0o044  # readable by others, like a normal file


def test_checkpoint_io_is_atomic_and_weights_only(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, tmp_path / "c.ckpt")
    assert io.load_checkpoint(tmp_path / "c.ckpt")["epoch"] == 1
    torch.save({"obj": ConfigError("pickled object")}, tmp_path / "unsafe.ckpt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        io.load_checkpoint(tmp_path / "unsafe.ckpt")


def test_trainer_settings_follow_the_config(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import EarlyStopping

    meta = meta_for("classify", class_names=["a", "b", "c"])
    config = make_config(grad_clip=0.5, amp=True, patience=4, device="cpu", progress=False, epochs=7)
    trainer = build_trainer(config, ClassifyTask(meta), tmp_path, History(tmp_path / "h.json"))
    assert trainer.gradient_clip_val == 0.5 and trainer.max_epochs == 7
    assert trainer.precision == "32-true"  # AMP is CUDA-only
    stoppers = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stoppers) == 1 and stoppers[0].patience == 4 and stoppers[0].monitor == "val/accuracy"
    with pytest.raises(ConfigError, match="no CUDA GPU") if not torch.cuda.is_available() else nullcontext():
        build_trainer(make_config(device="cuda"), ClassifyTask(meta), tmp_path, History(tmp_path / "h.json"))


def test_json_output_is_strict() -> None:
    text = dumps({"a": math.nan, "b": [1.5, math.inf], "p": Path("x"), "t": torch.tensor([1, 2])})
    assert json.loads(text) == {"a": None, "b": [1.5, None], "p": "x", "t": [1, 2]}
