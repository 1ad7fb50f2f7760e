"""The Task contract, checked the same way for every registered task (as timm's tests are for every
model): item -> collate -> forward -> loss -> step_outputs -> compute_metrics -> postprocess -> JSON ->
render; unview/merge identities; the temperature through ``MergedModel``; a checkpoint round trip with
identical predictions; checkpoints in the earlier meta layout still load."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from foveal.config import make_config
from foveal.data.synth_writers import write_synthetic
from foveal.engine.calibrated import temper_model
from foveal.engine.checkpoint import load
from foveal.engine.merge import MergedModel, View
from foveal.engine.module import TaskModule
from foveal.engine.setup import prepare_run
from foveal.errors import CheckpointError, ConfigError, FovealError
from foveal.serialize import dumps
from foveal.tasks import TASKS, get_task, task_help, task_names
from foveal.tasks.base import Prediction, Task, TaskMeta

# per task: the synthetic format it reads and a small, fast model
SETUP: dict[str, tuple[str, str]] = {
    "classify": ("imagefolder", "lenet"),
    "segment": ("masks", "unet"),
    "detect": ("coco", "centernet"),
    "instance": ("coco", "maskrcnn_resnet18"),
    "pose": ("coco", "centernet"),
    "regress": ("regress", "lenet"),
}


def test_every_registered_task_is_covered_and_listed() -> None:
    assert set(SETUP) == set(task_names()) == set(TASKS)
    assert all(name in task_help() for name in task_names())
    for name in task_names():
        cls = get_task(name)
        assert cls.name == name and issubclass(cls, Task) and issubclass(cls.Meta, TaskMeta)
        assert cls.mode in ("max", "min") and cls.model_family and cls.dataset_kind
    with pytest.raises(ConfigError, match="did you mean: classify"):
        get_task("clasify")


@pytest.fixture(scope="module", params=list(SETUP))
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    name = request.param
    fmt, model = SETUP[name]
    data = write_synthetic(tmp_path_factory.mktemp(name) / "data", n=24, imgsz=32, seed=3, fmt=fmt)
    cfg = make_config(task=name, data=str(data), model=model, imgsz=32, batch=4, workers=0)
    torch.manual_seed(0)
    task, splits, cfg = prepare_run(cfg)
    return {"name": name, "task": task, "splits": splits, "cfg": cfg, "model": task.build_model().eval()}


def _batch(task: Task, samples: list, split: str = "val") -> tuple[torch.Tensor, Any]:
    transform = task.transforms(split)
    return task.collate([task.item(s, transform) for s in samples[:4]])


def _predictions(task: Task, outputs: Any) -> list[dict[str, Any]]:
    return [json.loads(dumps({k: v for k, v in p.to_dict().items() if k != "mask"})) for p in
            task.postprocess(outputs)]  # fmt: skip


def test_meta_is_complete_and_plain(prepared: dict[str, Any]) -> None:
    task = prepared["task"]
    plain = task.meta.to_dict()
    assert type(task.meta) is type(task).Meta and plain["task"] == prepared["name"]
    assert plain["model"] == prepared["cfg"].model and plain["imgsz"] == 32
    json.dumps(plain)  # plain values only: checkpoints load with weights_only=True
    assert type(task).Meta.from_dict(plain) == task.meta
    assert task.class_names, "a task names its outputs"


def test_item_collate_forward_loss_backward(prepared: dict[str, Any]) -> None:
    task, model = prepared["task"], prepared["model"]
    images, targets = _batch(task, prepared["splits"]["train"], "train")
    assert (
        images.shape == (min(4, len(prepared["splits"]["train"])), 3, 32, 32)
        and images.dtype == torch.float32
    )
    module = TaskModule(task, prepared["cfg"], model)
    model.train()
    losses = task.loss(task.forward(model, images, targets), targets, module.criterion)
    model.eval()
    assert math.isfinite(float(losses["loss"]))
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_outputs_metrics_predictions_json_render(prepared: dict[str, Any], tmp_path: Path) -> None:
    task, model, samples = prepared["task"], prepared["model"], prepared["splits"]["val"]
    images, targets = _batch(task, samples)
    with torch.no_grad():
        outputs = task.forward(model, images)
    kept = task.step_outputs(outputs, targets)
    assert kept and all(torch.is_tensor(v) for v in kept.values())
    metrics = task.compute_metrics(kept)
    assert task.monitor in metrics and math.isfinite(float(metrics[task.monitor]))
    json.loads(dumps(metrics))
    predictions = task.postprocess(outputs)
    assert len(predictions) == len(images)
    for prediction, sample in zip(predictions, samples, strict=False):
        assert isinstance(prediction, Prediction) and isinstance(prediction.summary(), str)
        final = task.finalize(prediction, Image.open(sample.path).size)
        json.loads(dumps({k: v for k, v in final.to_dict().items() if k != "mask"}))
        image = Image.open(sample.path).convert("RGB")
        overlay = task.render(image, final)
        assert isinstance(overlay, Image.Image) and overlay.width >= image.width
    paths = task.plots(kept, metrics, str(tmp_path), samples[: len(predictions)], predictions)
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_unview_identity_and_merge_of_equal_outputs(prepared: dict[str, Any]) -> None:
    task, model = prepared["task"], prepared["model"]
    images, _ = _batch(task, prepared["splits"]["val"])
    with torch.no_grad():
        outputs = task.forward(model, images)
    size = tuple(images.shape[-2:])
    assert _predictions(task, task.unview(outputs, View(), size, size)) == _predictions(task, outputs)
    merged = task.merge([outputs, outputs], [1.0, 1.0])
    for got, want in zip(_predictions(task, merged), _predictions(task, outputs), strict=True):
        _assert_close(got, want)


def test_temperature_is_applied_once_through_merged_model(prepared: dict[str, Any]) -> None:
    task, model = prepared["task"], prepared["model"]
    images, _ = _batch(task, prepared["splits"]["val"])
    with torch.no_grad():
        raw = task.forward(model, images)
    try:
        expected = task.temper(raw, 2.0)
    except ConfigError as err:
        assert f"--task {task.name}" in str(err)  # a task without calibration says so
        return
    handle = temper_model(task, model, 2.0)
    try:
        with torch.no_grad():
            single = task.forward(model, images)
            merged = task.forward(MergedModel(task, [model], [View()]).eval(), images)
    finally:
        handle.remove()
    for got in (single, merged):
        for a, b in zip(_predictions(task, got), _predictions(task, expected), strict=True):
            _assert_close(a, b)


def test_checkpoint_round_trip_gives_identical_predictions(prepared: dict[str, Any], tmp_path: Path) -> None:
    task, model, cfg = prepared["task"], prepared["model"], prepared["cfg"]
    images, _ = _batch(task, prepared["splits"]["val"])
    with torch.no_grad():
        before = _predictions(task, task.forward(model, images))
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "foveal": {"meta": task.meta.to_dict(), "config": cfg.to_dict(), "weights": "model"},
    }
    torch.save(checkpoint, tmp_path / "best.ckpt")
    loaded = load(tmp_path / "best.ckpt", task=task.name)
    assert loaded.task.meta == task.meta
    with torch.no_grad():
        after = _predictions(loaded.task, loaded.task.forward(loaded.model, images))
    assert after == before


def test_unknown_and_missing_meta_fields_are_one_line_errors(
    prepared: dict[str, Any], tmp_path: Path
) -> None:
    task = prepared["task"]
    with pytest.raises(CheckpointError, match="unknown field.*colour_space.*newer foveal"):
        type(task).Meta.from_dict({**task.meta.to_dict(), "colour_space": "lab"})
    plain = task.meta.to_dict()
    del plain["imgsz"]
    with pytest.raises(CheckpointError, match="lacks imgsz"):
        type(task).Meta.from_dict(plain)


def test_hooks_a_task_lacks_say_so() -> None:
    regress = get_task("regress")
    from tests.task_metas import meta_for

    task = regress(meta_for("regress"))
    for call in (lambda: task.balance_labels([]), lambda: task.calibration_pairs(None, None),
                 lambda: task.kept_from_probabilities(None, None)):  # fmt: skip
        with pytest.raises(FovealError, match="not supported for --task regress"):
            call()


# Checkpoint metas exactly as the release before the typed meta wrote them (plain dicts, keys in the
# order load_data assembled them, no temperature until calibrated).
OLD_LAYOUT = {
    "classify": {"task": "classify", "kind": "multiclass", "class_names": ["a", "b"], "imgsz": 32,
                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "thresholds": None,
                 "aug": {"preset": "none"}, "loss": "auto", "label_smoothing": 0.0, "class_weights": None,
                 "focal_gamma": 2.0, "model": "lenet", "model_options": {}},
    "segment": {"task": "segment", "kind": "binary", "class_names": ["bg", "x"], "ignore_index": 255,
                "spec": {"class_names": ["bg", "x"], "ignore_index": 255}, "imgsz": 32,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "aug": {"preset": "none"},
                "loss": "ce+dice", "class_weights": None, "model": "unet", "model_options": {},
                "temperature": 1.5},
    "pose": {"task": "pose", "class_names": ["p"], "category_ids": [1], "imgsz": 32,
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "aug": {"preset": "none"},
             "keypoint_names": ["a", "b", "c"], "skeleton": [[0, 1]], "flip_idx": None,
             "kpt_sigmas": [0.05] * 3, "model": "centernet", "model_options": {}},
}  # fmt: skip


@pytest.mark.parametrize("name", list(OLD_LAYOUT))
def test_checkpoints_in_the_earlier_layout_still_load(name: str, tmp_path: Path) -> None:
    meta = OLD_LAYOUT[name]
    task = get_task(name)(meta)
    model = task.build_model()
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                  "foveal": {"meta": meta, "config": {"task": name}, "weights": "model"}}  # fmt: skip
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = load(tmp_path / "old.ckpt")
    assert loaded.task.meta.to_dict() == {**type(task).Meta.from_dict(meta).to_dict()}
    assert loaded.task.meta.temperature == meta.get("temperature", 1.0)


def test_a_damaged_meta_is_a_one_line_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from foveal.cli.main import main

    meta = {k: v for k, v in OLD_LAYOUT["classify"].items() if k != "class_names"}
    torch.save({"state_dict": {}, "foveal": {"meta": meta, "config": {}}}, tmp_path / "bad.ckpt")
    assert main(["predict", "--weights", str(tmp_path / "bad.ckpt"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks class_names" in err and len(err.splitlines()) == 1


def _assert_close(got: Any, want: Any) -> None:
    """Predictions equal up to float rounding (merged outputs are re-derived, e.g. log(mean(p)))."""
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            _assert_close(got[key], want[key])
    elif isinstance(want, list):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            _assert_close(a, b)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4)
    else:
        assert got == want


def test_a_task_with_its_own_training_step_and_no_labels_runs_through_the_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A denoiser (target: the clean image; no labels; two networks and two optimisers stepped by the
    task's own ``training_step``) trains, evaluates, reloads and predicts with no engine special case."""
    import foveal
    from foveal.tasks import TaskEntry

    monkeypatch.setitem(TASKS, "denoise", TaskEntry("denoise", "tests.toy_tasks:DenoiseTask", "denoising"))
    cls, initial = get_task("denoise"), []
    build = cls.build_model

    def recording_build(self: Task) -> torch.nn.Module:
        model = build(self)
        initial.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(cls, "build_model", recording_build)
    data = write_synthetic(tmp_path / "data", n=40, imgsz=32, seed=0)
    result = foveal.train(task="denoise", data=str(data), epochs=2, imgsz=32, batch=8, workers=0,
                          progress=False, project=str(tmp_path / "runs"), name="d", seed=0)  # fmt: skip
    assert result.run_dir == tmp_path / "runs" / "d" and math.isfinite(result.metrics["psnr"])
    trained = load(result.best).model.state_dict()
    for net in ("generator", "critic"):  # both of the task's optimisers stepped their network
        assert any(not torch.equal(initial[0][k], trained[k]) for k in trained if k.startswith(net))
    metrics = foveal.evaluate(result.best, data, split="val", workers=0)
    assert metrics["psnr"] == pytest.approx(result.metrics["psnr"], rel=1e-6)
    rows = foveal.predict(result.best, [str(p) for p in sorted(data.rglob("*.png"))[:3]], workers=0)
    assert len(rows) == 3 and "mean" in rows[0]
