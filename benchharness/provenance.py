"""Where a result came from: code, versions, machine."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchharness

if TYPE_CHECKING:
    import torch


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the benchharness checkout (with ``+dirty`` if modified), or None."""
    root = Path(benchharness.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def collect(device: torch.device, plugin_versions: dict[str, str]) -> dict[str, Any]:
    """The provenance columns of a run (see records.PROVENANCE_COLUMNS)."""
    import torch

    return {
        "git_commit": git_commit(),
        "package_version": benchharness.__version__,
        "plugin_versions": plugin_versions,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "device": device_name(device),
        "cpu": cpu_name(),
        "hostname": socket.gethostname(),
        "torch_threads": torch.get_num_threads(),
    }
