"""``foveal data split``: stratification, groups, folds, and manifests read back by every reader."""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.cli.main import main
from foveal.data.det_loading import load_detection, write_detection
from foveal.data.loading import load_classification
from foveal.data.manifest import read_manifest
from foveal.data.seg_loading import load_segmentation
from foveal.data.splits import EMPTY_LABEL, iterative_stratify
from foveal.data.splitting import split_dataset
from foveal.data.synth_writers import write_synthetic
from foveal.errors import ConfigError, DataError

FRACTIONS = (0.7, 0.15, 0.15)


def make_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path)


def _key(path: str | Path) -> str:
    return os.path.normcase(str(Path(path).resolve()))


def manifest_splits(path: Path) -> dict[str, set[str]]:
    """Split -> resolved file keys, read straight from the JSON (not through foveal's reader)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    source = (path.parent / doc["source"]).resolve()
    base = source if source.is_dir() else source.parent
    return {name: {_key(base / p) for p in paths} for name, paths in doc["splits"].items()}


def sample_splits(splits: dict) -> dict[str, set[str]]:
    return {name: {_key(s.path) for s in samples} for name, samples in splits.items()}


def images_under(root: Path) -> set[str]:
    return {
        _key(p) for p in root.rglob("*.png") if "masks" not in p.parts and "SegmentationClass" not in p.parts
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder shapes with on-disk train/val/test (4 classes, 16 px, 100 images)."""
    return write_synthetic(tmp_path_factory.mktemp("split") / "folder", n=100, imgsz=16, seed=3)


@pytest.fixture(scope="module")
def patients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat ImageFolder of 3 classes whose files are named ``p<patient>_<i>.png``; patients have 1-6
    images spread over the classes, so the groups cross the class folders."""
    root = tmp_path_factory.mktemp("split") / "patients"
    rng = np.random.default_rng(0)
    colours = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}
    for p in range(30):
        for i in range(int(rng.integers(1, 7))):
            name = ("cat", "dog", "fox")[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
            make_image(root / name / f"p{p:02d}_{i}.png", colours[name], size=8)
    return root


# ---- the assignment algorithm ----


def test_iterative_stratify_keeps_single_label_counts_within_one() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        n, k = int(rng.integers(5, 200)), int(rng.integers(2, 6))
        y = rng.integers(0, int(rng.integers(1, 7)), n)
        fractions = rng.dirichlet(np.ones(k))
        parts = np.asarray(iterative_stratify([{str(c): 1} for c in y], [1] * n, fractions, trial))
        for c in np.unique(y):
            for j in range(k):
                assert abs(np.sum((y == c) & (parts == j)) - fractions[j] * np.sum(y == c)) < 1 + 1e-9


def test_iterative_stratify_hand_case_and_zero_fraction() -> None:
    # 10 'a' and 4 'b' into 0.5 / 0.5 / 0: exactly 5+2 per part, nothing in the zero part
    labels = [{"a": 1}] * 10 + [{"b": 1}] * 4
    parts = iterative_stratify(labels, [1] * 14, (0.5, 0.5, 0.0), seed=1)
    assert Counter(zip(parts, [next(iter(v)) for v in labels])) == {
        (0, "a"): 5,
        (1, "a"): 5,
        (0, "b"): 2,
        (1, "b"): 2,
    }
    # a big group goes first and alone fills most of part 0
    parts = iterative_stratify(
        [{"a": 6}, {"a": 1}, {"a": 1}, {"a": 1}, {"a": 1}], [6, 1, 1, 1, 1], (0.6, 0.4), 0
    )
    assert parts == [0, 1, 1, 1, 1]


# ---- fraction splits and folds ----


def test_fraction_split_stratifies_and_covers_every_image(folder: Path, tmp_path: Path) -> None:
    result = split_dataset(folder, tmp_path / "out", fractions=FRACTIONS, seed=0)
    splits = manifest_splits(tmp_path / "out" / "split.json")
    assert set(splits) == {"train", "val", "test"}
    everything = images_under(folder)
    assert len(everything) == 100 and set().union(*splits.values()) == everything
    assert sum(len(s) for s in splits.values()) == 100  # every image in exactly one split
    class_of = {_key(p): p.parent.name for p in folder.rglob("*.png")}  # reference: the folder name
    totals = Counter(class_of.values())
    for (name, keys), fraction in zip(splits.items(), FRACTIONS, strict=True):
        counts = Counter(class_of[k] for k in keys)
        for cls, total in totals.items():
            assert abs(counts[cls] - fraction * total) < 1, (name, cls)
        assert result.counts[name] == {c: counts[c] for c in result.labels}
        assert result.images[name] == len(keys)
    assert [p.name for p in result.paths] == ["split.json", "split.csv"]


def test_folds_match_sklearn_stratified_kfold(folder: Path, tmp_path: Path) -> None:
    from sklearn.model_selection import StratifiedKFold

    result = split_dataset(folder, tmp_path / "out", folds=5, seed=0)
    assert result.parts == [f"fold_{k}" for k in range(5)]
    files = sorted(images_under(folder))
    class_of = {_key(p): p.parent.name for p in folder.rglob("*.png")}
    y = np.array([class_of[f] for f in files])
    reference = [
        Counter(y[val]) for _, val in StratifiedKFold(5, shuffle=True, random_state=0).split(files, y)
    ]
    folds = [manifest_splits(tmp_path / "out" / f"fold_{k}.json") for k in range(5)]
    mine = [Counter(class_of[f] for f in fold["val"]) for fold in folds]
    for cls in set(y):
        assert sorted(c[cls] for c in mine) == sorted(c[cls] for c in reference)
        assert all(abs(a[cls] - b[cls]) <= 1 for a, b in zip(mine, reference, strict=True))
    vals = Counter(f for fold in folds for f in fold["val"])
    assert set(vals) == set(files) and set(vals.values()) == {1}  # each image in exactly one val fold
    for fold in folds:
        assert set(fold) == {"train", "val"} and not fold["train"] & fold["val"]
        assert fold["train"] | fold["val"] == set(files)
    with open(tmp_path / "out" / "folds.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(_key(tmp_path / "out" / r["path"]), r["fold"]) for r in rows} == {
        (f, str(k)) for k, fold in enumerate(folds) for f in fold["val"]
    }


def test_folds_hold_out_one_untouched_test_part(folder: Path, tmp_path: Path) -> None:
    split_dataset(folder, tmp_path / "out", folds=3, test_fraction=0.2, seed=1)
    folds = [manifest_splits(tmp_path / "out" / f"fold_{k}.json") for k in range(3)]
    test = folds[0]["test"]
    assert len(test) == 20 and all(fold["test"] == test for fold in folds)
    class_of = {_key(p): p.parent.name for p in folder.rglob("*.png")}
    totals = Counter(class_of.values())
    for cls, count in Counter(class_of[f] for f in test).items():
        assert abs(count - 0.2 * totals[cls]) < 1
    for fold in folds:
        assert not (fold["train"] | fold["val"]) & test and len(fold["train"] | fold["val"]) == 80
    assert sum(len(fold["val"]) for fold in folds) == 80
    loaded = load_classification(tmp_path / "out" / "fold_1.json")
    assert sample_splits(loaded.splits) == folds[1]


def test_same_seed_same_manifests_other_seed_differs(folder: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        split_dataset(folder, tmp_path / name, seed=seed)
    for file in ("split.json", "split.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert manifest_splits(tmp_path / "a" / "split.json") != manifest_splits(tmp_path / "c" / "split.json")


def test_keep_test_keeps_the_on_disk_test_split(folder: Path, tmp_path: Path) -> None:
    split_dataset(folder, tmp_path / "out", keep_test=True)
    splits = manifest_splits(tmp_path / "out" / "split.json")
    assert splits["test"] == images_under(folder / "test")
    assert splits["train"] | splits["val"] == images_under(folder / "train") | images_under(folder / "val")
    assert abs(len(splits["val"]) - 0.15 * (100 - len(splits["test"]))) < 1  # val 0.15, as the CLI
    split_dataset(folder, tmp_path / "folds", folds=3, keep_test=True)
    folds = [manifest_splits(tmp_path / "folds" / f"fold_{k}.json") for k in range(3)]
    assert all(fold["test"] == splits["test"] for fold in folds)
    assert set().union(*(fold["val"] for fold in folds)) == splits["train"] | splits["val"]


# ---- groups ----


def test_group_regex_keeps_each_patient_in_one_split(patients: Path, tmp_path: Path) -> None:
    patient = {_key(p): p.name.split("_")[0] for p in patients.rglob("*.png")}
    for pattern, out in ((r"^(p\d+)_", "capture"), (r"^p\d+", "whole-match")):
        result = split_dataset(patients, tmp_path / out, group_by=pattern, seed=2)
        assert result.n_groups == 30 and sum(result.groups.values()) == 30
        splits = manifest_splits(tmp_path / out / "split.json")
        owners = [{patient[f] for f in keys} for keys in splits.values()]
        assert all(not a & b for i, a in enumerate(owners) for b in owners[i + 1 :])
        assert set().union(*splits.values()) == set(patient)
    result = split_dataset(patients, tmp_path / "folds", group_by=r"^(p\d+)_", folds=4)
    vals = [manifest_splits(tmp_path / "folds" / f"fold_{k}.json")["val"] for k in range(4)]
    owners = [{patient[f] for f in keys} for keys in vals]
    assert sum(len(o) for o in owners) == 30 and len(set().union(*owners)) == 30
    with open(tmp_path / "folds" / "folds.csv", newline="", encoding="utf-8") as handle:
        assert {r["group"] for r in csv.DictReader(handle)} == set(patient.values())


def test_group_by_csv_column(tmp_path: Path) -> None:
    root = tmp_path / "table"
    rows = []
    for i in range(48):
        label = "yes" if i % 3 else "no"
        make_image(root / "img" / f"{i:03d}.png", size=8)
        rows.append([f"img/{i:03d}.png", label, f"site{i % 8}"])
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["path", "label", "site"], *rows])
    result = split_dataset(
        root / "labels.csv", tmp_path / "out", group_by="site", fractions=(0.5, 0.25, 0.25)
    )
    assert result.n_groups == 8 and result.groups == {"train": 4, "val": 2, "test": 2}
    site = {_key(root / r[0]): r[2] for r in rows}
    splits = manifest_splits(tmp_path / "out" / "split.json")
    owners = [{site[f] for f in keys} for keys in splits.values()]
    assert all(not a & b for i, a in enumerate(owners) for b in owners[i + 1 :])
    # the CSV manifest is read by the classification CSV reader directly, with the same splits
    as_csv = load_classification(tmp_path / "out" / "split.csv")
    assert sample_splits(as_csv.splits) == splits and as_csv.class_names == ["no", "yes"]


# ---- every reader accepts the manifests ----


@pytest.mark.parametrize(
    ("fmt", "task", "loader"),
    [
        ("imagefolder", "classify", "classify"),
        ("csv", "classify", "classify"),
        ("masks", "segment", "segment"),
        ("coco", "segment", "segment"),
        ("coco", "detect", "detect"),
        ("yolo", "detect", "detect"),
        ("voc", "detect", "detect"),
    ],
)
def test_readers_read_the_manifest(fmt: str, task: str, loader: str, tmp_path: Path) -> None:
    if fmt == "voc":
        yolo = write_synthetic(tmp_path / "yolo", n=40, imgsz=16, seed=4, fmt="yolo")
        data = write_detection(tmp_path / "data", load_detection(yolo), "voc")
    else:
        data = write_synthetic(tmp_path / "data", n=40, imgsz=16, seed=4, fmt=fmt)
    result = split_dataset(data, tmp_path / "out", task=task, fractions=(0.6, 0.2, 0.2))
    manifest = tmp_path / "out" / "split.json"
    expected = manifest_splits(manifest)
    assert read_manifest(manifest).task == task and result.fmt == fmt
    assert set().union(*expected.values()) == images_under(data) and sum(map(len, expected.values())) == 40
    if loader == "classify":
        got = load_classification(manifest).splits
    elif loader == "segment":
        got = load_segmentation(manifest)[0]
    else:
        got = load_detection(manifest).splits
    assert sample_splits(got) == expected
    if fmt == "csv":  # multilabel: the CSV manifest keeps the label sets
        by_json = {_key(s.path): s.label for part in got.values() for s in part}
        by_csv = load_classification(tmp_path / "out" / "split.csv")
        assert by_csv.kind == "multilabel" and sample_splits(by_csv.splits) == expected
        assert {_key(s.path): s.label for part in by_csv.splits.values() for s in part} == by_json


def test_detection_images_without_objects_count_as_empty(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", n=40, imgsz=16, seed=5, fmt="yolo")
    emptied = sorted((data / "labels").rglob("*.txt"))[:6]
    for label in emptied:
        label.write_text("")
    result = split_dataset(data, tmp_path / "out", fractions=(0.5, 0.5))
    assert result.parts == ["train", "val"]
    assert sum(result.counts[p][EMPTY_LABEL] for p in result.parts) == 6
    assert [result.counts[p][EMPTY_LABEL] for p in result.parts] == [3, 3]


def test_segmentation_counts_mask_classes_without_background(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", n=40, imgsz=16, seed=6, fmt="masks")
    masks = sorted(data.rglob("masks/*.png"))
    for mask in masks[:4]:  # background-only masks
        Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(mask)
    names = (data / "classes.txt").read_text().split()
    reference: Counter[str] = Counter()
    for mask in masks:
        present = [names[v] for v in np.unique(np.asarray(Image.open(mask)))]
        reference.update([n for n in present if n != "background"] or ["background"])
    result = split_dataset(data, tmp_path / "out")
    assert sum((Counter(result.counts[p]) for p in result.parts), Counter()) == reference
    assert reference["background"] == 4


# ---- training and the CLI ----


def test_train_accepts_a_manifest(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "split", str(folder), "--out", str(tmp_path / "s"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == {"train": 70, "val": 15, "test": 15}
    argv = ["train", "--task", "classify", "--data", str(tmp_path / "s" / "split.json"), "--epochs", "1"]
    argv += ["--imgsz", "16", "--batch", "16", "--model", "lenet", "--workers", "0", "--no-progress"]
    assert main([*argv, "--project", str(tmp_path / "runs"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["n"] == 15 and metrics["test"]["n"] == 15


def test_cli_table_and_path_with_space_and_accents(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_synthetic(tmp_path / "my data ü" / "shapés", n=40, imgsz=16, seed=7)
    out = tmp_path / "splits ü"
    assert main(["data", "split", str(data), "--out", str(out), "--val", "0.25", "--test", "0"]) == 0
    printed = capsys.readouterr().out
    assert "images" in printed and "circle" in printed and "split.json" in printed
    splits = manifest_splits(out / "split.json")
    assert set(splits) == {"train", "val"} and len(splits["val"]) == 10
    assert sample_splits(load_classification(out / "split.json").splits) == splits
    assert sample_splits(load_classification(out / "split.csv").splits) == splits


def test_api_takes_the_cli_fraction_rules(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for args, kwargs in (
        (["--val", "0.25", "--test", "0"], {"val": 0.25, "test": 0.0}),
        (["--fractions", "0.6,0.2,0.2"], {"fractions": "0.6,0.2,0.2"}),
        (["--keep-test"], {"keep_test": True}),
        (["--folds", "3", "--test", "0.2"], {"folds": 3, "test": 0.2}),
    ):
        name = "-".join(args)
        assert main(["data", "split", str(folder), "--out", str(tmp_path / "cli" / name), *args]) == 0
        api = split_dataset(folder, tmp_path / "api" / name, **kwargs)
        for path in api.paths:
            assert path.read_bytes() == (tmp_path / "cli" / name / path.name).read_bytes(), (name, path)
    capsys.readouterr()
    for kwargs, message in (
        ({"fractions": (0.7, 0.15, 0.15), "val": 0.2}, "pass either --fractions or --val/--test"),
        ({"val": 0.9, "test": 0.2}, "leave nothing for train"),
        ({"test": 1.5}, "--test 1.5: must be >= 0"),
        ({"keep_test": True, "test": 0.1}, "--keep-test keeps the on-disk test split"),
        ({"folds": 3, "val": 0.2}, "each val fold is 1/K"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            split_dataset(folder, tmp_path / "bad", **kwargs)


# ---- bad input ----


def _cli_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_bad_input_gives_one_line_errors(
    folder: Path, patients: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = str(tmp_path / "o")
    line = _cli_error(capsys, "data", "split", str(patients), "--out", out, "--group-by", r"^(q\d+)_")
    assert ".png' does not match the --group-by regex '^(q\\d+)_'" in line and "fix the regex" in line
    line = _cli_error(capsys, "data", "split", str(patients), "--out", out, "--group-by", "p(")
    assert "not a valid regular expression" in line
    assert "sum to 1" in _cli_error(
        capsys, "data", "split", str(folder), "--out", out, "--fractions", "0.7,0.2,0.2"
    )
    assert ">= 0" in _cli_error(
        capsys, "data", "split", str(folder), "--out", out, "--fractions", "1.2,-0.1,-0.1"
    )
    assert "leave nothing for train" in _cli_error(
        capsys, "data", "split", str(folder), "--out", out, "--val", "0.9", "--test", "0.2"
    )
    split = ("data", "split", str(folder), "--out", out)
    assert "--test 1.5: must be >= 0" in _cli_error(capsys, *split, "--test", "1.5")
    assert "K >= 2" in _cli_error(capsys, "data", "split", str(folder), "--out", out, "--folds", "1")
    line = _cli_error(
        capsys, "data", "split", str(patients), "--out", out, "--group-by", r"^p\d+", "--folds", "31"
    )
    assert "30 groups" in line and "31 folds" in line
    with pytest.raises(DataError, match="101 folds"):
        split_dataset(folder, out, folds=101)
    with pytest.raises(ConfigError):
        split_dataset(folder, out, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(DataError, match="inside the dataset folder"):
        split_dataset(folder, folder / "splits")
    with pytest.raises(DataError, match="no images"):
        split_dataset(folder, out, fractions=(0.995, 0.004, 0.001))
    assert not Path(out).exists()  # nothing written on error


def test_force_replaces_older_manifests(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    split_dataset(folder, out, folds=4)
    with pytest.raises(DataError, match="--force"):
        split_dataset(folder, out, folds=3)
    (out / "notes.txt").write_text("mine")
    split_dataset(folder, out, folds=3, force=True)
    assert sorted(p.name for p in out.iterdir()) == [
        *(f"fold_{k}.{ext}" for k in range(3) for ext in ("csv", "json")),
        "folds.csv",
        "notes.txt",
    ]


def test_manifest_errors_name_the_file_and_the_task(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", n=40, imgsz=16, seed=8)
    split_dataset(data, tmp_path / "cls")
    gone = sorted((data / "train").rglob("*.png"))[0]
    gone.unlink()
    rel = gone.relative_to(data).as_posix()
    with pytest.raises(DataError, match=rf"lists '{rel}'.*deleted"):
        load_classification(tmp_path / "cls" / "split.json")
    det = write_synthetic(tmp_path / "det", n=40, imgsz=16, seed=8, fmt="coco")
    split_dataset(det, tmp_path / "det_split")
    with pytest.raises(DataError, match="task 'detect', read as 'classify'; pass --task detect"):
        load_classification(tmp_path / "det_split" / "split.json")
    again = split_dataset(tmp_path / "det_split" / "split.json", tmp_path / "again", folds=2)  # a manifest in
    assert again.source.resolve() == det.resolve() and again.n_images == 40
    two = write_synthetic(tmp_path / "two", n=20, imgsz=16, splits=(0.8, 0.2, 0.0))
    with pytest.raises(DataError, match="no on-disk test split"):
        split_dataset(two, tmp_path / "keep", keep_test=True)
