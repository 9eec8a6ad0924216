"""A corrupt trained-model or reference-model cache entry is detected, named in a warning
line, moved aside (its bytes kept) and trained again; a good entry is reused."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from benchharness import datacache, trained_cache
from benchharness.executor import execute
from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry
from benchharness.progress import StudyProgress
from benchharness.records import CurvePoint
from benchharness.store import Store

KEY = "trained-0123456789abcdef"


def model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def store_entry(cache: Path, key: str = KEY, seed: int = 0) -> Path:
    with trained_cache.claim(cache, key) as entry:
        assert not entry.hit
        entry.save(model(seed), 1.5, [CurvePoint("train", 1, "train_loss", 0.25)])
    return entry.path


def asides(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def test_a_good_entry_is_reused_whole(tmp_path: Path) -> None:
    store_entry(tmp_path)
    with trained_cache.claim(tmp_path, KEY) as entry:
        assert entry.hit and entry.problem is None
        fresh = model(seed=1)
        assert entry.load_into(fresh)
    expected = model(0).state_dict().values()
    for mine, theirs in zip(fresh.state_dict().values(), expected, strict=True):
        assert torch.equal(mine, theirs)
    assert entry.train_seconds == 1.5
    assert entry.curves == [CurvePoint("train", 1, "train_loss", 0.25)]


def corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])  # as by a full disk or a killed copy


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not a torch file" * 50)


def corrupt_one_weight(path: Path) -> None:
    """Flip one byte of a stored weight, leaving the archive's structure intact."""
    weight = model(0)[0].weight.detach().contiguous().numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(weight)
    assert at >= 0
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))


def another_keys_entry(path: Path) -> None:
    other = store_entry(path.parent, key="trained-fedcba9876543210", seed=3)
    other.replace(path)


@pytest.mark.parametrize(
    "damage", [corrupt_truncated, corrupt_garbage, corrupt_one_weight, another_keys_entry]
)
def test_a_corrupt_entry_is_named_moved_aside_and_rebuilt(tmp_path: Path, capfd, damage) -> None:
    path = store_entry(tmp_path)
    damage(path)
    damaged = path.read_bytes()
    capfd.readouterr()

    with trained_cache.claim(tmp_path, KEY) as entry:
        assert not entry.hit
        (aside,) = asides(path)
        assert not path.exists()
        assert aside.read_bytes() == damaged  # kept for inspection, not deleted
        entry.save(model(0), 2.0, [])  # trained again
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1, err
    assert f"corrupt cache entry {path} (" in lines[0]
    aside = rf"moved aside to {re.escape(path.name)}\.corrupt-\d{{8}}T\d{{6}}Z; "
    assert re.search(aside, lines[0])
    assert lines[0].endswith("training again")

    with trained_cache.claim(tmp_path, KEY) as entry:  # the rebuilt entry is used
        assert entry.hit and entry.train_seconds == 2.0


def test_weights_that_do_not_fit_the_model_are_set_aside_untouched(tmp_path: Path, capfd) -> None:
    path = store_entry(tmp_path)
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with trained_cache.claim(tmp_path, KEY) as entry:
        assert entry.hit
        assert not entry.load_into(other)
        assert not entry.hit
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    assert len(asides(path)) == 1 and not path.exists()
    assert "does not have the model's shape (5, 4)" in capfd.readouterr().err


def test_a_temporary_file_left_by_a_killed_writer_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"{KEY}.pt.tmp99999"
    stale.write_bytes(b"half a file")
    store_entry(tmp_path)
    assert not stale.exists()


# ---------------------------------------------- the reference cache, through a real run

REFERENCE_SPEC = """
name = "{name}"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [16]

[optimizer]
name = "dc"
reference = {{ name = "sgd", epochs = 1, lr = 0.1, batch_size = 64 }}

[compressor]
name = "quantize"
k = 2

[measure]
latency = false
activation_stats = false
"""


def run_reference_job(tmp_path: Path, name: str) -> dict:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(REFERENCE_SPEC.format(name=name))
    _parsed, jobs = load_jobs(spec, get_registry())
    store = Store(tmp_path / "bench.duckdb")
    (record,) = execute(
        jobs,
        devices=[torch.device("cpu")],
        save=store.save,
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        progress=StudyProgress(len(jobs), 1, live=False, stream=io.StringIO()),
    )
    return record


def test_a_corrupt_reference_model_is_rebuilt_and_the_job_completes(tmp_path: Path, capfd) -> None:
    first = run_reference_job(tmp_path, "reference_first")
    assert first.status == "completed", first.error
    (reference,) = (tmp_path / "cache").glob("reference-*.pt")
    corrupt_truncated(reference)
    capfd.readouterr()

    again = run_reference_job(tmp_path, "reference_again")  # same reference, another spec
    assert again.status == "completed", again.error
    assert f"warning: corrupt cache entry {reference} (unreadable" in capfd.readouterr().err
    assert len(asides(reference)) == 1
    payload = torch.load(reference, weights_only=True)  # rebuilt whole
    assert payload["checksum"] == trained_cache.checksum(payload["state_dict"])
    # the retrained reference is the same training as the first (same seed and data)
    assert again.extra["reference_seconds"] > 0
    assert again.metrics["test_accuracy"] == first.metrics["test_accuracy"]


@pytest.fixture(autouse=True)
def _fresh_datacache():
    datacache.clear()
    yield
    datacache.clear()
