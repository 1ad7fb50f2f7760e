"""Regression data: CSV / sidecar-folder reading, splits, manifests, bad input and the synthetic writer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from foveal.cli.main import main
from foveal.data.checks import drop_unreadable
from foveal.data.formats.regression import find_targets_csv, is_regression_csv, read_regression_csv
from foveal.data.manifest import write_manifest
from foveal.data.reg_loading import load_regression, target_matrix
from foveal.errors import BadImageError, DataError
from tests.conftest import make_image


def write_csv(path: Path, text: str, images: int = 0) -> Path:
    """Write ``text`` as a CSV at ``path`` and ``images`` tiny images ``img/<i>.png`` next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    for i in range(images):
        make_image(path.parent / "img" / f"{i}.png", size=8)
    return path


def rows(n: int, fmt: str) -> str:
    """``n`` rows ``fmt.format(i=i)`` joined by newlines, with a trailing newline."""
    return "".join(fmt.format(i=i) + "\n" for i in range(n))


def test_one_target_with_split_column_and_relative_paths(tmp_path: Path) -> None:
    absolute = make_image(tmp_path / "elsewhere" / "a.png", size=8)
    text = "path,length,split\n" + rows(6, "img/{i}.png,{i}.5,train") + "img/6.png,7,val\n"
    text += f"{absolute},-2e1,test\n"
    table = read_regression_csv(write_csv(tmp_path / "d" / "t.csv", text, 7))
    assert table.target_names == ["length"]
    assert {k: len(v) for k, v in table.splits.items()} == {"train": 6, "val": 1, "test": 1}
    first = table.splits["train"][0]
    assert Path(first.path) == tmp_path / "d" / "img" / "0.png" and first.values == [0.5]
    assert first.label is None and table.splits["test"][0].path == str(absolute)
    assert table.splits["test"][0].values == [-20.0]
    data = load_regression(tmp_path / "d" / "t.csv")  # val from the split column: nothing split off
    assert [s.values for s in data.split("val")] == [[7.0]] and len(data.split("train")) == 6


def test_two_targets_without_split_column(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "d" / "t.csv", "path,width,height\n" + rows(10, "img/{i}.png,{i},1{i}"), 10
    )
    data = load_regression(csv_path, seed=3)
    assert data.target_names == ["width", "height"]
    assert len(data.split("train")) == 8 and len(data.split("val")) == 2 and not data.split("test")
    sample = next(s for s in data.split("train") if s.path.endswith("/4.png"))
    assert sample.values == [4.0, 14.0]
    chosen = load_regression(csv_path, target_names=["height", "width"], split_off_val=False)
    assert chosen.target_names == ["height", "width"] and list(chosen.splits) == ["all"]
    assert chosen.split("all")[4].values == [14.0, 4.0]
    matrix = target_matrix(chosen.split("all"))
    assert matrix.shape == (10, 2) and matrix.dtype == np.float32 and matrix[9, 0] == 19.0


def test_rows_without_split_join_train(tmp_path: Path) -> None:
    text = "path,y,split\n" + rows(4, "img/{i}.png,{i},train") + "img/4.png,4,\nimg/5.png,5,val\n"
    csv_path = write_csv(tmp_path / "t.csv", text, 6)
    assert {k: len(v) for k, v in load_regression(csv_path, split_off_val=False).splits.items()} == {
        "train": 4,
        "all": 1,
        "val": 1,
    }
    data = load_regression(csv_path)
    assert len(data.split("train")) == 5 and len(data.split("val")) == 1


def test_folder_with_sidecar_csv(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_csv(folder / "anything.csv", "path,y\n" + rows(5, "img/{i}.png,{i}"), 5)
    assert find_targets_csv(folder) == folder / "anything.csv" and is_regression_csv(folder)
    assert len(load_regression(folder, split_off_val=False).split("all")) == 5
    write_csv(folder / "notes.csv", "path,comment\nimg/0.png,blurry\n")
    with pytest.raises(DataError, match=r"several CSV files \(anything.csv, notes.csv\) and no targets.csv"):
        load_regression(folder)
    (folder / "anything.csv").rename(folder / "targets.csv")
    assert find_targets_csv(folder) == folder / "targets.csv"
    assert load_regression(folder, split_off_val=False).target_names == ["y"]
    (tmp_path / "none").mkdir()
    make_image(tmp_path / "none" / "a.png", size=8)
    with pytest.raises(DataError, match="no CSV file in the folder; add targets.csv"):
        load_regression(tmp_path / "none")
    with pytest.raises(DataError, match="the folder is empty"):
        (tmp_path / "empty").mkdir()
        load_regression(tmp_path / "empty")


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "t.csv", "path,y\n" + rows(20, "img/{i}.png,{i}"), 20)

    def val_paths(seed: int, fraction: float = 0.2) -> tuple[set[str], set[str]]:
        data = load_regression(csv_path, seed=seed, val_fraction=fraction)
        return {s.path for s in data.split("train")}, {s.path for s in data.split("val")}

    train, val = val_paths(0)
    assert len(val) == 4 and len(train) == 16 and not train & val and len(train | val) == 20
    assert val_paths(0) == (train, val)
    assert val_paths(1)[1] != val
    assert len(val_paths(0, 0.5)[1]) == 10
    few = write_csv(tmp_path / "few" / "t.csv", "path,y\n" + rows(3, "img/{i}.png,{i}"), 3)
    with pytest.raises(DataError, match="only 3 images, too few"):
        load_regression(few)


def test_separate_val_csv(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "a" / "t.csv", "path,w,h\n" + rows(6, "img/{i}.png,{i},{i}"), 6)
    val = write_csv(tmp_path / "b" / "v.csv", "path,h,w,split\n" + rows(2, "img/{i}.png,1{i},2{i},test"), 2)
    data = load_regression(train, val=val.parent)
    assert len(data.split("train")) == 6 and not data.split("test")
    assert [s.values for s in data.split("val")] == [[20.0, 10.0], [21.0, 11.0]]  # w, h: train's order
    bad = write_csv(tmp_path / "c" / "v.csv", "path,w\nimg/0.png,1\n", 1)
    with pytest.raises(DataError, match=r"v.csv: no target column 'h'; the CSV's target columns are: w"):
        load_regression(train, val=bad)


def test_checkpoint_target_names_must_be_in_the_file(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "t.csv", "path,length,width\nimg/0.png,1,2\n", 1)
    with pytest.raises(DataError) as err:
        load_regression(csv_path, target_names=["lenght"], split_off_val=False)
    message = str(err.value)
    assert "t.csv: no target column 'lenght' (did you mean: length?)" in message
    assert "length, width" in message and "\n" not in message


def test_split_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_csv(folder / "targets.csv", "path,y\n" + rows(6, "img/{i}.png,{i}"), 6)
    img = folder / "img"
    splits = {
        "train": [img / f"{i}.png" for i in (0, 1, 2, 3)],
        "val": [img / "4.png"],
        "test": [img / "5.png"],
    }
    manifest = write_manifest(tmp_path / "m" / "split.json", "regress", folder, "csv", splits)
    data = load_regression(manifest)
    assert data.target_names == ["y"]
    assert [s.values for s in data.split("val")] == [[4.0]] and [s.values for s in data.split("test")] == [
        [5.0]
    ]
    assert sorted(s.values[0] for s in data.split("train")) == [0.0, 1.0, 2.0, 3.0]
    other = write_manifest(tmp_path / "m" / "cls.json", "classify", folder, "csv", splits)
    with pytest.raises(DataError, match="a split manifest for task 'classify', read as 'regress'"):
        load_regression(other)


BAD_INPUTS = [
    ("path,length\nimg/0.png,1\nimg/1.png,abc\n", ["t.csv:3:", "column 'length'", "'abc', not a number"]),
    ("path,length,width\nimg/0.png,1,2\nimg/1.png,,2\n", ["t.csv:3:", "column 'length' is empty"]),
    ("path,length,width\nimg/0.png,1\n", ["t.csv:2:", "column 'width' is empty"]),
    ("path,length\nimg/0.png,nan\n", ["t.csv:2:", "column 'length'", "'nan', not a finite number"]),
    ("path,length\nimg/0.png,1\n\nimg/1.png,-inf\n", ["t.csv:4:", "column 'length'", "'-inf', not a finite"]),
    ("path,length\nimg/0.png,1\n,2\n", ["t.csv:3:", "column 'path' is empty", "fill in the image path"]),
    ("path,split\nimg/0.png,train\n", ["t.csv:1:", "no target column", "e.g. 'path,length'"]),
    ("file,length\nimg/0.png,1\n", ["t.csv:1:", "no 'path' column", "'path,length'"]),
    (
        "path,length,split\nimg/0.png,1,trian\n",
        ["t.csv:2:", "column 'split' has 'trian' (did you mean: train?)"],
    ),
    ("path,length\nimg/0.png,1,2\n", ["t.csv:2:", "3 values for the 2 header columns"]),
    ("path,length,length\nimg/0.png,1,2\n", ["t.csv:1:", "column 'length' appears twice"]),
    ("path,length,\nimg/0.png,1,\n", ["t.csv:1:", "header column 3 has no name"]),
    ("path,label\nimg/0.png,cat\n", ["t.csv:2:", "'cat', not a number", "--task classify"]),
    ("", ["t.csv: the CSV has no rows"]),
    ("path,length\n", ["t.csv: the CSV has no rows", "one row per image"]),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_file_row_and_column(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    csv_path = write_csv(tmp_path / "t.csv", text)
    with pytest.raises(DataError) as err:
        load_regression(csv_path, split_off_val=False)
    message = str(err.value)
    assert "\n" not in message and str(csv_path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_image_is_reported_when_decoding(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "t.csv", "path,y\nimg/0.png,1\nimg/missing.png,2\n", 1)
    samples = load_regression(csv_path, split_off_val=False).split("all")  # reading does not open images
    with pytest.raises(BadImageError, match=r"missing.png: file not found"):
        drop_unreadable(samples)
    assert [s.values for s in drop_unreadable(samples, "skip")] == [[1.0]]


def test_target_matrix_needs_values(tmp_path: Path) -> None:
    from foveal.data.sample import Sample

    with pytest.raises(DataError, match="a.png: no regression targets"):
        target_matrix([Sample("a.png", values=[1.0]), Sample("a.png")])
    assert target_matrix([]).shape == (0, 0)


def test_synth_regress_via_cli_matches_the_generator(tmp_path: Path) -> None:
    from foveal.data.synth_writers import regression_targets
    from foveal.data.synthetic import generate

    out = tmp_path / "reg"
    assert (
        main(["data", "synth", "--format", "regress", "--out", str(out), "--n", "60", "--imgsz", "32"]) == 0
    )
    assert (
        "size" in (out / "README.txt").read_text()
        and "count (the number of shapes" in (out / "README.txt").read_text()
    )
    data = load_regression(out)
    assert data.target_names == ["size", "count"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 48, "val": 6, "test": 6}
    by_name = {Path(s.path).name: s.values for part in data.splits.values() for s in part}
    with open(out / "targets.csv", newline="") as f:
        assert next(csv.reader(f)) == ["path", "split", "size", "count"]
    sizes, areas = [], []
    for i, scene in enumerate(generate(60, 32, 0, max_objects=4)):
        size, count = by_name[f"{i:06d}.png"]
        assert count == len(scene.objects) and 1 <= count <= 4
        assert size == regression_targets(scene)["size"] and 1 <= size <= 32
        sizes.append(size)
        areas.append(np.mean([np.sqrt(o.mask.sum()) for o in scene.objects]))
    assert np.corrcoef(sizes, areas)[0, 1] > 0.8
    assert len({c for _, c in by_name.values()}) == 4  # every count 1..4 occurs


def test_index_check_and_gallery_read_the_regression_layout(tmp_path: Path) -> None:
    from foveal.data.index import detect_task, index_dataset
    from foveal.data.synth_writers import write_synthetic
    from foveal.report.gallery import write_gallery

    out = write_synthetic(tmp_path / "reg", n=20, imgsz=32, fmt="regress")
    assert detect_task(out) == "regress" and detect_task(out / "targets.csv") == "regress"
    index = index_dataset(out)
    assert index.task == "regress" and index.fmt == "csv" and index.class_names == []
    assert index.target_names == ["size", "count"] and len(index.entries) == 20
    assert all(e.classes == () and len(e.sample.values) == 2 for e in index.entries)
    assert index.label_of(index.entries[0]) is None
    classify_csv = write_csv(tmp_path / "cls" / "labels.csv", "path,label\nimg/0.png,cat\n", 1)
    assert detect_task(classify_csv) == "classify" and detect_task(classify_csv.parent) == "classify"
    page = write_gallery(out, tmp_path / "g.html", sample=4)
    assert page.task == "regress" and page.images == 4
    assert "size " in (tmp_path / "g.html").read_text() and ", count " in (tmp_path / "g.html").read_text()
    assert main(["data", "check", str(out), "--json"]) == 0
    assert main(["data", "split", str(out), "--out", str(tmp_path / "split"), "--json"]) == 0
    resplit = load_regression(tmp_path / "split" / "split.json")
    assert resplit.target_names == ["size", "count"] and sum(map(len, resplit.splits.values())) == 20
    assert main(["data", "eda", str(out), "--out", str(tmp_path / "eda.html"), "--json"]) == 0
