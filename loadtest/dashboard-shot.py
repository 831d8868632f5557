#!/usr/bin/env python3
"""Opens a page in headless Chromium for a number of real seconds, then saves a screenshot
(and optionally the DOM). `chromium --screenshot` alone captures at the load event, or on
virtual time with --virtual-time-budget, where a dashboard's per-second rates mean nothing; this
drives Chromium over its DevTools pipe (--remote-debugging-pipe) instead, so the page runs on
the wall clock. Python's standard library only.

    loadtest/dashboard-shot.py http://127.0.0.1:9901/ --wait 8 --out docs/dashboard.png \
        [--size 1280x900] [--dom page.html]
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class DevTools:
    """Chromium's DevTools protocol over the pipe: JSON messages ended by a NUL byte, written to
    the browser's fd 3 and read from its fd 4."""

    def __init__(self, to_browser, from_browser):
        self.to_browser, self.from_browser = to_browser, from_browser
        self.next_id, self.pending = 0, b""

    def call(self, method, session=None, timeout=30, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise TimeoutError(f"{method}: no answer in {timeout} s")

    def read(self):
        while b"\0" not in self.pending:
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self.pending += chunk
        message, self.pending = self.pending.split(b"\0", 1)
        return json.loads(message)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--wait", type=float, default=8, help="seconds the page runs before the capture")
    ap.add_argument("--out", help="PNG file for the screenshot")
    ap.add_argument("--dom", help="file for the page's HTML at the same moment")
    ap.add_argument("--size", default="1280x900", help="viewport WIDTHxHEIGHT")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    profile = tempfile.mkdtemp(prefix="dashboard-shot-")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    command = [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--remote-debugging-pipe", "about:blank"]
    # The shell puts the pipe ends on the fds Chromium expects (3: it reads, 4: it writes).
    browser = subprocess.Popen(["/bin/sh", "-c", f'exec "$@" 3<&{to_r} 4>&{from_w}', "sh"] + command,
                               pass_fds=(to_r, from_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_r)
    os.close(from_w)
    try:
        tools = DevTools(to_w, from_r)
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
                   mobile=False)
        tools.call("Page.navigate", session, url=args.url)
        time.sleep(args.wait)
        if args.dom:
            html = tools.call("Runtime.evaluate", session, expression="document.documentElement.outerHTML",
                              returnByValue=True)["result"]["value"]
            with open(args.dom, "w") as f:
                f.write(html)
        if args.out:
            png = tools.call("Page.captureScreenshot", session, format="png")["data"]
            with open(args.out, "wb") as f:
                f.write(base64.b64decode(png))
        try:
            tools.call("Browser.close", timeout=5)
        except (EOFError, TimeoutError):
            pass
    finally:
        if browser.poll() is None:
            browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
