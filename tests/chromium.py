"""Test tool: drive a headless Chromium over the Chrome DevTools Protocol (open a report, press
keys, read values, take screenshots). ``conftest.py`` turns it into the ``browser`` fixture;
``scripts/make_doc_pictures.py`` uses it for the docs' screenshot. Not part of the package.

Needs a ``chromium`` binary (Debian: ``apt-get install -y chromium``) and the
``websocket-client`` package. Nothing is fetched from the network: Chromium starts with the
networking background services switched off and a fresh profile that is deleted afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (Debian/Ubuntu)"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """The browser could not be started or a page command failed."""


class HeadlessChromium:
    """A headless Chromium with one page, controlled over the DevTools protocol.

    ``with HeadlessChromium() as browser: browser.open(path); browser.evaluate("1 + 1")``
    """

    def __init__(self, *, width: int = 1440, height: int = 1000, binary: str | None = None, timeout: float = 30.0) -> None:
        try:
            import websocket
        except ImportError:
            raise BrowserError("the browser driver needs websocket-client: pip install websocket-client") from None
        self._websocket = websocket
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError(f"no Chromium found; {INSTALL_HINT}")
        self.timeout = timeout
        self.width, self.height = width, height
        self._profile = Path(tempfile.mkdtemp(prefix="mr-chromium-"))
        self._process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._next_id = 0
        try:
            port = self._wait_for_port()
            self._ws = websocket.create_connection(self._page_socket(port), timeout=timeout, suppress_origin=True)
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _wait_for_port(self) -> int:
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"Chromium exited at start (status {self._process.returncode})")
            if marker.exists():
                lines = marker.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.05)
        raise BrowserError("Chromium did not open its DevTools port in time")

    def _page_socket(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as r:
                targets = json.loads(r.read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.05)
        raise BrowserError("Chromium has no page to control")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are skipped)."""
        self._next_id += 1
        my_id = self._next_id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            if message.get("id") == my_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error'].get('message')}")
                return dict(message.get("result", {}))
        raise BrowserError(f"{method} got no answer in {self.timeout} s")

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """Evaluate JavaScript in the page and return its (JSON-able) value."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=await_promise, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def open(self, path: str | Path, *, fragment: str = "", ready: str | None = None) -> None:
        """Load a local file; wait until the JavaScript expression ``ready`` is truthy."""
        url = Path(path).absolute().as_uri() + (f"#{fragment}" if fragment else "")
        self.call("Page.navigate", url="about:blank")  # a fresh load, even if only the #fragment differs
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        condition = ready or "document.readyState === 'complete'"
        while time.monotonic() < deadline:
            try:
                if self.evaluate(f"Boolean({condition})"):
                    return
            except BrowserError:
                pass  # the page is still loading
            time.sleep(0.1)
        raise BrowserError(f"{url} did not become ready in {self.timeout} s")

    def press(self, key: str, code: int, times: int = 1) -> None:
        """Press a key (e.g. ``"ArrowRight", 39``) ``times`` times on the focused element."""
        for _ in range(times):
            for kind in ("rawKeyDown", "keyUp"):
                self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code, nativeVirtualKeyCode=code)

    def screenshot(self, path: str | Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (the whole page when ``full_page``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):  # closing anyway
                ws.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["FLAGS", "INSTALL_HINT", "BrowserError", "HeadlessChromium", "find_chromium"]
