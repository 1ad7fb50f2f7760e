"""foveal tune end to end on tiny data: the study folder's files, best.yaml reproducing the best trial,
pruning, failed trials recorded and skipped, resuming after SIGKILL, two processes on one journal,
grid search, K-fold objectives, --confirm, every task, and pruning under DDP."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from foveal.analysis.tune import tune
from foveal.cli.main import main
from foveal.data.synth_writers import write_synthetic

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out

FAST = {"model": "lenet", "epochs": 2, "imgsz": 32, "batch": 32, "workers": 0}
FOVEAL = [sys.executable, "-m", "foveal.cli.main"]
SPACE = "lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\noptimizer: [adamw, sgd]\n"


def _rows(study_dir: Path) -> list[dict[str, str]]:
    with open(study_dir / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("tune") / "shapes", n=160, imgsz=32, seed=3)


def test_cli_study_files_and_best_yaml_reproduces_the_best_trial(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--data", str(shapes), "--trials", "5", "--project", "p", "--name", "s<1>", "--json",
            *(f"--{k}={v}" for k, v in FAST.items())]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    out = tmp_path / "p" / "s<1>"
    rows = _rows(out)
    assert len(rows) == 5 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert [int(r["number"]) for r in rows] == list(range(5))
    assert all(float(r["seconds"]) > 0 and r["run"] for r in rows)
    assert {"lr", "weight_decay", "optimizer", "momentum", "aug", "label_smoothing"} <= set(rows[0])
    for r in rows:  # momentum is sampled only for sgd
        assert (r["momentum"] != "") == (r["optimizer"] == "sgd")
    best = result["best"]
    complete = [float(r["value"]) for r in rows if r["state"] == "complete"]
    assert best["value"] == max(complete)
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "slice"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000, name
    page = (out / "report.html").read_text()
    assert "s&lt;1&gt;" in page and "<script" not in page and "data:image/png;base64," in page
    assert "s<1>" not in page.split("<body>", 1)[1]
    # best.yaml trains the best configuration again: the same validation metric, to the digit
    config = yaml.safe_load((out / "best.yaml").read_text())
    assert config["lr"] == best["params"]["lr"] and Path(config["data"]).is_absolute()
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "best.yaml"), "--project", str(again), "--json",
                 "--no-progress"]) == 0  # fmt: skip
    retrained = json.loads(capsys.readouterr().out)
    assert retrained["metrics"]["accuracy"] == pytest.approx(best["value"], abs=1e-9)
    # the same command again: the study holds 5 finished trials, nothing is retrained
    assert main(args) == 0
    assert len(_rows(out)) == 5


def test_failed_trials_are_recorded_with_their_reason_and_the_study_goes_on(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from foveal.engine import fit

    real = fit.train

    def flaky(**options):
        if options.get("optimizer") == "sgd":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**options)

    monkeypatch.setattr(fit, "train", flaky)
    space = {"optimizer": ["adamw", "sgd"], "lr": [0.003, 0.01]}
    result = tune("classify", str(shapes), space=space, sampler="grid", trials=4, project=str(tmp_path),
                  progress=False, **FAST)  # fmt: skip
    rows = _rows(result.out)
    failed = [r for r in rows if r["state"] == "fail"]
    assert len(failed) == 2 and all(r["optimizer"] == "sgd" for r in failed)
    assert all("RuntimeError: CUDA out of memory" in r["error"] for r in failed)
    assert result.counts.get("complete", 0) + result.counts.get("pruned", 0) == 2
    assert result.best["params"]["optimizer"] == "adamw"


def test_sigkill_then_the_same_command_resumes_the_study(shapes: Path, tmp_path: Path) -> None:
    """A killed tune leaves its running trial RUNNING; the next run marks it failed, retries its
    parameters and keeps every finished trial."""
    (tmp_path / "space.yaml").write_text(SPACE)
    fast = [f"--{k}={v}" for k, v in {**FAST, "epochs": 3}.items()]
    args = [*FOVEAL, "tune", "--data", str(shapes), "--trials", "4", "--space", "space.yaml",
            "--project", "p", "--pruner", "none", "--no-progress", *fast]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = tmp_path / "p" / "tune" / "trials" / "trial_001" / "history.json"
    deadline = time.time() + 180
    while not history.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert history.is_file(), "trial 1 never got to its first epoch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    journal = tmp_path / "p" / "tune" / "study.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    before = optuna.load_study(study_name="tune", storage=storage).trials
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]
    done = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trial 1 was interrupted" in done.stderr
    rows = _rows(tmp_path / "p" / "tune")
    assert rows[0]["value"] == str(before[0].value)  # the finished trial is kept as it was
    assert rows[1]["state"] == "fail" and "interrupted" in rows[1]["error"]
    retry = next(r for r in rows if r["retry_of"] == "1")
    assert retry["state"] == "complete" and float(retry["lr"]) == before[1].params["lr"]
    assert sum(r["state"] == "complete" for r in rows) == 4


def test_two_processes_share_one_study(shapes: Path, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    args = [*FOVEAL, "tune", "--data", str(shapes), "--trials", "4", "--space", "space.yaml",
            "--project", "p", "--no-progress", "--threads", "1",
            *(f"--{k}={v}" for k, v in FAST.items())]  # fmt: skip
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(args, cwd=tmp_path, env=_env(), **pipes) for _ in range(2)]
    errors = [p.communicate(timeout=400)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    rows = _rows(tmp_path / "p" / "tune")
    finished = [r for r in rows if r["state"] in ("complete", "pruned")]
    assert len(finished) >= 4 and len({r["number"] for r in rows}) == len(rows)
    assert not [r for r in rows if r["state"] == "fail"]
    runs = {r["run"] for r in rows}
    assert len(runs) == len(rows)  # every trial trained into its own folder
    pids = {p.pid for p in procs}
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "p" / "tune" / "study.journal"))
    )
    owners = {t.user_attrs["pid"] for t in optuna.load_study(study_name="tune", storage=storage).trials}
    assert owners == pids  # both processes ran trials


def test_folds_objective_grid_search_and_confirm(shapes: Path, tmp_path: Path) -> None:
    result = tune("classify", str(shapes), space={"lr": [0.003, 0.03]}, sampler="grid", trials=10, folds=2,
                  confirm=2, project=str(tmp_path), progress=False, **{**FAST, "epochs": 1})  # fmt: skip
    rows = _rows(result.out)
    assert len(rows) == 2 and {float(r["lr"]) for r in rows} == {0.003, 0.03}  # the grid ran out at 2
    for r in rows:
        cv = json.loads((Path(r["run"]) / "cv.json").read_text())
        assert float(r["value"]) == pytest.approx(cv["metrics"]["accuracy"]["mean"])
        assert float(r["std"]) == pytest.approx(cv["metrics"]["accuracy"]["std"])
    confirm = json.loads((result.out / "confirm.json").read_text())
    labels = [c["label"] for c in confirm["configs"]]
    assert labels[-1] == "default" and len(labels) == 3 and confirm["seeds"] == [1, 2]
    for c in confirm["configs"]:
        assert len(c["values"]) == 2 and c["mean"] == pytest.approx(sum(c["values"]) / 2)
    assert "default recipe by more than run-to-run noise" in confirm["verdict"]
    assert "Confirmation over 2 seeds" in (result.out / "report.html").read_text()


TASK_DATA = [("segment", "masks", "unet"), ("detect", "coco", "centernet"), ("instance", "coco", None),
             ("pose", "coco", "centernet"), ("regress", "regress", "smallresnet")]  # fmt: skip


@pytest.mark.parametrize(("task", "fmt", "model"), TASK_DATA, ids=[t[0] for t in TASK_DATA])
def test_every_task_tunes_with_its_default_space(
    task: str, fmt: str, model: str | None, tmp_path: Path
) -> None:
    data = write_synthetic(tmp_path / "data", n=40, imgsz=32, seed=0, fmt=fmt)
    options = {"imgsz": 32, "epochs": 1, "batch": 8, "workers": 0, **({"model": model} if model else {})}
    result = tune(task, str(data), trials=2, project=str(tmp_path / "p"), progress=False, **options)
    rows = _rows(result.out)
    assert len(rows) == 2 and all(r["state"] == "complete" for r in rows), rows
    assert result.best is not None and (result.out / "best.yaml").is_file()


def test_pruning_stops_every_ddp_process_at_the_same_epoch(shapes: Path, tmp_path: Path) -> None:
    """The epoch hook's decision is broadcast: a run stopped after epoch 0 under 2 DDP processes ends
    there in both, without a hang."""
    script = tmp_path / "stop.py"
    script.write_text(
        "import sys, foveal\n"
        "if __name__ == '__main__':\n"
        f"    r = foveal.train(data={str(shapes)!r}, model='lenet', imgsz=32, epochs=4, batch=16,\n"
        "                     workers=0, device='cpu', devices=2, strategy='ddp', progress=False,\n"
        "                     project='p', name='d', epoch_end=lambda e, metrics: 'accuracy' in metrics)\n"
        # one write per line: both DDP processes print, and print() writes its pieces separately
        "    import os; os.write(1, f'STOPPED {r.stopped_at}\\n'.encode())\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "STOPPED 0" in done.stdout
    history = json.loads((tmp_path / "p" / "d" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0]


def test_a_sqlite_storage_holds_the_study_and_a_larger_trials_goes_on(shapes: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    common = {"space": {"lr": [0.003, 0.01, 0.03]}, "storage": url, "study": "lr", "project": str(tmp_path),
              "progress": False, **{**FAST, "epochs": 1}}  # fmt: skip
    first = tune("classify", str(shapes), trials=1, **common)
    assert first.storage == url and sum(first.counts.values()) == 1
    second = tune("classify", str(shapes), trials=2, **common)
    assert sum(second.counts.values()) == 2 and not (second.out / "study.journal").exists()
    assert len(optuna.load_study(study_name="lr", storage=url).trials) == 2


def test_a_diverging_trial_fails_with_its_reason_and_train_says_so_in_one_line(
    shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {**FAST, "aug": "none"}
    result = tune("classify", str(shapes), space={"lr": [0.003, 1e6]}, sampler="grid", trials=2,
                  project=str(tmp_path), progress=False, **options)  # fmt: skip
    rows = {float(r["lr"]): r for r in _rows(result.out)}
    assert rows[0.003]["state"] == "complete" and rows[1e6]["state"] == "fail"
    assert rows[1e6]["error"].startswith("DivergedError: the training loss became nan")
    args = ["train", "--data", str(shapes), "--lr", "1e6", "--project", str(tmp_path / "t"), "--no-progress",
            *(f"--{k}={v}" for k, v in options.items())]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("foveal train: error: the training loss became nan") and "--lr" in err[-1]
