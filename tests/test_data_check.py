"""``foveal data check``: planted problems are found, clean data is clean, exit codes 0/1/2."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.cli.main import main
from foveal.data.hashing import dhash, hamming, near_pairs
from foveal.data.health import check_dataset
from foveal.data.synth_writers import write_synthetic
from foveal.errors import DataError


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("check") / "clean data", n=48, imgsz=32, seed=3)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _kinds(report) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in report.findings:
        out.setdefault(f.kind, []).append(f)
    return out


def test_dhash_matches_hand_computed_reference() -> None:
    # Columns increase left to right in every row: every neighbour pair has left < right -> all 64 bits set.
    ramp = Image.fromarray(np.tile(np.arange(9, dtype=np.uint8) * 20, (8, 1)), mode="L")
    assert dhash(ramp) == 2**64 - 1
    assert dhash(ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) == 0
    # One row reversed -> exactly that row's 8 bits flip (first row = most significant byte).
    arr = np.tile(np.arange(9, dtype=np.uint8) * 20, (8, 1))
    arr[0] = arr[0][::-1]
    assert dhash(Image.fromarray(arr, mode="L")) == 2**56 - 1


def test_near_pairs_equal_brute_force() -> None:
    rng = random.Random(0)
    base = [rng.getrandbits(64) for _ in range(40)]
    hashes = base + [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in base[:20]]
    hashes += [base[0] ^ sum(1 << b for b in rng.sample(range(64), 7))]  # distance 7: out at 6, in at 7
    for threshold in (0, 3, 6, 7, 10):
        expected = sorted(
            (i, j, hamming(hashes[i], hashes[j]))
            for i in range(len(hashes))
            for j in range(i + 1, len(hashes))
            if hamming(hashes[i], hashes[j]) <= threshold
        )
        assert near_pairs(hashes, threshold) == expected


def test_clean_dataset_is_clean(clean_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = check_dataset(clean_folder)
    assert report.clean and report.task == "classify" and report.n_images == 48
    assert report.modes == {"RGB": 48}
    assert main(["data", "check", str(clean_folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"counts", "findings", "n_images", "seconds", "clean"}
    assert out["n_images"] == 48 and out["findings"] == [] and not any(out["counts"].values())


def test_planted_problems_are_found(
    clean_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(clean_folder, tmp_path / "dätä with spaces")
    train = sorted((root / "train").rglob("*.png"))
    classes = sorted(p.name for p in (root / "train").iterdir())
    # Truncated PNG (header intact, data cut).
    truncated = train[0]
    truncated.write_bytes(truncated.read_bytes()[:-120])
    # Grayscale and RGBA images.
    gray, rgba = train[1], train[2]
    Image.open(gray).convert("L").save(gray)
    Image.open(rgba).convert("RGBA").save(rgba)
    # Exact copy of a train image in val (leakage, exact), with a non-ASCII name.
    exact_src = train[3]
    exact_dst = root / "val" / exact_src.parent.name / "kopie ü.png"
    shutil.copy(exact_src, exact_dst)
    # Resized + JPEG re-encoded copy of a train image in test (leakage, near).
    near_src = train[4]
    buf = io.BytesIO()
    Image.open(near_src).convert("RGB").resize((48, 48), Image.Resampling.BICUBIC).save(
        buf, "JPEG", quality=80
    )
    near_dst = root / "test" / near_src.parent.name / "near copy.jpg"
    near_dst.write_bytes(buf.getvalue())
    # Exact duplicate with another class label inside train (label disagreement).
    conflict_src = train[5]
    other = next(c for c in classes if c != conflict_src.parent.name)
    conflict_dst = root / "train" / other / "dup.png"
    shutil.copy(conflict_src, conflict_dst)

    report = check_dataset(root)
    kinds = _kinds(report)
    assert not report.clean
    assert [f.paths for f in kinds["unreadable_image"]] == [[str(truncated)]]
    modes = {f.paths[0]: f.detail for f in kinds["unexpected_mode"]}
    assert modes == {str(gray): "mode L (expected RGB)", str(rgba): "mode RGBA (expected RGB)"}
    assert report.modes["L"] == 1 and report.modes["RGBA"] == 1
    assert [sorted(f.paths) for f in kinds["leakage_exact"]] == [sorted([str(exact_src), str(exact_dst)])]
    assert [sorted(f.paths) for f in kinds["leakage_near"]] == [sorted([str(near_src), str(near_dst)])]
    assert [sorted(f.paths) for f in kinds["duplicate_exact"]] == [
        sorted([str(conflict_src), str(conflict_dst)])
    ]
    assert [sorted(f.paths) for f in kinds["label_conflict"]] == [
        sorted([str(conflict_src), str(conflict_dst)])
    ]
    # Reference: the planted near copy differs by a few dHash bits, the exact copy by SHA-1 equality.
    assert hamming(dhash(Image.open(near_src)), dhash(Image.open(near_dst))) <= 6
    assert hashlib.sha1(exact_src.read_bytes()).digest() == hashlib.sha1(exact_dst.read_bytes()).digest()
    assert report.findings[0].kind.startswith("leakage")  # leakage is reported first
    # A threshold of 0 no longer pairs the re-encoded copy.
    assert "leakage_near" not in _kinds(check_dataset(root, hamming=0))

    assert main(["data", "check", str(root), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["leakage_exact"] == 1 and out["counts"]["unreadable_image"] == 1
    assert {f["kind"] for f in out["findings"]} >= {"leakage_near", "unexpected_mode", "label_conflict"}
    assert main(["data", "check", str(root)]) == 1  # the rich table
    assert "leakage_exact" in capsys.readouterr().out


def test_coco_label_problems_via_reader_warnings(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "coco", n=30, imgsz=32, seed=4, fmt="coco")
    assert check_dataset(root).clean
    ann_file = next((root / "annotations").glob("*train*.json"))
    doc = json.loads(ann_file.read_text())
    anns = doc["annotations"]
    anns[0]["bbox"] = [100.0, 100.0, 5.0, 5.0]  # entirely outside a 32x32 image: no area
    anns[1]["category_id"] = 999  # unknown category
    anns[2]["bbox"] = [20.0, 20.0, 30.0, 30.0]  # reaches outside: clipped
    ann_file.write_text(json.dumps(doc))
    report = check_dataset(root)
    assert report.task == "detect"
    details = [f.detail for f in _kinds(report)["label_problem"]]
    assert any("skipped 1 box(es) without area" in d for d in details)
    assert any("skipped 1 annotation(s) with an unknown category" in d and "999" in d for d in details)
    assert any("clipped 1 box(es)" in d for d in details)
    assert report.counts["label_problem"] == 3


def test_segmentation_mask_of_wrong_size(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "seg", n=30, imgsz=32, seed=5, fmt="masks")
    assert check_dataset(root).task == "segment"
    mask = sorted(root.rglob("masks/**/*.png"))[0]
    Image.open(mask).resize((20, 20), Image.Resampling.NEAREST).save(mask)
    report = check_dataset(root)
    assert [f.paths for f in _kinds(report)["mask_problem"]] == [[str(mask)]]


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        check_dataset(empty)
    assert main(["data", "check", str(empty), "--json"]) == 2
    assert main(["data", "check", str(tmp_path / "missing"), "--json"]) == 2
    assert main(["data", "check", str(empty), "--task", "nope"]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "no such" in err and "unknown task" in err


def test_same_shape_in_other_colours_is_not_a_near_duplicate(tmp_path: Path) -> None:
    """dHash sees luminance only: two images whose grayscale is (almost) the same but whose colours differ
    share a hash; the colour thumbnail check keeps them apart, while a JPEG copy still matches."""
    background = (128, 128, 128)
    for cls, shape_colour in (("a", (200, 100, 100)), ("b", (100, 150, 118))):  # luminance 130 and 131
        image = Image.new("RGB", (64, 64), background)
        image.paste(shape_colour, (16, 16, 40, 48))
        (tmp_path / "data" / cls).mkdir(parents=True)
        image.save(tmp_path / "data" / cls / "x.png")
    first = Image.open(tmp_path / "data" / "a" / "x.png")
    second = Image.open(tmp_path / "data" / "b" / "x.png")
    assert hamming(dhash(first), dhash(second)) <= 6  # the hash alone would pair them
    report = check_dataset(tmp_path / "data")
    assert report.counts["duplicate_near"] == 0 and report.counts["label_conflict"] == 0
    first.save(tmp_path / "data" / "b" / "copy.jpg", quality=90)
    again = check_dataset(tmp_path / "data")
    assert again.counts["duplicate_near"] == 1 and again.counts["label_conflict"] == 1
