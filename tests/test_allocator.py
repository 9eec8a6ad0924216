"""retain_freed_memory: freed large blocks stay in the heap (counted in page faults)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the setting is glibc's",
)

# Allocates, touches and frees 64 MiB three times, then prints whether the setting is on
# and the minor page faults of the last two rounds: a block the heap kept is not faulted
# in again, an mmapped one is (16,384 pages of 4 KiB).
_SCRIPT = """
import resource
import numpy as np
from benchharness.allocator import retain_freed_memory
on = retain_freed_memory()
assert retain_freed_memory() == on  # once: the second call only reports
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(16 * 2**20, dtype=np.float32)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(on, max(faults[1:]))
"""


def _run(tuning: str) -> tuple[str, int]:
    # numpy's transparent huge pages would hide the faults counted (512 pages to a fault)
    env = {**os.environ, "BENCH_MALLOC_TUNING": tuning, "NUMPY_MADVISE_HUGEPAGE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


def test_freed_blocks_are_reused_without_page_faults():
    on, faults = _run("1")
    assert on == "True"
    assert faults < 1000  # 64 MiB would be 16,384 faults


def test_the_off_switch_leaves_the_allocator_alone():
    on, faults = _run("0")
    assert on == "False"
    assert faults > 8000  # glibc mmaps and unmaps every 64 MiB block
