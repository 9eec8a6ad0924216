"""Keep freed memory in the process heap, so that large tensors do not page-fault anew.

glibc's ``malloc`` serves blocks above its mmap threshold (which adapts upwards, to
32 MiB at most) with a fresh ``mmap`` and returns them to the OS on ``free``; it also
trims the top of the heap once more than twice that is free. A fused training step
allocates activations and gradients of that size every step (CompressedNet, 5 members:
128 × 80 × 28 × 28 fp32 = 31 MiB for one activation at α = 1, 61 MiB at α = 2), so each
step page-faults them in again: 4 KiB at a time, zero-filled by the kernel. On 2 cores
here a 33 MiB ``torch.zeros`` took 38 ms that way and 3 ms from the heap; the fused
α = 2 step went from ≈ 186 to ≈ 130 ms (``benchmarks/grouped_seeds.py``), and the α = 1
step from ≈ 80 to ≈ 50 ms in a fresh process (no change once glibc's threshold has
adapted to blocks under 32 MiB, as in that benchmark).

Single jobs gain too: a CompressedNet α = 2 step alone (batch 128, fp32) took 46–47 ms
with glibc's defaults and 36.4 ms with this setting (fresh processes, idle machine).

:func:`retain_freed_memory` raises both thresholds (``mallopt``) for the whole process.
Every worker (inline, spawned, Ray) calls it when it starts; fused training and its probe
call it too, so that they also hold outside the executor.
The cost is memory: what was freed stays mapped (the process's RSS stays at its peak
instead of falling between steps). It changes nothing computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap; larger ones are still mmapped
MMAP_THRESHOLD = 1 << 30
#: free memory at the top of the heap returned to the OS only above this
TRIM_THRESHOLD = 1 << 30

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module doc); once.

    Returns whether the setting is in effect: ``False`` off Linux, without glibc, or when
    the environment sets ``BENCH_MALLOC_TUNING=0`` (the off switch).
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("BENCH_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the trim threshold first: a failure of the second leaves no half-set state that hurts
    return bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
