"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``): stdlib only.

Chromium reads JSON commands, each ended by a NUL byte, on file descriptor 3 and writes its replies and
events the same way on descriptor 4. One page is opened and everything it logs or requests is recorded.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT = 60.0


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@dataclass
class PageVisit:
    """What a page did while it loaded: console errors, exceptions, requests, and a screenshot."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    evaluations: dict[str, Any] = field(default_factory=dict)


def visit(page: Path, expressions: dict[str, str], *, width: int = 1280, height: int = 2400) -> PageVisit:
    """Load ``page`` in headless Chromium, evaluate each of ``expressions`` once it has loaded (in order),
    then take a full-page screenshot."""
    executable = chromium()
    assert executable, "no chromium on PATH"
    profile = tempfile.mkdtemp(prefix="advsec-chromium-")
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def wire_pipes() -> None:  # in the child: Chromium expects the pipe on descriptors 3 and 4
        os.dup2(commands_read, 3)
        os.dup2(replies_write, 4)

    process = subprocess.Popen(
        [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        preexec_fn=wire_pipes, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(commands_read)
    os.close(replies_write)
    session = _Session(commands_write, replies_read)
    result = PageVisit()
    try:
        target = session.call("Target.createTarget", url="about:blank")["targetId"]
        session.id = session.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            session.call(f"{domain}.enable")
        session.call("Page.navigate", url=page.resolve().as_uri())
        session.wait_for("Page.loadEventFired")
        for name, expression in expressions.items():
            reply = session.call("Runtime.evaluate", expression=expression, returnByValue=True)
            if "exceptionDetails" in reply:
                result.errors.append(f"{name}: {reply['exceptionDetails'].get('text')}")
            result.evaluations[name] = reply["result"].get("value")
        shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        result.screenshot = base64.b64decode(shot["data"])
        session.id = None
        session.call("Browser.close")
    finally:
        try:
            process.wait(timeout=10)  # closed by Browser.close; still running only after an error
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.close(commands_write)
        os.close(replies_read)
        shutil.rmtree(profile, ignore_errors=True)
    for method, params in session.events:
        if method == "Runtime.exceptionThrown":
            result.errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            result.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            result.errors.append(params["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            result.requests.append(params["request"]["url"])
    return result


class _Session:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.id: str | None = None  # the page's session once attached; None talks to the browser
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._next = 0
        self._buffer = b""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if self.id:
            message["sessionId"] = self.id
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        if method == "Browser.close":
            return {}
        while True:
            reply = self._receive()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_for(self, event: str) -> None:
        while not any(method == event for method, _ in self.events):
            self._receive()

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self.read_fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append((message["method"], message.get("params", {})))
        return message
