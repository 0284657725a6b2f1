"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for the
dashboard's browser test and ``make dashboard-screenshot``: no browser download, no
WebDriver; one page, its console and exceptions recorded.

``Chromium.start`` returns None when no browser is installed (the caller skips, or fails
when ``BFX_REQUIRE_CHROMIUM=1``)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

#: Seconds to wait for the browser to start, and for any one DevTools answer.
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def find() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with one page; ``events`` holds every DevTools event seen."""

    def __init__(
        self, proc: subprocess.Popen[bytes], profile: str, log: Path, page_ws: str
    ) -> None:
        self.proc = proc
        self.profile = profile
        self.log = log
        # Entered as a context manager, as websockets asks (a bare connect() is deprecated).
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(page_ws, max_size=64 * 1024 * 1024, open_timeout=START_TIMEOUT)
        )
        self.events: list[dict[str, Any]] = []
        self._next = 0
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")

    @classmethod
    def start(cls, width: int = 1366, height: int = 900) -> Chromium | None:
        binary = find()
        if binary is None:
            return None
        profile = tempfile.mkdtemp(prefix="bfx-chromium-")
        # Its chatter goes to a file: a pipe nobody reads would fill and stall it.
        log = Path(profile + ".log")
        out = log.open("wb")
        proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",  # root in a container: the sandbox needs user namespaces
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        try:
            browser_ws = _listening(proc, log)
            port = int(browser_ws.split(":")[2].split("/")[0])
            page_ws = _page_target(port)
            return cls(proc, profile, log, page_ws)
        except BaseException:
            proc.kill()
            proc.wait(timeout=10)
            shutil.rmtree(profile, ignore_errors=True)
            log.unlink(missing_ok=True)
            raise

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"DevTools did not answer {method} in {CALL_TIMEOUT}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self, element_id: str) -> str | None:
        return self.evaluate(  # type: ignore[no-any-return]
            f"(e => e ? e.textContent : null)(document.getElementById({json.dumps(element_id)}))"
        )

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """The value of ``expression`` once truthy (polled every 0.1 s, at most
        ``timeout`` seconds; one that throws, as on a page still loading, is retried)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:
                value, last = None, exc
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} stayed falsy for {timeout}s ({last})")
            time.sleep(0.1)

    def problems(self) -> list[dict[str, Any]]:
        """Exceptions thrown, console errors and error log entries seen so far."""
        self.call("Runtime.evaluate", expression="0")  # collect pending events
        out = []
        for ev in self.events:
            method, params = ev["method"], ev.get("params", {})
            if (
                method == "Runtime.exceptionThrown"
                or (
                    method == "Runtime.consoleAPICalled"
                    and params.get("type") in ("error", "assert")
                )
                or (method == "Log.entryAdded" and params["entry"].get("level") == "error")
            ):
                out.append(ev)
        return out

    def screenshot(self, path: Path) -> None:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)
            self.log.unlink(missing_ok=True)


def _listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The browser's DevTools address, from the line it prints at start-up."""
    deadline = time.monotonic() + START_TIMEOUT
    seen = ""
    while time.monotonic() < deadline:
        seen = log.read_text(errors="replace")
        match = _LISTENING.search(seen)
        if match:
            return match.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited {proc.returncode}: {seen}")
        time.sleep(0.05)
    raise TimeoutError(f"chromium did not start in {START_TIMEOUT}s: {seen}")


def _page_target(port: int) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        if time.monotonic() > deadline:
            raise TimeoutError("chromium opened no page")
        time.sleep(0.1)
