"""The file handling both on-disk caches share (trained models in
:mod:`benchharness.trained_cache`, transformed datasets in
:mod:`benchharness.transform_cache`): an entry is one ``torch.save``d dict written
atomically, holding its own key and a checksum of its tensors; one that fails the
checks is moved aside, never deleted."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "aside_path",
    "checksum",
    "read_checked",
    "remove_stale_temporaries",
    "save_atomically",
    "set_aside",
]


def checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())  # no copy of the bytes
    return h.hexdigest()


def save_atomically(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``payload`` to ``path`` so that a reader sees all of it or nothing
    (temporary file + rename); on failure the temporary file is removed and the
    ``OSError`` raised."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_checked(
    path: Path, key: str, *, format_version: int, tensors: str, what: str
) -> tuple[dict[str, Any] | None, str | None]:
    """(payload, None) for a sound entry at ``path``: it loads, is of ``format_version``,
    holds ``key``, and its ``payload[tensors]`` match their stored checksum; else
    (None, why not). ``what`` names the tensors in the reason ("weights")."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, not a torch file
        return None, f"unreadable: {type(exc).__name__}"
    try:
        if not isinstance(payload, dict) or payload.get("format") != format_version:
            return None, "not a benchharness cache entry of this format"
        if payload["key"] != key:
            return None, f"holds the entry of {payload['key']}"
        if checksum(payload[tensors]) != payload["checksum"]:
            return None, f"its {what} do not match their checksum"
    except Exception as exc:
        return None, f"malformed: {type(exc).__name__}"
    return payload, None


def set_aside(path: Path) -> str:
    """Move ``path`` to :func:`aside_path`; say where (or why it could not be moved:
    e.g. a read-only cache, whose entry is then recomputed all the same)."""
    aside = aside_path(path)
    try:
        os.replace(path, aside)
    except OSError as error:
        return f"could not move it aside ({error.strerror or error})"
    return f"moved aside to {aside.name}"


def aside_path(path: Path) -> Path:
    """Where a corrupt ``path`` is moved: ``<name>.corrupt-<UTC time>[-n]``, never an
    existing file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    return aside


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files of ``path`` (``<name>.tmp*``) left by a writer killed mid-save;
    call it holding the entry's lock: its holder is the only writer, so any that exist
    now are stale."""
    for tmp in path.parent.glob(f"{path.name}.tmp*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
