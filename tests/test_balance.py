"""--balance: samplers, class weights, the tasks' balance labels, and a macro-F1 gain on 10:1 shapes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import WeightedRandomSampler

import foveal
from foveal.cli.main import main
from foveal.config import make_config
from foveal.data.balance import (
    UndersampleSampler,
    class_counts,
    class_weights,
    make_sampler,
    sample_weights,
)
from foveal.data.synth_writers import write_synthetic
from foveal.errors import ConfigError, DataError

LABELS = [[0]] * 60 + [[1]] * 6 + [[2]] * 12  # 10:1 and 5:1


def test_class_counts_and_sample_weights_use_the_rarest_class() -> None:
    labels = [[0], [0], [0, 1], [1], [], [2, 0]]
    counts = class_counts(labels, 3)
    assert counts.tolist() == [4, 2, 1, 1]  # last entry: samples without a class
    weights = sample_weights(labels, 3)
    np.testing.assert_allclose(weights, [1 / 4, 1 / 4, 1 / 2, 1 / 2, 1.0, 1.0])
    with pytest.raises(DataError, match="outside"):
        class_counts([[3]], 3)


def test_oversample_draws_classes_equally_often() -> None:
    sampler = make_sampler(LABELS, 3, "oversample", seed=0)
    assert isinstance(sampler, WeightedRandomSampler) and len(sampler) == len(LABELS)
    draws = Counter(LABELS[i][0] for _ in range(50) for i in sampler)
    shares = np.array([draws[c] for c in range(3)]) / sum(draws.values())
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.02)
    again = make_sampler(LABELS, 3, "oversample", seed=0)
    assert list(again) == list(make_sampler(LABELS, 3, "oversample", seed=0))  # seeded


def test_undersample_is_balanced_and_changes_every_epoch() -> None:
    sampler = make_sampler(LABELS, 3, "undersample", seed=1)
    assert isinstance(sampler, UndersampleSampler) and len(sampler) == 18
    first, second = list(sampler), list(sampler)
    for epoch in (first, second):
        assert len(epoch) == len(set(epoch)) == 18  # without replacement
        assert Counter(LABELS[i][0] for i in epoch) == {0: 6, 1: 6, 2: 6}
    assert set(first) != set(second)  # a fresh subset of the majority class
    sampler.set_epoch(0)
    assert list(sampler) == first  # reproducible per epoch
    assert make_sampler(LABELS, 3, "none") is None and make_sampler(LABELS, 3, "weights") is None


def test_inverse_weights_equal_sklearn_balanced_rescaled() -> None:
    counts = [10, 30, 0, 60]
    weights = np.array(class_weights(counts, "inverse"))
    labels = [0] * 10 + [1] * 30 + [3] * 60
    balanced = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=labels)
    np.testing.assert_allclose(weights[[0, 1, 3]], balanced / balanced.mean())
    assert weights[2] == 0.0 and weights[[0, 1, 3]].mean() == pytest.approx(1.0)
    with pytest.raises(DataError, match="no labelled samples"):
        class_weights([0, 0])
    with pytest.raises(DataError, match="non-negative"):
        class_weights([3, -1])


def test_effective_number_weights_by_hand() -> None:
    beta = 0.99
    weights = np.array(class_weights([100, 10, 1], "effective", beta))
    raw = np.array([(1 - beta) / (1 - beta**n) for n in (100, 10, 1)])
    np.testing.assert_allclose(weights, raw / raw.mean())
    assert weights[0] < weights[1] < weights[2]
    # beta -> 0 makes every class weigh the same; inverse frequency is the beta -> 1 limit
    np.testing.assert_allclose(class_weights([100, 10], "effective", 1e-9), [1.0, 1.0])
    with pytest.raises(ConfigError, match="balance-beta"):
        class_weights([1, 2], "effective", 1.0)


def test_detect_and_segment_balance_labels(tmp_path: Path) -> None:
    from foveal.tasks import get_task

    coco = write_synthetic(tmp_path / "coco", n=12, imgsz=32, fmt="coco")
    detect = get_task("detect")
    splits, meta = detect.load_data(make_config(task="detect", data=str(coco)))
    samples = splits["train"]
    labels = detect(meta).balance_labels(samples)
    assert labels == [sorted({o["label"] for o in s.objects}) for s in samples]
    masks = write_synthetic(tmp_path / "masks", n=12, imgsz=32, fmt="masks")
    segment = get_task("segment")
    cfg = make_config(task="segment", data=str(masks), balance="weights")
    splits, meta = segment.load_data(cfg)
    weights = meta.class_weights
    assert len(weights) == 5 and weights[0] == min(weights)  # background is the most common class
    from PIL import Image

    sample = splits["train"][0]
    present = sorted(set(np.unique(np.array(Image.open(sample.mask)))) - {0})
    assert segment(meta).balance_labels([sample]) == [[int(v) for v in present] or [0]]
    with pytest.raises(ConfigError, match="oversample"):
        detect.load_data(make_config(task="detect", data=str(coco), balance="weights"))


def test_bad_balance_value_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "nowhere", "--balance", "smote"]) == 2
    assert "--balance" in capsys.readouterr().err


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 10:1 in train (circle 399, the others ~40 each); val and test balanced
    return write_synthetic(tmp_path_factory.mktemp("imb") / "shapes", n=2000, imgsz=32, seed=0, imbalance=10)


def test_synth_imbalance_counts(imbalanced: Path) -> None:
    counts = {d.name: len(list(d.iterdir())) for d in (imbalanced / "train").iterdir()}
    assert counts["circle"] >= 9 * max(v for k, v in counts.items() if k != "circle")
    val = [len(list(d.iterdir())) for d in (imbalanced / "val").iterdir()]
    assert max(val) < 1.5 * min(val)
    with pytest.raises(ConfigError, match="imagefolder"):
        write_synthetic(imbalanced.parent / "x", n=8, fmt="coco", imbalance=3)


@pytest.mark.slow
def test_balance_beats_none_on_macro_f1(imbalanced: Path, tmp_path: Path) -> None:
    """Measured (seed 0, 6 epochs): macro-F1 on the balanced test split none 0.13, oversample 0.39,
    weights 0.38; benchmarks/imbalance.py has the larger, multi-seed comparison."""
    torch.manual_seed(0)
    common = dict(
        data=str(imbalanced), model="smallresnet", epochs=6, imgsz=32, batch=32, seed=0, workers=0,
        progress=False, project=str(tmp_path),
    )  # fmt: skip
    f1 = {
        mode: foveal.train(name=mode, balance=mode, **common).metrics["test"]["f1_macro"]
        for mode in ("none", "weights")
    }
    args = [f"--{k.replace('_', '-')}={v}" for k, v in common.items() if k != "progress"]
    assert main(["train", *args, "--no-progress", "--name=oversample", "--balance=oversample"]) == 0
    metrics = json.loads(next(tmp_path.glob("oversample*/metrics.json")).read_text())
    f1["oversample"] = metrics["test"]["f1_macro"]
    assert f1["oversample"] > f1["none"] + 0.1, f1
    assert f1["weights"] > f1["none"] + 0.1, f1
