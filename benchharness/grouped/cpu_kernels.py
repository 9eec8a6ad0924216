"""The fused CPU kernels (``cpu_kernels.cpp`` and ``cpu_kernels_*.h`` beside this file),
compiled on first use for this CPU (``-march=native``; a portable build if the compiler
refuses that).

:func:`cpu_kernels` builds the extension with ``torch.utils.cpp_extension.load`` (ninja
and a C++ compiler; torch caches the build under ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``, and rebuilds only when the source or torch changes; a
file lock there serialises workers that build at once). The first build takes ~30 s
and says so on stderr; the fused probe builds it before it starts timing.

Where the build is impossible (no compiler, no ninja) or turned off with
``BENCH_FUSED_KERNELS=0``, :func:`cpu_kernels` returns ``None``, says why once on
stderr, and the fused engine uses torch's own kernels: same results up to rounding,
slower.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from benchharness.errors import first_line

__all__ = ["cpu_kernels", "kernels_disabled"]

_SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
_NAME = "benchharness_grouped_cpu"
_lock = threading.Lock()
_loaded: ModuleType | None = None
_failure: str | None = None


def kernels_disabled() -> bool:
    """Whether ``BENCH_FUSED_KERNELS=0`` (or ``false``/``no``/``off``) turns them off."""
    return os.environ.get("BENCH_FUSED_KERNELS", "1").strip().lower() in ("0", "false", "no", "off")


def cpu_kernels() -> ModuleType | None:
    """The compiled kernels, or ``None`` when turned off or not buildable here."""
    global _loaded, _failure
    if kernels_disabled():
        return None
    if _loaded is not None or _failure is not None:
        return _loaded
    with _lock:
        if _loaded is None and _failure is None:
            try:
                _loaded = _build()
            except Exception as exc:  # compiler, ninja or linker errors of every kind
                _failure = first_line(exc)
                print(
                    f"grouped: fused CPU kernels unavailable ({_failure}); "
                    "using torch's kernels (slower, same results)",
                    file=sys.stderr,
                )
    return _loaded


def _build() -> ModuleType:
    import logging

    # its "No CUDA runtime is found" warning on import is irrelevant to a CPU extension
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch
    from torch.utils import cpp_extension

    build_directory = getattr(cpp_extension, "_get_build_directory", None)  # private API
    if build_directory and not (Path(build_directory(_NAME, False)) / f"{_NAME}.so").exists():
        print("grouped: building the fused CPU kernels (once, ~30 s)", file=sys.stderr)
    # torch rebuilds when the .cpp or these flags change. Naming torch's version rebuilds
    # after an upgrade (its headers and ABI are compiled in); naming this CPU rebuilds a
    # cache shared with another machine, for which -march=native code may not run.
    # torch hashes the .cpp, not the headers it includes: their hash is a flag too.
    flags = [
        "-O3",
        "-fopenmp",
        "-Wno-psabi",  # vector arguments of internal functions: no ABI to keep
        f"-DBENCHHARNESS_TORCH_VERSION={torch.__version__}",
        f"-DBENCHHARNESS_KERNELS={_headers_hash()}",
    ]
    native = ["-march=native", f"-DBENCHHARNESS_CPU={_cpu_fingerprint()}"]
    try:
        return _load(cpp_extension, flags + native)
    except Exception:  # a compiler without -march=native: the portable build
        return _load(cpp_extension, flags)


def _load(cpp_extension, cflags: list[str]) -> ModuleType:
    return cpp_extension.load(
        name=_NAME, sources=[str(_SOURCE)], extra_cflags=cflags, extra_ldflags=["-fopenmp"]
    )


def _headers_hash() -> str:
    import hashlib

    digest = hashlib.sha256()
    for header in sorted(_SOURCE.parent.glob("cpu_kernels_*.h")):
        digest.update(header.name.encode() + header.read_bytes())
    return digest.hexdigest()[:12]


def _cpu_fingerprint() -> str:
    """A short hash of this CPU's model and instruction-set flags."""
    import hashlib
    import platform

    described = f"{platform.machine()} {platform.processor()}"
    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info if line.startswith(("model name", "flags"))]
        described += "".join(sorted(set(lines)))
    except OSError:
        pass
    return hashlib.sha256(described.encode()).hexdigest()[:12]
