"""Shared fixtures. Real data comes from ../shared/data unless BENCH_DATA_DIR says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# In CI (CI=true) property tests replay the same examples every run, so a submission never
# fails on a case nobody has seen; local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]


# Tests use tiny models, for which one thread is fastest and keeps timings steady when
# other processes share the cores.
torch.set_num_threads(1)


def _shared_data_dir() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding MNIST/raw (torchvision layout)."""
    path = _shared_data_dir()
    if not (path / "MNIST" / "raw").is_dir():
        pytest.fail(f"real MNIST not found under {path}; set BENCH_DATA_DIR")
    return path
