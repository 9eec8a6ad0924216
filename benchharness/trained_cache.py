"""Trained models cached on disk by the hash of everything that determines them.

Two stages use it: a job's own training when the job compresses afterwards (so jobs that
differ only in post-training compressor settings train once), and the reference model of
the compression schemes (``TrainContext.train_reference``). An entry holds the state
dict, the wall time the training took and its curves, so a job that reuses it reports
the same ``train_seconds`` and curves as the job that trained it.

Entries are written atomically (temporary file + rename). A lock file per key makes two
workers that need the same model train it once: the second waits, then loads. An entry
is checked when read: it must load, be an entry of this format and of its own key, and
its tensors must match the checksum written with them (and, when loaded into a model,
that model's parameter names and shapes). One that fails is corrupt: it is moved aside
to ``<file>.corrupt-<UTC time>`` (kept for inspection, never deleted), named in a
``warning:`` line on stderr, and trained again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from benchharness.cache_files import (
    checksum,
    read_checked,
    remove_stale_temporaries,
    save_atomically,
    set_aside,
)
from benchharness.matrix import digest
from benchharness.records import CurvePoint

FORMAT_VERSION = 2  # 2: the key and a checksum of the tensors are stored with them


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
    problem: str | None = None  # why an existing file was set aside

    @property
    def key(self) -> str:
        return self.path.stem

    def load_into(self, model: nn.Module) -> bool:
        """Load the cached weights into ``model``; False (``model`` untouched, the entry
        set aside as corrupt, ``hit`` cleared) if they do not fit its parameters."""
        assert self.state_dict is not None
        mismatch = _mismatch(model.state_dict(), self.state_dict)
        if mismatch is not None:
            self.set_aside(mismatch)
            return False
        model.load_state_dict(self.state_dict)
        return True

    def save(self, model: nn.Module, train_seconds: float, curves: list[CurvePoint]) -> None:
        """Store ``model`` atomically: a concurrent reader sees all of it or nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        payload = {
            "format": FORMAT_VERSION,
            "key": self.key,
            "checksum": checksum(state),
            "state_dict": state,
            "train_seconds": float(train_seconds),
            "curves": [dataclasses.astuple(point) for point in curves],
        }
        save_atomically(payload, self.path)

    def set_aside(self, reason: str) -> None:
        """Move the entry's file to ``<file>.corrupt-<time>`` and say so on stderr."""
        self.hit = False
        self.state_dict = None
        self.curves = []
        where = set_aside(self.path)
        self.problem = f"corrupt cache entry {self.path} ({reason}): {where}; training again"
        print(f"warning: {self.problem}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def claim(cache_dir: Path, key: str, *, device: torch.device | str = "cpu") -> Iterator[Entry]:
    """The entry for ``key`` under ``cache_dir``, holding its lock for the block.

    Train and ``save`` inside the block on a miss; other processes asking for the same
    key wait until the block ends and then find the entry. ``device`` is accepted for
    callers' convenience; entries load on the CPU (``load_into`` copies to the model).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.pt"
    with FileLock(str(path) + ".lock"):
        remove_stale_temporaries(path)
        entry = Entry(path)
        if path.exists():
            _read(entry)
        yield entry


def _read(entry: Entry) -> None:
    payload, problem = read_checked(
        entry.path, entry.key, format_version=FORMAT_VERSION, tensors="state_dict", what="weights"
    )
    if payload is None:
        entry.set_aside(str(problem))
        return
    try:
        curves = [CurvePoint(str(p), int(s), str(n), float(v)) for p, s, n, v in payload["curves"]]
        train_seconds = float(payload["train_seconds"])
    except Exception as exc:
        entry.set_aside(f"malformed: {type(exc).__name__}")
        return
    entry.state_dict, entry.curves, entry.train_seconds = (
        payload["state_dict"],
        curves,
        train_seconds,
    )
    entry.hit = True


def _mismatch(expected: Mapping[str, torch.Tensor], cached: Mapping[str, Any]) -> str | None:
    if set(expected) != set(cached):
        return "its parameter names differ from the model's"
    for name, tensor in expected.items():
        other = cached[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            return f"{name} does not have the model's shape {tuple(tensor.shape)}"
    return None
