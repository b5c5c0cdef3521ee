"""Open a page in headless Chromium and report what a reader would see go wrong.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
messages separated by NUL bytes), so it needs nothing beyond the standard library and the
browser. Reports: whether the load event fired, the first heading, each image's load state,
console errors and uncaught exceptions.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Generous: a cold Chromium start on a loaded two-core machine takes a few seconds.
PAGE_TIMEOUT_S = 60.0


def find_browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@dataclass
class PageCheck:
    loaded: bool = False
    heading: str = ""
    text_chars: int = 0
    images: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["width"] == 0]


class _Pipe:
    def __init__(self, browser: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def remap() -> None:  # in the child: CDP expects commands on fd 3, replies on fd 4
            # Copies first: either pipe end may already sit on 3 or 4, and dup2(fd, fd) would
            # keep it close-on-exec.
            commands, replies = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=remap,
            # close_fds would run after remap() and close 3 and 4 again; Python's own descriptors
            # are not inheritable, so only the two dup2() copies reach the browser.
            close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             deadline: float = 0.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the browser may already have gone
            os.write(self._to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


_PROBE = """JSON.stringify({
  heading: (document.querySelector('h1') || {}).textContent || '',
  text_chars: document.body ? document.body.innerText.length : 0,
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
                                                width: i.naturalWidth, external: !i.src.startsWith('data:')}))
})"""


def check_page(browser: str, page: Path, profile: Path) -> PageCheck:
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    pipe = _Pipe(browser, profile)
    result = PageCheck()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, deadline=deadline)["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                            deadline=deadline)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            pipe.send(domain, session=session, deadline=deadline)
        pipe.events.clear()
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session, deadline=deadline)
        while not any(e.get("method") == "Page.loadEventFired" for e in pipe.events):
            pipe.events.append(pipe.read(deadline))
        result.loaded = True
        probe = pipe.send("Runtime.evaluate", {"expression": _PROBE, "returnByValue": True},
                          session=session, deadline=deadline)
        seen = json.loads(probe["result"]["value"])
        result.heading, result.text_chars, result.images = seen["heading"], seen["text_chars"], seen["images"]
        for e in pipe.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                result.errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                result.errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                result.errors.append(params["entry"].get("text", "log error"))
    finally:
        pipe.close()
    return result
