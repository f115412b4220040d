"""What the browser test and benchmarks/live_training.py share: Chromium's flags, a fresh
`streamlit run` on a free port, and waiting until a page has finished rendering."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """`streamlit run streamlit_app.py` on 127.0.0.1 (.streamlit/config.toml applies); its URL once healthy."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless=true",
         "--server.address=127.0.0.1", f"--server.port={port}", "--browser.gatherUsageStats=false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"the Streamlit server did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the script has run to the end and nothing on the page is stale."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)
    page.wait_for_function("() => document.querySelectorAll('[data-stale=true]').length === 0",
                           timeout=timeout_ms)
