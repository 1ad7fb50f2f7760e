"""Multi-process (DDP) training: which process this is, one run folder for all, checked flags.

Lightning runs the processes: with ``--strategy ddp`` its launcher re-runs the same command once per
extra device (children see ``LOCAL_RANK`` > 0); ``torchrun`` / SLURM start every process themselves
(``RANK`` / ``SLURM_PROCID`` set). The first process creates the run folder and writes the resolved
``config.yaml``; the children it launches find both through ``FOVEAL_RUN_DIR`` and train exactly
that run with that config, whatever command the first process runs (train, cv, demo). Processes
started by an external launcher cannot wait for each other before the process group exists, so they
all use ``PROJECT/NAME`` as given (no ``-2`` suffix): pass a fresh ``--name``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from foveal.config import TrainConfig
from foveal.errors import ConfigError, FovealError, check_choice

RUN_DIR_ENV = "FOVEAL_RUN_DIR"
RESUME_ENV = "FOVEAL_RESUME"
PASS_ENV = "FOVEAL_PASS"  # the inference pass a launched process runs (engine.inference_ddp)
_THEN = "run the command again"  # what report_dead_processes tells the user to do next
# what gloo / NCCL say when a peer process is gone
PEER_FAILURE_MARKS = ("Connection reset by peer", "Connection closed by peer", "gloo/transport", "NCCL")
log = logging.getLogger("foveal")


def global_rank() -> int:
    """This process's rank as its launcher set it in the environment (0 when not distributed)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    return node * per_node + local if per_node else local + node


def is_worker_process() -> bool:
    """Whether this is a DDP process other than the first: it prints and writes nothing of its own."""
    return global_rank() > 0


def launched_externally() -> bool:
    """Whether torchrun or SLURM started this process (rather than Lightning's own launcher)."""
    return "RANK" in os.environ or ("SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ)


def inherited_run() -> tuple[Path, Path | None] | None:
    """(run folder, checkpoint to resume or None) that the first process handed to this one, in a
    process Lightning launched for it; None elsewhere."""
    value = os.environ.get(RUN_DIR_ENV)
    if not value or not is_worker_process():
        return None
    resume = os.environ.get(RESUME_ENV)
    return Path(value), Path(resume) if resume else None


def handed_pass() -> Path | None:
    """The inference pass file the first process handed to this one (a process Lightning launched for
    a multi-process pass, see ``foveal.engine.inference_ddp``), else None."""
    value = os.environ.get(PASS_ENV)
    if not value or not is_worker_process() or launched_externally():
        return None
    return Path(value)


def share_run(run_dir: Path, resume: Path | None) -> None:
    """Hand the run to the processes Lightning is about to launch (they copy this environment): they
    train exactly that run, whatever command started the first process (train, cv, demo, ...)."""
    os.environ[RUN_DIR_ENV] = str(run_dir)
    os.environ[RESUME_ENV] = str(resume) if resume else ""


def end_process_group() -> None:
    """After a multi-process fit or pass, let a later one form its own process group: Lightning's
    launcher starts new processes on a new port for each, so this one's group is destroyed. Processes
    that torchrun/SLURM started keep theirs for their lifetime: the next fit or pass reuses it (Lightning
    skips initialising an existing group), as re-forming one on the same port races between the peers."""
    import torch.distributed as dist

    if launched_externally():
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for name in ("MASTER_PORT", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK"):  # set by Lightning's launcher
        os.environ.pop(name, None)


def processes(cfg: TrainConfig) -> int:
    """How many training processes the config asks for (devices per node x nodes; 1 when 'auto')."""
    devices = cfg.devices if isinstance(cfg.devices, int) else 1
    return max(1, devices) * max(1, cfg.num_nodes)


def check_distributed(cfg: TrainConfig) -> None:
    """One-line errors, before any process starts, for a strategy Lightning does not know and for more
    devices per node than this machine has (CPU cores, or CUDA GPUs with ``--device cuda``)."""
    from lightning.pytorch.strategies import StrategyRegistry

    check_choice("--strategy", cfg.strategy, ["auto", *StrategyRegistry.available_strategies()])
    if launched_externally() and cfg.lr == "auto":
        raise ConfigError(
            "--lr auto would run a range test in every process torchrun/SLURM started; run "
            "foveal lr-find first and pass its suggestion as --lr"
        )
    if not isinstance(cfg.devices, int):
        return
    if cfg.devices < 1:
        raise ConfigError(f"--devices {cfg.devices}: must be at least 1 (or auto)")
    if cfg.device == "cuda" or (cfg.device == "auto" and _cuda_count()):
        have, what = _cuda_count(), "CUDA GPUs"
    elif cfg.device in ("cpu", "auto"):
        from foveal.engine.threads import available_cores

        have, what = available_cores(), "CPU cores"
    else:
        return
    if cfg.devices > (have or 1):
        raise ConfigError(
            f"--devices {cfg.devices}: this machine has {have} {what}; use --devices {have or 1} or fewer "
            "(more machines: --num-nodes)"
        )


def peer_failure(err: BaseException) -> bool:
    """Whether ``err`` is how a process learns that another one died: a failed collective op
    (``torch.distributed.DistError``, or gloo/NCCL's RuntimeError of a closed connection) or a spawned
    process that exited (``ddp_spawn``)."""
    import torch.distributed as dist
    from torch.multiprocessing.spawn import ProcessException

    if isinstance(err, dist.DistError | ProcessException):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(key in text for key in PEER_FAILURE_MARKS)


def stopped_error(err: BaseException, then: str) -> FovealError:
    """The one-line error of a multi-process run whose process failed or was killed (``err``: what
    this process saw, e.g. gloo's "Connection closed by peer"); ``then``: how to go on."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return FovealError(f"a process failed or was stopped ({first[:160]}); every process is stopped; {then}")


def resume_hint(run_dir: Path) -> str:
    """How to go on after a multi-process training stopped."""
    return f"continue with: foveal train --resume {run_dir}"


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def report_dead_processes(then: str) -> None:
    """Make Lightning's launcher say, on one line, that a process died and how to go on (``then``): it
    then stops every process (SIGKILL), so this is the last thing the user reads. The launcher's
    observer is an internal class; without it (another Lightning) its own log line remains."""
    global _THEN
    _THEN = then
    try:
        from lightning.fabric.strategies.launchers import subprocess_script as launcher
    except ImportError:  # pragma: no cover - a Lightning without the subprocess launcher
        return
    observer = getattr(launcher, "_ChildProcessObserver", None)
    if observer is None or getattr(observer, "_foveal_reports", False):
        return
    terminate = observer._terminate_all

    def terminate_all(self: object) -> None:
        codes = [p.returncode for p in getattr(self, "_child_processes", [])]
        failed = [f"rank {i + 1} (exit code {c})" for i, c in enumerate(codes) if c]
        print(
            f"foveal: error: process {', '.join(failed) or '?'} stopped; all processes are stopped too; "
            f"{_THEN}",
            file=sys.stderr,
            flush=True,
        )
        terminate(self)

    observer._terminate_all = terminate_all
    observer._foveal_reports = True
