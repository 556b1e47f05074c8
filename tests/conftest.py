from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    """``$ZOO_DATA_DIR`` or ``../shared/data`` beside the checkout, when it holds the npz files."""
    for candidate in (os.environ.get("ZOO_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist.npz").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real MNIST / CIFAR-10 npz files not found (set ZOO_DATA_DIR)")
    return found
