"""Saliency (``foveal explain``) and feature maps (``foveal features``).

References: hand-computed Grad-CAM, gradients and occlusion on tiny models; integrated gradients'
completeness axiom; the pointing game (saliency mass inside the object's box, Zhang et al. 2016) on
shapes scenes with a trained classifier, and the model-randomisation test (Adebayo et al. 2018).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr
from torch import nn

import foveal
from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic
from foveal.data.synthetic import CLASSES, generate
from foveal.engine.checkpoint import load
from foveal.errors import ConfigError
from foveal.explain import explain, features, list_layers, mass_in_box
from foveal.explain.features import default_layer
from foveal.explain.saliency import gradcam_map, gradients_map, integrated_gradients_map, occlusion_map
from foveal.explain.targets import objective, prepare_image
from foveal.tasks import get_task

IMGSZ = 32
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SANITY_METHODS = ("gradients", "gradcam", "occlusion")
# The default Grad-CAM layer (the last conv, features.stage3.0.conv2) is 4x4 on 32 px inputs: cells of
# 8 px against objects of 11-26 px give mass-in-box ratios of only ~1.05-1.3 even for a trained model.
# The pointing game uses the last conv at 8x8 instead (ratio ~2 trained vs ~1 random).
GRADCAM_LAYER = "features.stage2.0.conv2"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a small ResNet trained briefly on 600 shapes images of 32 px."""
    root = tmp_path_factory.mktemp("explain")
    data = write_synthetic(root / "data", n=600, imgsz=IMGSZ, seed=0, fmt="imagefolder")
    run = foveal.train(
        data=str(data),
        model="smallresnet",
        model_options={"stem_stride": 1, "stages": 3, "width": 16},
        imgsz=IMGSZ,
        epochs=8,
        batch=16,
        aug="none",
        workers=0,
        progress=False,
        project=str(root / "runs"),
    )
    assert run.metrics["accuracy"] >= 0.6, run.metrics["accuracy"]  # chance is 0.25
    return run.best


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, np.ndarray, str]]:
    """20 unseen single-object scenes: (PNG path, object box xyxy, class name)."""
    folder = tmp_path_factory.mktemp("scenes")
    items = []
    for i, scene in enumerate(generate(20, IMGSZ, seed=123, single_object=True)):
        path = folder / f"scene{i}.png"
        Image.fromarray(scene.image).save(path)
        items.append((str(path), scene.objects[0].box, CLASSES[scene.objects[0].cls]))
    return items


def _save_checkpoint(meta: dict, path: Path, model: nn.Module | None = None) -> Path:
    """A foveal checkpoint with ``model``'s weights (default: a fresh model of ``meta``, seed 0)."""
    if model is None:
        torch.manual_seed(0)
        model = get_task(meta["task"])(meta).build_model()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"foveal": {"meta": meta, "weights": "model", "config": {}}, "state_dict": state}, path)
    return path


def _pointing(weights: Path, scenes: list, out: Path) -> tuple[dict[str, float], list[dict]]:
    """Mean over scenes of (saliency mass in the object's box) / (box area fraction) per method, for
    the true class of each scene, and the maps."""
    maps: list[dict] = [{} for _ in scenes]
    for name in {cls for _, _, cls in scenes}:
        index = [i for i, (_, _, cls) in enumerate(scenes) if cls == name]
        paths = [scenes[i][0] for i in index]
        methods = ",".join(SANITY_METHODS)
        result = explain(weights, paths, method=methods, target=name, layer=GRADCAM_LAYER, out=out)
        for i, found in zip(index, result.maps, strict=True):
            maps[i] = found
    ratios = {}
    for method in SANITY_METHODS:
        values = []
        for found, (_, box, _) in zip(maps, scenes, strict=True):
            area = (box[2] - box[0]) * (box[3] - box[1]) / IMGSZ**2
            inside = mass_in_box(found[method], box)
            values.append(1.0 if np.isnan(inside) else inside / area)  # no positive mass: chance level
        ratios[method] = float(np.mean(values))
    return ratios, maps


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two maps' pixels; 0 when either map is constant (e.g. an all-zero Grad-CAM)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def test_pointing_game_and_model_randomisation(classifier: Path, scenes: list, tmp_path: Path) -> None:
    trained, trained_maps = _pointing(classifier, scenes, tmp_path / "trained")
    checkpoint = torch.load(classifier, weights_only=True)
    torch.manual_seed(1)
    random_model = load(classifier).task.build_model()  # same architecture, fresh random weights
    random_ckpt = _save_checkpoint(checkpoint["foveal"]["meta"], tmp_path / "random.ckpt", random_model)
    randomised, random_maps = _pointing(random_ckpt, scenes, tmp_path / "random")
    for method in SANITY_METHODS:
        rho = np.mean([_rank_correlation(a[method], b[method]) for a, b in zip(trained_maps, random_maps)])
        print(f"{method}: mass-in-box {trained[method]:.2f}, random {randomised[method]:.2f}, rho {rho:.2f}")
        assert trained[method] > 1.3, (method, trained)
        assert randomised[method] < trained[method] - 0.2 or rho < 0.5, (method, randomised, rho)


def test_integrated_gradients_completeness(classifier: Path, scenes: list) -> None:
    loaded = load(classifier)
    x, image = prepare_image(loaded.task, scenes[0][0])
    obj = objective(loaded.task, loaded.model, x, image.size)
    black = ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand_as(x)
    attributions, delta = integrated_gradients_map(obj.score, x, black, steps=64)
    with torch.no_grad():
        difference = float(obj.score(x) - obj.score(black))
    assert abs(difference) > 0.1
    assert float(attributions.sum()) == pytest.approx(difference, abs=0.05 * abs(difference))
    assert delta == pytest.approx(float(attributions.sum()) - difference, abs=1e-3)


def _tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def test_gradcam_matches_hand_computation() -> None:
    net = _tiny_cnn()
    x = torch.randn(1, 3, 8, 8)
    assert list_layers(net) == ["0", "2"]
    assert default_layer(net, "vector", lambda: net(x)) == "2"
    kept: dict[str, torch.Tensor] = {}
    for c in range(3):
        handle = net[2].register_forward_hook(lambda _m, _i, out: kept.update(a=out))
        logits = net(x)
        handle.remove()
        grads = torch.autograd.grad(logits[0, c], kept["a"])[0]  # (1, 6, 4, 4)
        cam = F.relu((grads.mean((2, 3), keepdim=True) * kept["a"]).sum(1, keepdim=True))
        expected = F.interpolate(cam, (8, 8), mode="bilinear", align_corners=False)[0, 0]
        found = gradcam_map(lambda b, c=c: net(b)[:, c], x, net[2])
        assert found.shape == (8, 8)
        torch.testing.assert_close(found, expected.detach(), atol=1e-6, rtol=1e-5)
        assert found.max() > 0


def test_gradients_and_occlusion_match_a_linear_model() -> None:
    torch.manual_seed(0)
    weights, x = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)

    def linear(b: torch.Tensor) -> torch.Tensor:
        return (b * weights).sum((1, 2, 3))

    torch.testing.assert_close(gradients_map(linear, x), weights.abs().amax(1)[0])
    # 1x1 windows, baseline 0: each pixel's drop is its own contribution (summed over channels)
    occlusion, info = occlusion_map(linear, x, windows=[1])
    torch.testing.assert_close(occlusion, (weights * x).sum(1)[0], atol=1e-5, rtol=1e-4)
    # 2x2 windows, stride 2 (no overlap): each pixel gets the drop of the window it lies in
    contributions = (weights * x).sum(1, keepdim=True)  # (1, 1, 8, 8)
    occlusion, info = occlusion_map(linear, x, windows=2, stride=2)
    blocks = F.avg_pool2d(contributions, 2) * 4
    torch.testing.assert_close(occlusion, F.interpolate(blocks, scale_factor=2)[0, 0], atol=1e-5, rtol=1e-4)
    assert info == {"windows": [2], "strides": [2]}
    # stride 1 (overlapping windows): the mean drop of the windows covering each pixel
    occlusion, info = occlusion_map(linear, x, windows=2)
    drops = F.avg_pool2d(contributions, 2, stride=1) * 4  # (1, 1, 7, 7) one per window position
    ones = torch.ones(1, 1, 2, 2)
    expected = F.conv_transpose2d(drops, ones) / F.conv_transpose2d(torch.ones_like(drops), ones)
    torch.testing.assert_close(occlusion, expected[0, 0], atol=1e-5, rtol=1e-4)
    assert info == {"windows": [2], "strides": [1]}
    _, info = occlusion_map(lambda b: b.sum((1, 2, 3)), torch.zeros(1, 3, 32, 32))
    assert info == {"windows": [4, 8], "strides": [2, 4]}
    with pytest.raises(ConfigError, match="windows"):
        occlusion_map(linear, x, windows=[9])


@pytest.fixture(scope="module")
def odd_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40x30 shapes image (not the models' square input size)."""
    scene = next(iter(generate(1, 48, seed=3)))
    path = tmp_path_factory.mktemp("odd") / "odd.png"
    Image.fromarray(scene.image).resize((40, 30)).save(path)
    return path


def test_segmentation_saliency(tmp_path: Path, odd_image: Path) -> None:
    meta = {
        "task": "segment",
        "kind": "multiclass",
        "class_names": ["background", "circle", "square"],
        "ignore_index": 255,
        "spec": {},
        "imgsz": IMGSZ,
        "mean": MEAN,
        "std": STD,
        "aug": "none",
        "loss": "ce",
        "class_weights": None,
        "model": "unet",
        "model_options": {"width": 4, "depth": 2},
    }
    weights = _save_checkpoint(meta, tmp_path / "unet.ckpt")
    result = explain(weights, [str(odd_image)], method="gradcam,gradients,occlusion", out=tmp_path / "a")
    assert {k: v.shape for k, v in result.maps[0].items()} == {
        m: (30, 40) for m in ("gradcam", "gradients", "occlusion")
    }
    summary = json.loads((tmp_path / "a" / "explain.json").read_text())
    assert summary["images"][0]["target"]["class"] in meta["class_names"][1:]
    assert summary["images"][0]["methods"]["gradcam"]["layer"] == "model.decoder.1.3"  # not the 1x1 head
    result = explain(
        weights, [str(odd_image)], method="gradients", target="square", region="0,0,20,15", out=tmp_path / "b"
    )
    row = result.rows[0]
    assert row["target"]["class"] == "square" and row["box"] == [0.0, 0.0, 20.0, 15.0]
    assert row["region_pixels"] == 16 * 16  # the box at the 32 px input size
    with pytest.raises(ConfigError, match="region"):
        explain(weights, [str(odd_image)], region="0,0,50,10", out=tmp_path / "c")
    with pytest.raises(ConfigError, match="classes: background, circle, square"):
        explain(weights, [str(odd_image)], target="star", out=tmp_path / "c")


def test_detection_saliency_for_a_chosen_box(tmp_path: Path, odd_image: Path) -> None:
    meta = {
        "task": "detect",
        "class_names": ["circle", "square"],
        "category_ids": [1, 2],
        "imgsz": 64,
        "mean": MEAN,
        "std": STD,
        "aug": "none",
        "model": "centernet",
        "model_options": {"width": 8},
    }
    weights = _save_checkpoint(meta, tmp_path / "centernet.ckpt")
    methods = "gradcam,gradients,occlusion,integrated-gradients"
    first = explain(weights, [str(odd_image)], method=methods, conf=0.05, out=tmp_path / "a")
    second = explain(weights, [str(odd_image)], method="gradcam", conf=0.05, box=1, out=tmp_path / "b")
    row = first.rows[0]
    assert row["box_index"] == 0 and second.rows[0]["box_index"] == 1
    assert row["score"] >= second.rows[0]["score"]  # detections are ordered best first
    assert "heatmap logit" in row["scalar"] and row["methods"]["gradcam"]["layer"] == "head.smooth.0.0"
    for found in first.maps[0].values():
        assert found.shape == (30, 40) and np.abs(found).max() > 0
    assert not np.allclose(first.maps[0]["gradcam"], second.maps[0]["gradcam"])
    with pytest.raises(ConfigError, match="--box 99: out of range"):
        explain(weights, [str(odd_image)], conf=0.05, box=99, out=tmp_path / "c")


def test_features_grid_and_layers(classifier: Path, scenes: list, tmp_path: Path) -> None:
    model = load(classifier).model
    names = list_layers(model)
    assert names == [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    path = features(classifier, scenes[0][0], layer="features.stage2.0.conv1", out=tmp_path / "f.png")
    with Image.open(path) as image:
        assert image.text["panels"] == "32"  # stage 2 of width 16 has 32 channels
    path = features(classifier, scenes[0][0], max_maps=5, out=tmp_path / "g.png")
    with Image.open(path) as image:
        assert image.text["panels"] == "5"
    with pytest.raises(ConfigError, match="conv layers of this model: features.stem.0"):
        features(classifier, scenes[0][0], layer="features.nope")


def test_cli_explain_and_features(
    classifier: Path, scenes: list, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli"
    argv = ["explain", "--weights", str(classifier), scenes[0][0], scenes[1][0], "--out", str(out)]
    assert main([*argv, "--method", "gradcam,occlusion", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [Path(r["overlay"]).name for r in printed["images"]] == ["scene0.png", "scene1.png"]
    with Image.open(out / "scene0.png") as image:
        two_rows = image.height
    assert main([*argv, "--method", "gradients"]) == 0
    with Image.open(out / "scene0.png") as image:
        assert image.height < two_rows  # one row per method
    # default folder: <run>/explain
    assert main(["explain", "--weights", str(classifier), scenes[0][0]]) == 0
    assert (classifier.parent.parent / "explain" / "scene0.png").is_file()
    assert main(["features", "--weights", str(classifier), "--list-layers"]) == 0
    assert "features.stage3.0.conv2" in capsys.readouterr().out.split()
    assert (
        main(["features", "--weights", str(classifier), scenes[0][0], "--out", str(tmp_path / "f.png")]) == 0
    )
    assert (tmp_path / "f.png").is_file()
    capsys.readouterr()
    for bad in (
        ["explain", "--weights", str(tmp_path / "missing.ckpt"), scenes[0][0]],
        ["explain", "--weights", str(classifier), str(tmp_path / "missing.png")],
        ["explain", "--weights", str(classifier), scenes[0][0], "--target", "hexagon"],
        ["explain", "--weights", str(classifier), scenes[0][0], "--method", "lime"],
        ["explain", "--weights", str(classifier), scenes[0][0], "--layer", "features.nope"],
    ):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("foveal explain: error:")
