"""Real `bench` processes for the kill and concurrency tests, forked from
tests/forkserver.py (one process that imported everything once) instead of paying ~2 s of
imports per start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

FORKSERVER = Path(__file__).with_name("forkserver.py")

TINY_SPEC = """
name = "{name}"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [8]
activation = "relu"

[optimizer]
name = "sgd"
lr = 0.1
epochs = 1
batch_size = 64

[measure]
latency_repeats = 1
latency_warmup = 0

[matrix]
seeds = {seeds}
"""


class ForkServer:
    """Starts `bench` processes; each writes stderr to a file and its exit code beside it."""

    def __init__(self, data_dir: Path, scratch: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_DATA_DIR": str(data_dir)}
        env.pop("BENCH_DB", None)
        scratch.mkdir(parents=True, exist_ok=True)
        warmup = scratch / "warmup.toml"
        warmup.write_text(TINY_SPEC.format(name="warmup", seeds="[0]"))
        self.proc = subprocess.Popen(
            [sys.executable, str(FORKSERVER), str(warmup), str(scratch / "warmup.duckdb")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout.readline().strip() == "ready", "the fork server failed"

    def start(self, args: list[str], stderr: Path, env: dict[str, str] | None = None) -> int:
        """Start ``bench ARGS``; return its pid."""
        request = {"args": [str(a) for a in args], "stderr": str(stderr), "env": env or {}}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"bench process {pid} did not end"
        time.sleep(0.005)


def text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def exit_code(stderr: Path) -> int | None:
    """The exit code of the process that wrote ``stderr`` (None: killed or running)."""
    code = text(stderr.with_name(stderr.name + ".rc"))
    return int(code) if code else None
