"""Every study shipped in specs/ is valid at full and at quick scale, and the quick study
is no larger than the full one's first seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_shipped_spec_is_valid_at_both_scales(path: Path) -> None:
    registry = get_registry()
    spec, full = load_jobs(path, registry)
    _spec, quick = load_jobs(path, registry, quick=True)
    assert full and quick
    assert spec.name == path.stem
    assert len({job.id for job in full}) == len(full)
    first_seed = min(job.seed for job in full)
    assert len(quick) <= sum(job.seed == first_seed for job in full)
