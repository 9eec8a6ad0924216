"""Trained models cached on disk by the hash of everything that determines them.

Two stages use it: a job's own training when the job compresses afterwards (so jobs that
differ only in post-training compressor settings train once), and the reference model of
the compression schemes (``TrainContext.train_reference``). An entry holds the state
dict, the wall time the training took and its curves, so a job that reuses it reports
the same ``train_seconds`` and curves as the job that trained it.

Entries are written atomically (temporary file + rename). A lock file per key makes two
workers that need the same model train it once: the second waits, then loads. An entry
that cannot be read (a truncated or corrupt file) is deleted and trained again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from benchharness.matrix import digest
from benchharness.records import CurvePoint

FORMAT_VERSION = 1


def cache_key(kind: str, parts: Mapping[str, Any]) -> str:
    """The key of a trained model: ``kind`` (e.g. "trained", "reference") plus ``parts``
    (the config sections, seed and plugin versions that determine it)."""
    return f"{kind}-{digest({'format': FORMAT_VERSION, **parts})}"


@dataclasses.dataclass
class Entry:
    """One cache slot, locked while in use. ``hit`` says whether a model was found."""

    path: Path
    hit: bool = False
    state_dict: dict[str, torch.Tensor] | None = None
    train_seconds: float | None = None
    curves: list[CurvePoint] = dataclasses.field(default_factory=list)
    problem: str | None = None  # why an existing file was discarded

    def load_into(self, model: nn.Module) -> nn.Module:
        assert self.state_dict is not None
        model.load_state_dict(self.state_dict)
        return model

    def save(self, model: nn.Module, train_seconds: float, curves: list[CurvePoint]) -> None:
        """Store ``model`` atomically: a concurrent reader sees all of it or nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "train_seconds": float(train_seconds),
            "curves": [dataclasses.astuple(point) for point in curves],
        }
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        torch.save(payload, tmp)
        os.replace(tmp, self.path)


@contextlib.contextmanager
def claim(cache_dir: Path, key: str, *, device: torch.device | str = "cpu") -> Iterator[Entry]:
    """The entry for ``key`` under ``cache_dir``, holding its lock for the block.

    Train and ``save`` inside the block on a miss; other processes asking for the same
    key wait until the block ends and then find the entry.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.pt"
    with FileLock(str(path) + ".lock"):
        entry = Entry(path)
        if path.exists():
            _read(entry, device)
        yield entry


def _read(entry: Entry, device: torch.device | str) -> None:
    try:
        payload = torch.load(entry.path, map_location=device, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
            raise ValueError("not a benchharness cache entry of this version")
        entry.state_dict = payload["state_dict"]
        entry.train_seconds = float(payload["train_seconds"])
        entry.curves = [
            CurvePoint(str(p), int(s), str(n), float(v)) for p, s, n, v in payload["curves"]
        ]
        entry.hit = True
    except Exception as exc:  # unreadable: discard it and train again
        entry.problem = f"discarded unreadable cache entry {entry.path} ({type(exc).__name__})"
        with contextlib.suppress(OSError):
            entry.path.unlink()
