"""foveal export / benchmark and the one predictor for .ckpt, .onnx and .ts files, on every task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic

CASES = {
    "classify": ("imagefolder", {}),
    "segment": ("masks", {"model": "unet", "model_options": {"width": 8, "depth": 2}}),
    "detect": ("coco", {"model": "centernet"}),
    "instance": ("yolo-seg", {}),
    "pose": ("yolo-pose", {}),
    "regress": ("regress", {}),
}


def test_every_registered_task_is_exported_here() -> None:
    from foveal.tasks import task_names

    assert sorted(CASES) == sorted(task_names()), "add the new task to CASES: every task must export"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(data folder, best.ckpt) of a one-epoch run of every task on 32 px synthetic data."""
    import foveal

    root = tmp_path_factory.mktemp("export")
    found = {}
    for task, (fmt, options) in CASES.items():
        data = write_synthetic(root / f"data_{task}", n=40, imgsz=32, seed=1, fmt=fmt)
        fast = {"epochs": 1, "imgsz": 32, "batch": 8, "workers": 0, "progress": False, "seed": 0}
        result = foveal.train(
            task=task, data=str(data), project=str(root / "runs"), name=task, **fast, **options
        )
        found[task] = (data, result.best)
    return found


def _images(data: Path) -> list[str]:
    return sorted(str(p) for p in data.rglob("*.png") if "masks" not in p.parts and "labels" not in p.parts)[
        :4
    ]


def _close(a: object, b: object, tol: float = 1e-3) -> bool:
    """JSON values equal, floats within ``tol`` (rounded outputs may differ in the last digit)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= tol * (1 + abs(float(b)))
    return a == b


def _predict(weights: Path, images: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["predict", "--weights", str(weights), *images, "--out", str(out), "--workers", "0",
                 "--json", "--threads", "1"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["predictions"]
    return [
        {k: v for k, v in row.items() if k not in ("path", "overlay", "mask_png", "mask")} for row in rows
    ]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CASES))
def test_export_every_task_and_predict_the_same(runs, task: str, tmp_path: Path, capsys) -> None:
    import onnx

    data, ckpt = runs[task]
    images = _images(data)
    reference = _predict(ckpt, images, tmp_path / "ckpt", capsys)
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".ts")):
        target = tmp_path / f"model{suffix}"
        assert main(["export", "--weights", str(ckpt), "--format", fmt, "--out", str(target), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        parity = report["parity"]
        assert parity["passed"] and parity["images"] == 4 and parity["reasons"] == []
        assert parity["max_abs_diff"] <= 1e-4 * (1 + max(d["max_abs"] for d in parity["outputs"].values()))
        assert parity["agreement"]["value"] == 1.0, parity
        saved = json.loads((tmp_path / "export.json").read_text())
        assert saved[target.name]["parity"] == parity and saved[target.name]["task"] == task
        assert _close(_predict(target, images, tmp_path / fmt, capsys), reference), (task, fmt)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert props["task"] == task and json.loads(props["imgsz"]) == 32
    doc = json.loads(props["foveal"])
    assert doc["meta"]["task"] == task and doc["input"]["shape"] == [1, 3, 32, 32]
    assert json.loads(props["class_names"]) == doc["class_names"] and doc["decode"]
    assert sorted(json.loads((tmp_path / "export.json").read_text())) == ["model.onnx", "model.ts"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "detect"])
def test_val_on_an_onnx_file_equals_the_checkpoint(runs, task: str, tmp_path: Path, capsys) -> None:
    data, ckpt = runs[task]
    target = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(target), "--dynamic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"]["shape"] == ["batch", 3, "height", "width"]
    found = {}
    for weights in (ckpt, target):
        assert main(["val", "--weights", str(weights), "--data", str(data), "--workers", "0", "--json",
                     "--tta", "hflip"]) == 0  # fmt: skip
        found[weights.suffix] = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "ece", "map", "map50", "f1_macro"):
        if key in found[".ckpt"]:
            assert found[".onnx"][key] == pytest.approx(found[".ckpt"][key], abs=1e-6), key
            assert found[".onnx"]["tta"][key] == pytest.approx(found[".ckpt"]["tta"][key], abs=1e-6), key


@pytest.mark.slow
def test_static_export_refuses_other_sizes_and_pads_its_batch(runs, tmp_path: Path, capsys) -> None:
    from foveal.engine.checkpoint import load
    from foveal.errors import ConfigError

    data, ckpt = runs["classify"]
    target = tmp_path / "b3.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(target), "--batch", "3", "--json"]) == 0
    capsys.readouterr()
    exported, eager = load(target), load(ckpt)
    images = torch.randn(5, 3, 32, 32)  # 5 images through a batch-3 file: chunks of 3, the last padded
    with torch.inference_mode():
        assert torch.allclose(exported.model(images), eager.model(images), atol=1e-4)
        with pytest.raises(ConfigError, match="exported for 32x32 inputs, got 40x40.*--dynamic"):
            exported.model(torch.randn(1, 3, 40, 40))


@pytest.mark.slow
def test_half_and_simplify(runs, tmp_path: Path, capsys) -> None:
    import onnx

    data, ckpt = runs["classify"]
    assert (
        main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "h.onnx"), "--half", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["input"]["dtype"] == "float16" and report["parity"]["tolerance"]["atol"] == 1e-2
    model = onnx.load(str(tmp_path / "h.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "s.onnx"), "--simplify",
                 "--opset", "18", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["opset"] == 18


@pytest.mark.slow
def test_a_failed_parity_check_exits_non_zero_and_keeps_no_model_file(runs, tmp_path: Path, capsys) -> None:
    data, ckpt = runs["classify"]
    target = tmp_path / "m.onnx"
    code = main(["export", "--weights", str(ckpt), "--out", str(target), "--min-agreement", "1.5"])
    err = capsys.readouterr().err
    assert code == 2 and "does not match" in err and "top1_agreement 1.0000 is below 1.5" in err
    assert not target.exists() and (tmp_path / "m.failed.onnx").is_file()
    assert json.loads((tmp_path / "export.json").read_text())["m.failed.onnx"]["parity"]["passed"] is False


class Unexportable(nn.Module):
    """A layer with Python control flow on a tensor's value (does not trace to a static graph)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if float(images.mean().item()) > np.float32(0.0):
            return (self.model(images) * 2,)
        return (self.model(images),)


@pytest.mark.slow
def test_an_unexportable_layer_is_named_and_leaves_no_file(runs, tmp_path: Path, monkeypatch, capsys) -> None:
    from foveal.models.graph import ExportGraph
    from foveal.tasks.classify import ClassifyTask

    data, ckpt = runs["classify"]
    monkeypatch.setattr(
        ClassifyTask, "export_graph", lambda self, model: ExportGraph(Unexportable(model), ("output",))
    )
    code = main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "ONNX export failed at layer Unexportable (test_export.py:" in err, err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_foveal_metadata_and_damaged_files(tmp_path: Path, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["images"], ["out"])
    value = helper.make_tensor_value_info
    graph = helper.make_graph([node], "g", [value("images", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [value("out", TensorProto.FLOAT, [1, 3, 4, 4])])  # fmt: skip
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(plain))
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--weights", str(plain), str(image)]) == 2
    err = capsys.readouterr().err
    assert "plain.onnx: no foveal metadata" in err and "foveal export" in err and len(err.splitlines()) == 1
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"not an onnx file")
    assert main(["predict", "--weights", str(damaged), str(image)]) == 2
    assert "damaged.onnx: not a readable ONNX file" in capsys.readouterr().err
    ts = tmp_path / "damaged.ts"
    ts.write_bytes(b"nope")
    assert main(["val", "--weights", str(ts), "--data", str(tmp_path)]) == 2
    assert "damaged.ts: not a readable TorchScript file" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_every_runtime(runs, tmp_path: Path, capsys) -> None:
    data, ckpt = runs["classify"]
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--weights", str(ckpt), "--batch", "1", "4", "--iterations", "2", "--data",
                 str(data), "--out", str(out), "--json", "--threads", "1"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    rows = {(r["runtime"], r["batch"]): r for r in report["rows"]}
    assert sorted(rows) == sorted((r, b) for r in ("eager", "torchscript", "onnxruntime", "onnxruntime-int8")
                                  for b in (1, 4))  # fmt: skip
    assert all(r["median_ms"] > 0 and r["images_per_s"] > 0 for r in rows.values())
    assert rows[("eager", 4)]["speedup"] == 1.0
    assert report["agreement"]["onnxruntime"] == {"name": "top1_agreement", "value": 1.0}
    assert 0.0 <= report["agreement"]["onnxruntime-int8"]["value"] <= 1.0
    assert report["int8_metric"]["metric"] == "accuracy" and report["threads"] == 1


@pytest.mark.slow
def test_a_video_through_an_onnx_file_gives_the_checkpoints_frames(runs, tmp_path: Path) -> None:
    from foveal.data.synth_video import write_synthetic_video
    from foveal.video.predict import predict_video

    data, ckpt = runs["detect"]
    clip = write_synthetic_video(tmp_path / "clip", frames=12, imgsz=32, objects=2, seed=3)
    target = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(target)]) == 0
    found = {}
    for weights in (ckpt, target):
        summary = predict_video(weights, clip / "video.mp4", out=tmp_path / weights.suffix[1:], track=True,
                                conf=0.05, progress=False)  # fmt: skip
        assert summary["frames_predicted"] == 12
        found[weights.suffix] = [
            json.loads(line) for line in Path(summary["files"]["jsonl"]).read_text().splitlines()
        ]
    assert _close(found[".onnx"], found[".ckpt"])


def test_parity_needs_real_images(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from foveal.errors import ConfigError
    from foveal.export.parity import parity_samples

    gone = SimpleNamespace(config={"data": str(tmp_path / "moved")}, task=None)
    with pytest.raises(ConfigError, match="moved'? is not here; pass --data DATASET or --images FILES"):
        parity_samples(gone, None, None, 8)
    with pytest.raises(Exception, match="no such file or folder"):
        parity_samples(gone, None, [str(tmp_path / "nope.png")], 8)


def test_export_option_errors(tmp_path: Path, capsys) -> None:
    assert main(["export", "--weights", str(tmp_path / "x.ckpt"), "--format", "tflite"]) == 2
    assert "tflite" in capsys.readouterr().err
    assert (
        main(["export", "--weights", str(tmp_path / "x.ckpt"), "--format", "torchscript", "--opset", "17"])
        == 2
    )
    assert "--opset and --simplify are ONNX options" in capsys.readouterr().err
    assert main(["benchmark", "--weights", str(tmp_path / "x.ckpt"), "--runtimes", "tensorrt"]) == 2
    assert "unknown runtime(s) tensorrt" in capsys.readouterr().err
