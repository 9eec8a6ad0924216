"""Stopping a study cleanly: SIGTERM treated like Ctrl-C, and no signal inside a save.

A batch scheduler (SLURM, systemd, Kubernetes) stops a job with SIGTERM, a user with
Ctrl-C (SIGINT). Both raise an exception in the main thread, so ``bench run`` unwinds,
stops its workers and says how to resume; neither may land inside a result's write, so a
save defers them until it has finished.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C, reported with exit code 143 (128 + 15)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (also usable as a decorator), SIGTERM raises :class:`Terminated`
    in the main thread instead of killing the process outright."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive within the block take effect when it ends.

    Used around saving a result: the write completes (or fails on its own), then the
    interruption happens as it would have. Python runs signal handlers in the main thread
    only, so replacing the handlers is enough even when other threads exist.
    """
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            _deliver(pending[0], previous[pending[0]])


def _deliver(signum: int, handler: Any) -> None:
    """Act on a held signal as its original handler would have."""
    if callable(handler):
        handler(signum, None)
    elif handler != signal.SIG_IGN:  # SIG_DFL (or unknown): let the default action happen
        os.kill(os.getpid(), signum)
