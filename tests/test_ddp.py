"""Two-process DDP training on the CPU (gloo), end to end through the CLI: one run folder, metrics over
the whole validation split equal to a single process's evaluation of the same checkpoint, one JSON
object, checked flags, and a rank killed mid-run: all processes stop with a message, --resume goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foveal.data.synth_writers import write_synthetic

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out

FOVEAL = [sys.executable, "-m", "foveal.cli.main"]
DDP = ["--device", "cpu", "--devices", "2", "--strategy", "ddp", "--workers", "0", "--no-progress"]


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*FOVEAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# every task, each with a model that has BatchNorm (its statistics are per process in DDP)
TASKS = [
    ("classify", "imagefolder", "smallresnet", "accuracy", ("ece",)),
    ("segment", "masks", "unet", "miou", ("pixel_accuracy", "ece")),
    ("detect", "coco", "centernet", "map50", ("map",)),
    ("instance", "coco", "maskrcnn_resnet18", "map50", ("segm_map50",)),
    ("pose", "coco", "centernet", "map50", ("kpt_map",)),
    ("regress", "regress", "smallresnet", "r2", ("mae", "rmse")),
]


@pytest.mark.parametrize(("task", "fmt", "model", "monitor", "also"), TASKS, ids=[t[0] for t in TASKS])
def test_two_process_training_shares_one_run_and_exact_metrics(
    task: str, fmt: str, model: str, monitor: str, also: tuple[str, ...], tmp_path: Path
) -> None:
    write_synthetic(tmp_path / "data", n=120 if task == "classify" else 60, imgsz=32, seed=0, fmt=fmt)
    args = ["train", "--task", task, "--data", "data", "--model", model, "--imgsz", "32", "--batch", "16",
            "--epochs", "2", "--project", "p", "--name", "d", "--json", *DDP]  # fmt: skip
    done = _run(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # one JSON object: the other process printed nothing
    run = tmp_path / result["run_dir"]
    assert run == tmp_path / "p" / "d" and sorted(p.name for p in (tmp_path / "p").iterdir()) == ["d"]
    for name in (
        "config.yaml",
        "metrics.json",
        "report.html",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    # validation during training gathered both processes' disjoint shards: at the best epoch its metrics
    # equal one process's evaluation of best.ckpt on the whole split (metrics.json)
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    best = max(history, key=lambda row: row[f"val/{monitor}"])  # the epoch best.ckpt holds
    for key in (monitor, *also):
        assert best[f"val/{key}"] == pytest.approx(metrics[key], abs=1e-5), key
    assert len(history) == 2 and metrics["epochs_run"] == 2


def test_bad_devices_and_strategy_are_one_line_errors(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "data", n=40, imgsz=32, seed=0)
    base = ["train", "--data", "data", "--imgsz", "32", "--epochs", "1", "--device", "cpu"]
    done = _run([*base, "--devices", "64", "--strategy", "ddp"], tmp_path)
    assert done.returncode == 2 and "CPU cores" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = _run([*base, "--strategy", "dpp"], tmp_path)
    assert done.returncode == 2 and "did you mean: ddp" in done.stderr


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process through /proc")
def test_a_killed_rank_stops_every_process_and_resume_continues(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "data", n=160, imgsz=32, seed=0)
    args = ["train", "--data", "data", "--model", "lenet", "--imgsz", "32", "--batch", "8", "--epochs", "6",
            "--project", "p", "--name", "k", *DDP]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    main = subprocess.Popen([*FOVEAL, *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "p" / "k" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.is_file() and time.monotonic() < deadline and main.poll() is None:
        time.sleep(0.2)
    workers = [p for p in _children(main.pid) if "foveal.cli.main" in Path(f"/proc/{p}/cmdline").read_text()]
    assert last.is_file() and workers, "the first epoch did not finish with a worker process running"
    os.kill(workers[0], signal.SIGKILL)
    try:
        _, err = main.communicate(timeout=60)  # no hang: the first process is stopped as well
    finally:
        main.kill()
    assert main.returncode != 0 and "--resume p/k" in err
    done = _run(["train", "--resume", "p/k", *DDP], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    history = json.loads((tmp_path / "p" / "k" / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(6))


def test_cv_folds_train_with_two_processes_each(tmp_path: Path) -> None:
    """Each fold is one 2-process training (the launched process trains that fold's run only)."""
    write_synthetic(tmp_path / "data", n=80, imgsz=32, seed=0)
    args = ["cv", "--data", "data", "--folds", "2", "--model", "lenet", "--imgsz", "32", "--epochs", "1",
            "--project", "p", "--name", "cv", "--json", *DDP]  # fmt: skip
    done = _run(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert [Path(r).name for r in result["runs"]] == ["fold_0", "fold_1"]
    assert sorted(p.name for p in (tmp_path / "p" / "cv").iterdir() if p.name.startswith("fold_")) == [
        "fold_0",
        "fold_1",
    ]
    rows = json.loads((tmp_path / "p" / "cv" / "oof.json").read_text())
    assert len(rows) == len({r["path"] for r in rows}) and {r["fold"] for r in rows} == {0, 1}


def test_early_stopping_stops_every_process_at_the_same_epoch(tmp_path: Path) -> None:
    """The gathered metric is the same in both processes, so they stop together (no hang): with a
    learning rate too small to change the accuracy, patience 1 ends the run after its second epoch."""
    write_synthetic(tmp_path / "data", n=60, imgsz=32, seed=0)
    args = ["train", "--data", "data", "--model", "lenet", "--imgsz", "32", "--epochs", "6", "--lr", "1e-12",
            "--patience", "1", "--project", "p", "--name", "e", *DDP]  # fmt: skip
    done = _run(args, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "p" / "e" / "metrics.json").read_text())["epochs_run"] == 2


def test_val_and_predict_over_two_processes_equal_one(tmp_path: Path) -> None:
    """`val` and `predict` with --devices 2: the same metrics and the same prediction files as one
    process, written once (the second process writes no folder of its own)."""
    import foveal

    data = write_synthetic(tmp_path / "data", n=80, imgsz=32, seed=0, fmt="coco")
    run = foveal.train(task="detect", data=str(data), model="centernet", imgsz=32, epochs=1, batch=16,
                       workers=0, progress=False, project=str(tmp_path / "p"), name="one")  # fmt: skip
    val = ["val", "--weights", str(run.best), "--data", "data", "--split", "test", "--workers", "0", "--json"]
    one, two = _run(val, tmp_path), _run([*val, *DDP[:6]], tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    single, spread = json.loads(one.stdout), json.loads(two.stdout)
    for key in ("n", "map", "map50", "mar_100", "ece"):
        assert spread[key] == pytest.approx(single[key], abs=1e-9), key
    images = str(data / "images" / "test")
    pred = ["predict", "--weights", str(run.best), images, "--workers", "0", "--conf", "0.05"]
    assert _run([*pred, "--out", "a"], tmp_path).returncode == 0
    done = _run([*pred, "--out", "b", *DDP[:6]], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("predictions.csv", "results.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text().replace("b/", "a/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "data", "p"]
    # two passes (with TTA and without) in one command: each launches its own processes
    compare = [*val, "--tta", "hflip"]
    one, two = _run(compare, tmp_path), _run([*compare, *DDP[:6]], tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    single, spread = json.loads(one.stdout), json.loads(two.stdout)
    for key in ("map", "map50", "ece"):
        assert spread[key] == pytest.approx(single[key], abs=1e-9), key
        assert spread["tta"][key] == pytest.approx(single["tta"][key], abs=1e-9), key
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "foveal.cli.main",
        *compare,
        "--device",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(torchrun, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    spread = json.loads(done.stdout)  # torchrun's processes each ran both passes; the first printed
    assert spread["tta"]["map"] == pytest.approx(single["tta"]["map"], abs=1e-9)


def test_ensemble_and_lr_find_over_two_processes(tmp_path: Path) -> None:
    """`ensemble --method weighted` runs one pass per member (and more to fit the weights on val) and
    one for the ensemble, each over two processes: the same table as one process. `lr-find --devices 2`
    tests the effective batch (2 x --batch) in one process."""
    import foveal

    data = write_synthetic(tmp_path / "data", n=120, imgsz=32, seed=0, fmt="imagefolder")
    common = {"imgsz": 32, "epochs": 1, "batch": 16, "workers": 0, "progress": False}
    runs = [foveal.train(data=str(data), model=model, project=str(tmp_path / "p"), name=model, **common)
            for model in ("lenet", "smallresnet")]  # fmt: skip
    cmd = ["ensemble", "--weights", *(str(r.best) for r in runs), "--data", "data", "--split", "test",
           "--method", "weighted", "--workers", "0", "--json"]  # fmt: skip
    one, two = _run([*cmd, "--out", "a"], tmp_path), _run([*cmd, "--out", "b", *DDP[:6]], tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    single, spread = json.loads(one.stdout), json.loads(two.stdout)
    assert spread["weights"] == pytest.approx(single["weights"], abs=1e-6)
    for key in ("accuracy", "auroc", "ece"):
        assert spread["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-9), key
        for a, b in zip(spread["member_metrics"], single["member_metrics"], strict=True):
            assert a[key] == pytest.approx(b[key], abs=1e-9), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "data", "p"]
    done = _run(["lr-find", "--data", "data", "--imgsz", "32", "--batch", "8", "--out", "lr.png", *DDP,
                 "--json"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["effective_batch"] == 16 and found["suggestion"] > 0 and (tmp_path / "lr.png").is_file()
