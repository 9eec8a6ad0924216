"""A tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe`` for the HTML
report test: open one page in headless chromium, collect what its console reports (errors
logged by scripts, uncaught exceptions, failed resource loads), every URL it requested,
and a screenshot.

The pipe protocol: chromium reads JSON messages from fd 3 and writes to fd 4, each
message terminated by a NUL byte.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@dataclasses.dataclass
class PageVisit:
    """What one page load produced."""

    console_errors: list[str]  # console.error, uncaught exceptions, error log entries
    requested_urls: list[str]  # every request the page made (the page itself included)
    screenshot: bytes  # PNG of the viewport
    dom_ready: bool  # the load event fired


def visit(url: str, *, width: int = 1200, height: int = 2000, timeout: float = 60) -> PageVisit:
    """Load ``url`` in a fresh headless chromium and report what happened."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    def _wire_pipes() -> None:  # runs in the child between fork and exec
        # via fds >= 10, so that wiring fd 3 cannot clobber a pipe end that happens to be 4
        reads, writes = (
            fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)
        )
        os.dup2(reads, 3)
        os.dup2(writes, 4)

    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
        pass_fds=(3, 4),
        preexec_fn=_wire_pipes,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(to_browser_r)
    os.close(from_browser_w)
    client = _Client(to_browser_w, from_browser_r, time.monotonic() + timeout)
    try:
        target = client.call("Target.createTarget", {"url": "about:blank"})
        session = client.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            client.call(f"{domain}.enable", session=session)
        client.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        client.call("Page.navigate", {"url": url}, session=session)
        loaded = client.wait_for("Page.loadEventFired")
        shot = client.call("Page.captureScreenshot", {"format": "png"}, session=session)
        client.call("Runtime.evaluate", {"expression": "1"}, session=session)  # drain events
        return PageVisit(
            console_errors=_errors(client.events),
            requested_urls=[
                e["params"]["request"]["url"]
                for e in client.events
                if e.get("method") == "Network.requestWillBeSent"
            ],
            screenshot=base64.b64decode(shot["data"]),
            dom_ready=loaded,
        )
    finally:
        try:
            client.send("Browser.close")
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        os.close(to_browser_w)
        os.close(from_browser_r)
        shutil.rmtree(profile, ignore_errors=True)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value")) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(f"exception: {details.get('exception', {}).get('description', details)}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            found.append(f"log: {entry['text']} {entry.get('url', '')}".strip())
    return found


class _Client:
    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        return self._next_id

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        wanted = self.send(method, params, session)
        while True:
            message = self._receive()
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> bool:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._receive())
        return True

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self.read_fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)


def page_url(path: Path) -> str:
    return path.resolve().as_uri()
