"""Active learning: strategy scores and selections on hand-made tensors, the task hooks, ``foveal active
query`` end to end (classify, segment) with its bad inputs, and ``foveal active simulate`` resumed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import foveal
from foveal.analysis.active.pool import check_dropout, mc_dropout, pooled
from foveal.analysis.active.simulate import curves_of
from foveal.analysis.active.strategies import (
    bald,
    cluster_uncertain,
    entropy,
    k_center_greedy,
    least_confidence,
    margin,
    mc_entropy,
    reduce_units,
)
from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic
from foveal.errors import ConfigError, FovealError
from foveal.tasks import get_task
from tests.task_metas import meta_for

FAST = {"imgsz": 32, "batch": 32, "workers": 0, "progress": False, "epochs": 1, "aug": "none"}


def _order(scores: torch.Tensor) -> list[int]:
    return torch.argsort(scores, descending=True).tolist()


def test_least_confidence_margin_and_entropy_rank_as_defined() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])
    assert torch.allclose(least_confidence(probs), torch.tensor([0.1, 0.5, 0.6]))
    assert torch.allclose(margin(probs), torch.tensor([0.15, 1.0, 0.9]))
    assert _order(least_confidence(probs)) == [2, 1, 0]
    assert _order(margin(probs)) == [1, 2, 0]  # a tie of the top two is the most uncertain margin
    expected = [-sum(p * math.log(p) for p in row if p > 0) for row in probs.tolist()]
    assert torch.allclose(entropy(probs), torch.tensor(expected))
    assert _order(entropy(probs)) == [2, 1, 0]


def test_bald_is_entropy_of_mean_minus_mean_entropy() -> None:
    # (T=2 passes, 3 images, K=2): disagreeing confident passes, agreeing unsure passes, a mixed case
    probs = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.8, 0.2]], [[0.0, 1.0], [0.5, 0.5], [0.4, 0.6]]])

    def h(p: list[float]) -> float:
        return -sum(v * math.log(v) for v in p if v > 0)

    mixed = h([0.6, 0.4]) - (h([0.8, 0.2]) + h([0.4, 0.6])) / 2
    assert torch.allclose(bald(probs), torch.tensor([math.log(2), 0.0, mixed]), atol=1e-6)
    assert torch.allclose(mc_entropy(probs), torch.tensor([math.log(2), math.log(2), h([0.6, 0.4])]))


def test_unit_reduction_mean_topk_and_no_units() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3])
    assert reduce_units(scores, "mean") == pytest.approx(0.45)
    assert reduce_units(scores, "topk", topk=2) == pytest.approx(0.7)
    assert reduce_units(scores, "topk", topk=10) == pytest.approx(0.45)
    assert reduce_units(torch.zeros(0), "mean") == 0.0
    with pytest.raises(ConfigError, match="--reduce"):
        reduce_units(scores, "max")


def test_k_center_greedy_picks_the_farthest_points() -> None:
    pool = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 0.0], [0.0, 10.0]])
    picked, distances = k_center_greedy(pool, 3)
    assert picked.tolist()[:2] in ([3, 4], [4, 3])  # the two outliers, farthest from the pool mean
    assert picked[2] in (0, 1, 2)
    picked, distances = k_center_greedy(pool, 2, centers=np.array([[10.0, 0.0]]))
    assert picked.tolist() == [4, 0]  # (0, 10) is farthest from the labelled (10, 0), then the origin
    assert distances == pytest.approx([math.hypot(10, 10), 10.0])


def test_cluster_strategy_takes_the_most_uncertain_image_of_each_cluster() -> None:
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.1, (5, 2)) for c in ((0, 0), (5, 5), (-5, 5))])
    scores = rng.random(15)
    picked, clusters = cluster_uncertain(blobs, scores, 3)
    assert sorted(int(i) // 5 for i in picked) == [0, 1, 2]  # one per blob
    for i in picked:
        blob = int(i) // 5
        assert scores[i] == scores[blob * 5 : blob * 5 + 5].max()
    assert len(set(clusters.tolist())) == 3
    assert list(scores[picked]) == sorted(scores[picked], reverse=True)


def test_task_hooks_give_units_of_class_probabilities() -> None:
    classify = get_task("classify")(meta_for("classify"))
    units = classify.active_probabilities(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    assert [u.shape for u in units] == [(1, 2), (1, 2)] and torch.allclose(units[1], torch.full((1, 2), 0.5))
    multilabel = get_task("classify")(meta_for("classify", kind="multilabel", thresholds=[0.5, 0.5]))
    units = multilabel.active_probabilities(torch.tensor([[0.0, 2.0]]))
    assert units[0].shape == (2, 2) and torch.allclose(units[0][:, 0], torch.tensor([0.0, 2.0]).sigmoid())
    segment = get_task("segment")(meta_for("segment"))
    units = segment.active_probabilities(torch.zeros(3, 1, 4, 5))  # binary: one logit map
    assert [u.shape for u in units] == [(20, 2)] * 3 and torch.allclose(units[0], torch.full((20, 2), 0.5))
    detect = get_task("detect")(meta_for("detect"))
    outputs = [
        {"scores": torch.tensor([0.9, 0.3, 0.1])},
        {"scores": torch.tensor([0.2, 0.05])},
        {"scores": torch.zeros(0)},
    ]
    units = detect.active_probabilities(outputs)
    assert torch.allclose(units[0][:, 0], torch.tensor([0.9, 0.3]))  # the boxes >= 0.25
    assert torch.allclose(units[1], torch.tensor([[0.2, 0.8]]))  # none >= 0.25: the best box
    assert units[2].shape == (0, 2)
    with pytest.raises(FovealError, match="not supported for --task regress"):
        get_task("regress")(meta_for("regress")).active_probabilities(torch.zeros(2, 1))


def test_mc_dropout_needs_a_dropout_layer_and_fixed_units() -> None:
    lenet = get_task("classify")(meta_for("classify", model="lenet"))
    with pytest.raises(ConfigError, match="no dropout layer") as err:
        check_dropout(lenet, lenet.build_model(), "bald")
    assert "\n" not in str(err.value) and "dropout: 0.3" in str(err.value)
    detect = get_task("detect")(meta_for("detect"))
    with pytest.raises(FovealError, match="not supported for --task detect"):
        check_dropout(detect, detect.build_model(), "bald")
    resnet = get_task("classify")(meta_for("classify"))
    model = resnet.build_model()
    check_dropout(resnet, model, "bald")
    with mc_dropout(model):
        modes = {type(m).__name__: m.training for m in model.modules()}
        assert modes["Dropout"] and not modes["BatchNorm2d"]
    assert not any(m.training for m in model.modules())


def test_embeddings_pool_spatial_maps_and_join_parts() -> None:
    assert pooled(torch.ones(2, 3)).shape == (2, 3)
    maps = {"a": torch.ones(2, 4, 5, 5), "b": torch.zeros(2, 6, 2, 2)}
    assert pooled(maps).shape == (2, 10)
    assert pooled([torch.ones(2, 4, 3, 3), "not a tensor"]).shape == (2, 4)


def test_curves_area_and_budget_to_match_random() -> None:
    values = {"random": [[0.2, 0.4, 0.6], [0.4, 0.6, 0.8]], "entropy": [[0.4, 0.7, 0.8], [0.4, 0.7, 0.8]]}
    curves = curves_of(values, [10, 20, 30], "max")
    assert curves["random"]["mean"] == pytest.approx([0.3, 0.5, 0.7])
    assert curves["random"]["std"][0] == pytest.approx(math.sqrt(0.02))
    assert curves["random"]["auc"]["mean"] == pytest.approx(0.5)  # (0.3 + 2 * 0.5 + 0.7) / 4
    assert curves["entropy"]["auc"]["mean"] == pytest.approx((0.4 + 1.4 + 0.8) / 4)
    assert (
        curves["entropy"]["budget_to_match_random"] == 20 and curves["random"]["budget_to_match_random"] == 30
    )


def test_cli_simulate_flags_reach_the_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["active", "simulate", "--data", str(tmp_path / "nope"), "--strategy", "entropy", "bald",
            "--rounds", "2", "--epochs", "1", "--out", str(tmp_path / "loop")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no such dataset" in err and "\n" not in err.strip()
    assert main([*args, "--strategy", "entropi"]) == 2
    assert "unknown active-learning strategy 'entropi'" in capsys.readouterr().err
    assert not (tmp_path / "loop").exists()


# -- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("active") / "shapes", n=96, imgsz=32, seed=4)


@pytest.fixture(scope="module")
def classifier(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lenet with dropout (MC dropout works) trained for one epoch."""
    project = tmp_path_factory.mktemp("active_runs")
    run = foveal.train(
        data=str(shapes), model="lenet", model_options={"dropout": 0.3}, project=str(project), **FAST
    )
    return run.best


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy",
    ["random", "least-confidence", "margin", "entropy", "bald", "mc-entropy", "coreset", "cluster"],
)
def test_query_cli_classify_every_strategy(
    strategy: str, classifier: Path, shapes: Path, tmp_path: Path
) -> None:
    out = tmp_path / "query.csv"
    args = [
        "active",
        "query",
        "--weights",
        str(classifier),
        "--pool",
        str(shapes / "test"),
        "--n",
        "5",
        "--strategy",
        strategy,
        "--out",
        str(out),
        "--passes",
        "4",
        "--workers",
        "0",
    ]
    if strategy == "coreset":
        args += ["--labelled", str(shapes / "train")]
    assert main(args) == 0
    rows = _rows(out)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert list(rows[0]) == [
        "rank",
        "path",
        "score",
        "strategy",
        *(["cluster"] if strategy == "cluster" else []),
    ]
    assert len({r["path"] for r in rows}) == 5 and all(r["strategy"] == strategy for r in rows)
    assert all(Path(r["path"]).parent.parent == shapes / "test" for r in rows)
    scores = [float(r["score"]) for r in rows]
    if strategy != "cluster":
        assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_mc_dropout_queries_repeat_with_their_seed(classifier: Path, shapes: Path) -> None:
    torch.manual_seed(123)
    first = foveal.active_query(classifier, shapes / "test", n=5, strategy="bald", out=None, workers=0)
    torch.rand(7)  # another random state: the masks come from the seed
    again = foveal.active_query(classifier, shapes / "test", n=5, strategy="bald", out=None, workers=0)
    assert first.rows == again.rows


@pytest.mark.slow
def test_query_bad_inputs_are_one_line_errors(
    classifier: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "query.csv"
    base = ["active", "query", "--weights", str(classifier), "--out", str(out), "--workers", "0"]
    (tmp_path / "empty").mkdir()
    cases = {
        "no images found": ["--pool", str(tmp_path / "empty")],
        "already labelled": ["--pool", str(shapes / "train"), "--labelled", str(shapes)],
        "larger than the pool's": ["--pool", str(shapes / "test"), "--n", "1000"],
        "unknown active-learning strategy": ["--pool", str(shapes / "test"), "--strategy", "entropi"],
    }
    for message, extra in cases.items():
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not out.exists()  # nothing written
    plain = foveal.train(data=str(shapes), model="lenet", project=str(tmp_path / "runs"), **FAST)
    assert (
        main([*base, "--weights", str(plain.best), "--pool", str(shapes / "test"), "--strategy", "bald"]) == 2
    )
    assert "no dropout layer" in capsys.readouterr().err


@pytest.mark.slow
def test_query_leaves_out_labelled_copies(classifier: Path, shapes: Path, tmp_path: Path) -> None:
    import shutil

    pool = tmp_path / "pool" / "deep" / "er"
    shutil.copytree(shapes / "val", pool)  # copies: the same bytes under other paths
    shutil.copytree(shapes / "test", tmp_path / "pool" / "new")
    query = foveal.active_query(
        classifier, tmp_path / "pool", n=3, labelled=shapes / "val", out=None, workers=0
    )
    assert query.skipped_labelled == len(list((shapes / "val").rglob("*.png")))
    assert all("/new/" in row["path"] for row in query.rows) and query.out is None


@pytest.mark.slow
def test_query_cli_segment_topk_and_coreset(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "masks", n=48, imgsz=32, seed=5, fmt="masks")
    run = foveal.train(task="segment", data=str(data), project=str(tmp_path / "runs"), **FAST)
    pool = data / "test" / "images"
    for strategy, extra in (("entropy", ["--reduce", "topk", "--topk", "50"]), ("coreset", [])):
        out = tmp_path / f"{strategy}.csv"
        assert (
            main(
                [
                    "active",
                    "query",
                    "--weights",
                    str(run.best),
                    "--pool",
                    str(pool),
                    "--n",
                    "3",
                    "--strategy",
                    strategy,
                    "--out",
                    str(out),
                    "--workers",
                    "0",
                    *extra,
                ]
            )
            == 0
        )
        rows = _rows(out)
        assert len(rows) == 3 and all(Path(r["path"]).parent == pool for r in rows)
    mean = foveal.active_query(run.best, pool, n=3, out=None, workers=0).rows
    top = foveal.active_query(run.best, pool, n=3, out=None, reduce="topk", topk=50, workers=0).rows
    assert all(t["score"] >= m["score"] - 1e-9 for t, m in zip(top, mean, strict=True))  # top-k mean >= mean


@pytest.mark.slow
def test_query_cli_detect_box_uncertainty_coreset_and_no_bald(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Detection scores an image by its boxes' uncertainty; core-set and cluster use the embeddings; MC
    dropout is refused (boxes differ between passes)."""
    data = write_synthetic(tmp_path / "boxes", n=48, imgsz=32, seed=5, fmt="coco")
    run = foveal.train(task="detect", data=str(data), model="centernet", project=str(tmp_path / "runs"),
                       **FAST)  # fmt: skip
    pool = data / "images" / "test"
    n_pool = len(list(pool.glob("*.png")))
    for strategy in ("entropy", "least-confidence", "coreset", "cluster", "random"):
        out = tmp_path / f"{strategy}.csv"
        args = ["active", "query", "--weights", str(run.best), "--pool", str(pool), "--n", "3",
                "--strategy", strategy, "--out", str(out), "--workers", "0"]  # fmt: skip
        assert main(args) == 0, strategy
        rows = _rows(out)
        assert (
            len(rows) == 3
            and len({r["path"] for r in rows}) == 3
            and all(Path(r["path"]).parent == pool for r in rows)
        ), strategy
        if strategy in ("entropy", "least-confidence"):  # ranked by score, highest first
            scores = [float(r["score"]) for r in rows]
            assert scores == sorted(scores, reverse=True), strategy
    capsys.readouterr()
    args = ["active", "query", "--weights", str(run.best), "--pool", str(pool), "--n", "3",
            "--strategy", "bald", "--out", str(tmp_path / "bald.csv"), "--workers", "0"]  # fmt: skip
    assert main(args) == 2 and not (tmp_path / "bald.csv").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert n_pool > 3


@pytest.mark.slow
def test_simulate_two_strategies_two_seeds_resumes_the_unfinished_round(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "loop"
    options = {
        "start": 12,
        "per_round": 12,
        "rounds": 2,
        "strategies": ["entropy"],
        "seeds": 2,
        "model": "lenet",
        **FAST,
    }
    result = foveal.active_simulate(str(shapes), out=out, **options)
    assert sorted(result.trained) == sorted(
        [
            "seed_0/start",
            "seed_1/start",
            "seed_0/random/round_1",
            "seed_1/random/round_1",
            "seed_0/entropy/round_1",
            "seed_1/entropy/round_1",
        ]
    )
    doc = json.loads((out / "curves.json").read_text())
    assert set(doc["curves"]) == {"random", "entropy"} and doc["metric"] == "accuracy"
    for curve in doc["curves"].values():
        assert curve["labelled"] == [12, 24] and len(curve["seeds"]) == 2 and len(curve["mean"]) == 2
        assert 0.0 <= curve["auc"]["mean"] <= 1.0
    assert (out / "curves.png").stat().st_size > 1000
    split = json.loads((out / "seed_1" / "entropy" / "round_1" / "split.json").read_text())
    start = json.loads((out / "seed_1" / "start" / "split.json").read_text())
    assert len(split["splits"]["train"]) == 24 and set(start["splits"]["train"]) < set(
        split["splits"]["train"]
    )
    assert not set(split["splits"]["train"]) & set(
        split["splits"]["val"]
    )  # the evaluation set is never labelled
    (out / "seed_1" / "entropy" / "round_1" / "metrics.json").unlink()
    again = foveal.active_simulate(str(shapes), out=out, **options)
    assert again.trained == ["seed_1/entropy/round_1"]
    with pytest.raises(ConfigError, match="other per_round"):
        foveal.active_simulate(str(shapes), out=out, **{**options, "per_round": 6})
    with pytest.raises(ConfigError, match="more than the"):
        foveal.active_simulate(str(shapes), out=tmp_path / "other", **{**options, "rounds": 50})
