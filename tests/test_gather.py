"""Validation outputs gathered across DDP ranks, including per-rank lengths that differ (detection)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from foveal.engine.module import gather_kept

pytestmark = pytest.mark.slow  # end to end: `make test-quick` leaves these out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    kept = {"boxes": torch.full((rank + 1, 4), float(rank)), "count": torch.tensor([rank + 1])}
    gathered = gather_kept(kept, 2)
    out[rank] = {k: v.tolist() for k, v in gathered.items()}
    dist.destroy_process_group()


def test_gather_concatenates_ranks_of_different_lengths() -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
        results = dict(out)
    expected = {"boxes": [[0.0] * 4, [1.0] * 4, [1.0] * 4], "count": [1, 2]}
    assert results[0] == results[1] == expected
