"""CPU threads budgeted per process: the cores this process may use, divided by the processes sharing them.

Two torch processes on the same cores, each with a thread per core, oversubscribe them: on 2 cores an
epoch went from ~8 s to ~100 s when a second training ran beside the first. A run therefore takes
``available_cores() // processes_sharing(...)`` threads (``--threads`` overrides it), for

- DDP on one node: the processes of the node (``devices``, or ``LOCAL_WORLD_SIZE`` under torchrun);
- ``foveal cv --parallel K``: the K fold processes (their parent sets ``FOVEAL_PROCESSES=K`` for them);
- both at once: their product.

:func:`budget_threads` sets torch's intra- and inter-op threads and writes ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` to the environment, which child processes (DDP ranks, data-loader workers) inherit;
Lightning's own division (``_set_num_threads_if_needed``) then leaves the count alone. An
``OMP_NUM_THREADS`` given by the user's environment is respected when ``--threads`` is not given.
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("foveal")

PROCESSES_ENV = "FOVEAL_PROCESSES"  # set by a foveal parent for the processes it starts side by side
THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Strategies that run one process per device (Lightning names; "auto" with devices > 1 picks ddp).
SINGLE_PROCESS_STRATEGIES = ("single_device", "dp")

_budget: dict[str, int] = {}  # what budget_threads last set in this process: threads, processes
_set_by_us: str | None = None  # the OMP_NUM_THREADS value budget_threads wrote, if any
_users: dict[str, str | None] = dict.fromkeys(THREAD_ENVS)  # the environment's, before budget_threads


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one (Linux: taskset, cgroup
    cpusets, SLURM), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def processes_sharing(devices: int | str | None = None, strategy: str = "auto", device: str = "cpu") -> int:
    """Processes that share this process's cores, itself included.

    ``devices``, ``strategy`` and ``device`` are the run's (``TrainConfig``). One process per device runs
    on this node when there are several devices and the strategy is not a single-process one (ddp,
    ddp_spawn, fsdp, deepspeed; Lightning's auto picks ddp): an integer ``devices``, or ``'auto'``, which is
    one device on CPU and every visible GPU on CUDA. Under torchrun ``LOCAL_WORLD_SIZE`` says it. GPU ranks
    count too (they decode images and run CPU work on the same cores; Lightning divides by them as well).
    The result is multiplied by ``FOVEAL_PROCESSES``, which ``foveal cv --parallel K`` sets to K in its
    fold processes.
    """
    local = _env_int("LOCAL_WORLD_SIZE")
    if local is None:
        local = 1
        if strategy not in SINGLE_PROCESS_STRATEGIES:
            if isinstance(devices, int) and not isinstance(devices, bool):
                local = devices
            elif devices == "auto" and device in ("auto", "cuda"):
                local = _cuda_devices()
    return max(1, local) * (_env_int(PROCESSES_ENV) or 1)


def _cuda_devices() -> int:
    """Visible CUDA GPUs (0 without CUDA), as Lightning counts them for devices="auto"."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_threads(processes: int = 1) -> int:
    """Threads per process when none are asked for: ``max(1, available_cores() // processes)``."""
    return max(1, available_cores() // max(1, processes))


def budget_threads(threads: int | None = None, processes: int = 1) -> int:
    """Set this process's CPU threads and return their number.

    ``threads`` (``--threads``) wins; else an ``OMP_NUM_THREADS`` from the user's environment; else
    :func:`default_threads` of ``processes``. Sets ``torch.set_num_threads``, the inter-op threads when
    torch still allows it (it refuses once parallel work has started, or after a first call), and
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for child processes. With ``processes`` > 1 it also sets
    ``OMP_WAIT_POLICY=PASSIVE`` for children (unless set): idle OpenMP threads sleep instead of spinning
    on cores another process needs.
    """
    global _set_by_us
    import torch

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        from foveal.errors import ConfigError

        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    processes = max(1, processes)
    users = users_threads()
    if threads is not None:
        count, why = threads, "--threads"
    elif users is not None:
        count, why = users, "OMP_NUM_THREADS"
    else:
        count, why = default_threads(processes), f"{available_cores()} cores / {processes} process(es)"
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        # torch refuses once parallel work has started, or after a first call: keep what it is then
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(count)
    for name in THREAD_ENVS:
        os.environ[name] = str(count)
    _set_by_us = str(count)
    if processes > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _budget.update(threads=count, processes=processes)
    log.debug("threads: %d per process (%s)", count, why)
    return count


def users_environment() -> dict[str, str | None]:
    """``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` as the user's environment has them (None: unset), not
    the values :func:`budget_threads` wrote: for processes started by foveal that make their own budget
    (``foveal cv --parallel``)."""
    for name in THREAD_ENVS:
        if os.environ.get(name) != _set_by_us:  # not ours: the user's (or unset)
            _users[name] = os.environ.get(name)
    return dict(_users)


def users_threads() -> int | None:
    """The ``OMP_NUM_THREADS`` of the user's environment (a positive integer), else None."""
    value = users_environment()["OMP_NUM_THREADS"]
    return int(value) if value is not None and value.isdigit() and int(value) >= 1 else None


def budgeted_processes() -> int:
    """The processes of the last :func:`budget_threads` in this process, else :func:`processes_sharing`
    from the environment alone (what a data loader divides its spare cores by)."""
    return _budget.get("processes") or processes_sharing()
