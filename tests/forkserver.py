"""Starts real `bench` processes by forking one process that has imported everything once.

Each `bench` start costs ~2 s of imports; a kill test that starts a hundred runs forks
them from here instead. A forked child is a real, separate `bench` process (its own pid,
its own file descriptors and DuckDB instance) running ``benchharness.cli.app``: the same
code the console script runs, minus the imports.

With arguments ``SPEC DB`` it first runs ``bench run SPEC --db DB`` itself, so that what
a run imports lazily (torch's FLOP counter and dynamo, scikit-learn's datasets, ...) is
loaded before any child is forked.

Protocol (one JSON object per line on stdin, one line back on stdout):
``{"args": [...], "stderr": PATH, "env": {...}}`` → the child's pid. The child writes its
stderr to PATH and its exit code to PATH + ".rc" just before it exits. Children are reaped
by the kernel (SIGCHLD ignored), so a pid that ``os.kill(pid, 0)`` cannot find is gone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import traceback

import torch

torch.set_num_threads(1)

import benchharness.executor  # noqa: E402,F401 - imported once, here, for every child
import benchharness.report  # noqa: E402,F401
import benchharness.runner  # noqa: E402,F401
from benchharness.cli import app  # noqa: E402
from benchharness.plugins import get_registry  # noqa: E402


def _child(request: dict) -> None:
    code = 99
    try:
        fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.update(request.get("env", {}))
        try:
            app(request["args"], prog_name="bench")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
            with open(request["stderr"] + ".rc", "w") as handle:
                handle.write(str(code))
        finally:
            os._exit(code)


def main() -> None:
    get_registry()
    if len(sys.argv) == 3:  # warm up: one real run, in this process
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                app(["run", sys.argv[1], "--db", sys.argv[2]], prog_name="bench")
            except SystemExit as exit_:
                if exit_.code:
                    raise
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
