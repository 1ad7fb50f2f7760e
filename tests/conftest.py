"""Shared fixtures: small synthetic datasets written once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder shapes with train/val/test splits (4 classes, 32 px)."""
    from foveal.data.synth_writers import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("shapes") / "data", n=320, imgsz=32, seed=1)


@pytest.fixture(scope="session")
def shapes_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multilabel CSV shapes (labels column)."""
    from foveal.data.synth_writers import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("shapes_csv") / "data", n=240, imgsz=32, seed=2, fmt="csv")


def make_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    array = np.clip(np.asarray(colour) + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A flat ImageFolder: two classes of 6 plain-coloured images each."""
    for i in range(6):
        make_image(tmp_path / "data" / "red" / f"r{i}.png", (220, 20, 20))
        make_image(tmp_path / "data" / "blue" / f"b{i}.png", (20, 20, 220))
    return tmp_path / "data"
