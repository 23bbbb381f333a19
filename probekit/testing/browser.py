"""Open a page in headless Chromium and see what a person would: the text it renders, what it logged,
what it requested, and a screenshot. For testing HTML outputs (probekit's ``report.html``, a plugin's).

Chromium is driven through its DevTools protocol over a websocket (``websocket-client``, in the
``test`` extra); the browser is the system's (Debian's ``chromium``: ``apt-get install chromium``).
:func:`find_chromium` says where it is, or None::

    from probekit.testing.browser import open_page
    seen = open_page("reports/.../report.html", screenshot="report.png")
    assert not seen.console_errors and not seen.requests
    assert "Expectations" in seen.text
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path

#: Where Chromium may be, in order; $PROBEKIT_CHROMIUM first.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable, or None where none is installed."""
    given = os.environ.get("PROBEKIT_CHROMIUM")
    if given:
        return given if Path(given).is_file() else shutil.which(given)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@dataclass
class SeenPage:
    """What the browser showed and did for one page."""

    text: str  # document.body.innerText: the text as rendered (hidden elements left out)
    console_errors: list[str] = field(default_factory=list)  # console.error, uncaught exceptions, browser log errors
    requests: list[str] = field(default_factory=list)  # every URL the page requested besides itself and data: URLs
    results: dict[str, object] = field(default_factory=dict)  # what each script given to open_page returned
    screenshot: Path | None = None


class _DevTools:
    """One websocket to the browser; commands to a page's session, events collected on the way."""

    def __init__(self, url: str, timeout: float) -> None:
        import websocket  # websocket-client

        self.socket = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        message_id = next(self.ids)
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page sent no {method} within {timeout:g} s")
            self.events.append(json.loads(self.socket.recv()))

    def close(self) -> None:
        self.socket.close()


def open_page(path: str | Path, *, screenshot: str | Path | None = None, width: int = 1280, height: int = 1800,
              scripts: dict[str, str] | None = None, timeout: float = 20.0) -> SeenPage:
    """Load ``path`` (a file) in headless Chromium, run ``scripts`` (name -> JavaScript expression) in it, and
    return its rendered text, console errors, requests and (with ``screenshot``) a PNG of the first screen."""
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set $PROBEKIT_CHROMIUM)")
    url = Path(path).resolve().as_uri()
    # Chromium's helper processes can still write to the profile just after the browser exits: a profile that
    # cannot be removed at once is left in the temporary folder rather than failing the page's check.
    with tempfile.TemporaryDirectory(prefix="probekit-chromium-", ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            tools = _DevTools(_browser_socket(Path(profile), browser, timeout), timeout)
            try:
                return _visit(tools, url, screenshot, width, height, scripts or {}, timeout)
            finally:
                tools.close()
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


def _browser_socket(profile: Path, browser: subprocess.Popen, timeout: float) -> str:
    """The browser's DevTools websocket, from the DevToolsActivePort file Chromium writes when it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise RuntimeError(f"Chromium exited at start (exit code {browser.returncode})")
        lines = port_file.read_text().split() if port_file.is_file() else []
        if len(lines) >= 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise TimeoutError(f"Chromium did not open its DevTools port within {timeout:g} s")


def _visit(tools: _DevTools, url: str, screenshot, width: int, height: int, scripts: dict[str, str],
           timeout: float) -> SeenPage:
    target = tools.call("Target.createTarget", url="about:blank")["targetId"]
    session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable", session)
    tools.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
               mobile=False)
    tools.events.clear()
    tools.call("Page.navigate", session, url=url)
    tools.wait_for("Page.loadEventFired", timeout)
    results = {name: tools.call("Runtime.evaluate", session, expression=code, returnByValue=True)
               .get("result", {}).get("value") for name, code in scripts.items()}
    text = tools.call("Runtime.evaluate", session, expression="document.body.innerText",
                      returnByValue=True)["result"].get("value", "")
    seen = SeenPage(text, _errors(tools.events), _requests(tools.events, url), results)
    if screenshot is not None:
        shot = tools.call("Page.captureScreenshot", session, format="png")
        seen.screenshot = Path(screenshot)
        seen.screenshot.write_bytes(b64decode(shot["data"]))
    return seen


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    return errors


def _requests(events: list[dict], page_url: str) -> list[str]:
    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return [u for u in urls if u != page_url and not u.startswith("data:")]
