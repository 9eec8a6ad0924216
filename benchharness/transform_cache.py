"""Transformed datasets cached on disk, shared by every run and process that uses them.

An entry is ``<cache_dir>/data/<key>.pt``, where the key hashes everything that
determines a transform's output: a fingerprint of the data it was applied to (the
tensors' bytes), the dataset and data tables, and each transform's name, version and
resolved options (:func:`entry_key`). Entries are written atomically (temporary file +
rename) under a lock per key, so two processes that need the same entry compute it once:
the second waits, then loads. An entry is checked when read: it must load, be of this
format and of its own key, and its tensors must match the checksum written with them.
One that fails is moved aside to ``<file>.corrupt-<UTC time>`` (kept, never deleted),
named in a ``warning:`` line on stderr, and computed again. A cache that cannot be
written (read-only, disk full) only costs the reuse: the data is computed and returned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from benchharness.api import Data
from benchharness.cache_files import (
    checksum,
    read_checked,
    remove_stale_temporaries,
    save_atomically,
    set_aside,
)

FORMAT_VERSION = 1
SUBDIRECTORY = "data"


def fingerprint(data: Data) -> str:
    """sha256 of ``data``: every field's name and value, tensors by dtype, shape and bytes."""
    h = hashlib.sha256()
    tensors, scalars = _split_fields(data)
    h.update(json.dumps(scalars, sort_keys=True, default=repr).encode())
    h.update(checksum(tensors).encode())
    return h.hexdigest()


def entry_key(parts: Mapping[str, Any]) -> str:
    """The entry name of a transformed dataset: a hash of ``parts`` (the input data's
    :func:`fingerprint`, config tables, transform names, versions and options)."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / SUBDIRECTORY / f"{key}.pt"


def load_or_compute(cache_dir: Path, key: str, like: Data, compute: Callable[[], Data]) -> Data:
    """The cached data of ``key`` if a sound entry exists, else ``compute()`` (stored).

    ``like`` is the data the transforms were applied to: a loaded entry is ``like`` with
    the stored fields replaced, so a :class:`Data` subclass keeps its type.
    """
    path = entry_path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock")
        lock.acquire()
    except OSError as error:
        _warn(f"cannot use the data cache {path.parent} ({error.strerror or error})")
        return compute()
    try:
        remove_stale_temporaries(path)
        if path.exists():
            loaded = _read(path, key, like)
            if loaded is not None:
                return loaded
        data = compute()
        store(path, key, data, like)
        return data
    finally:
        lock.release()


def store_if_missing(cache_dir: Path, key: str, data: Data, like: Data) -> None:
    """Store ``data`` (computed from ``like`` without the disk cache, e.g. held in memory
    from an earlier call) as the entry ``key`` unless one exists."""
    path = entry_path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                remove_stale_temporaries(path)
                store(path, key, data, like)
    except OSError as error:
        _warn(f"cannot use the data cache {path.parent} ({error.strerror or error})")


def store(path: Path, key: str, data: Data, like: Data | None = None) -> bool:
    """Write ``data`` as the entry ``key`` at ``path`` atomically; False (with a warning)
    if it cannot be stored. Call with the key's lock held (:func:`load_or_compute`).

    Tensors ``data`` shares with ``like`` (the input: e.g. the labels, or everything
    for an identity transform) are not written; a load takes them from its ``like``,
    which the key identifies by content.
    """
    tensors, scalars = _split_fields(data)
    same = sorted(n for n, t in tensors.items() if like is not None and getattr(like, n) is t)
    stored = {n: _compact(t) for n, t in tensors.items() if n not in same}
    try:
        fields = json.dumps(scalars)
    except (TypeError, ValueError) as error:
        _warn(f"could not store {path}: a field of the data is not JSON ({error})")
        return False
    payload = {
        "format": FORMAT_VERSION,
        "key": key,
        "checksum": checksum(stored),
        "tensors": stored,
        "same": same,
        "fields": fields,
    }
    try:
        save_atomically(payload, path)
    except OSError as error:
        _warn(f"could not store {path} ({error.strerror or error})")
        return False
    return True


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the CPU, contiguous, owning only its own bytes (``torch.save``
    writes a view's whole storage)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def _split_fields(data: Data) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for field in dataclasses.fields(data):
        value = getattr(data, field.name)
        if isinstance(value, torch.Tensor):
            tensors[field.name] = value
        else:
            scalars[field.name] = value
    return tensors, scalars


def _read(path: Path, key: str, like: Data) -> Data | None:
    payload, problem = read_checked(
        path, key, format_version=FORMAT_VERSION, tensors="tensors", what="tensors"
    )
    if payload is None:
        _set_aside(path, str(problem))
        return None
    try:
        same = {name: getattr(like, name) for name in payload["same"]}
        return like.replace(**{**json.loads(payload["fields"]), **payload["tensors"], **same})
    except Exception as exc:
        _set_aside(path, f"malformed: {type(exc).__name__}")
        return None


def _set_aside(path: Path, reason: str) -> None:
    _warn(f"corrupt data cache entry {path} ({reason}): {set_aside(path)}; transforming again")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
