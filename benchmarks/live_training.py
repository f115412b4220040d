"""The Quick preset started from a real browser, against the same preset from the command line.

    python benchmarks/live_training.py               # 3 browser/command-line pairs
    python benchmarks/live_training.py --pairs 5

Each pair is a command-line run (`python -m minitx.train --preset quick`, process
start to exit) and, right after it, a browser run: a fresh `streamlit run`
server and headless Chromium on the Training page, Quick, Start, from the click
to "finished" on the page. During the browser run the page switches to the
Encoder page and back three times, each switch timed from the click until the
page has rendered. The server, the worker and the browser share the machine,
as on a learner's laptop.

Targets (issue 25): the median browser/command-line wall-time ratio at most 1.2
with the same test accuracy; the median page switch under 1.5 s. Writes
benchmarks/results/live-training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from common import train_from_cli, write_result  # noqa: E402
from tests.browser_support import CHROMIUM_ARGS, settle, start_server  # noqa: E402

SWITCHES = 3
TARGET_RATIO, TARGET_SWITCH_SECONDS = 1.2, 1.5

# The run's status word in its heading, or null while it trains.
STATUS_WORD = """([name, words]) => {
    const heading = [...document.querySelectorAll('h4')].find(h => h.innerText.includes(name));
    return heading ? words.find(w => heading.innerText.includes(w)) || null : null;
}"""
ENDED = ["finished", "stopped", "failed"]


def cli_quick(scratch: Path, run_name: str) -> dict:
    summary, wall = train_from_cli("--preset", "quick", "--checkpoint-dir", str(scratch / "cli-runs"),
                                   "--run-name", run_name)
    return {"wall_seconds": round(wall, 1), "test_accuracy": summary["test_accuracy"],
            "tokens_per_second": summary["tokens_per_second"]}


def browser_quick(scratch: Path, run_name: str) -> dict:
    from playwright.sync_api import sync_playwright

    checkpoints = scratch / "browser-runs"
    server, url = start_server({**os.environ, "MINITX_CHECKPOINTS": str(checkpoints)})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/training")
            settle(page)
            page.get_by_text("Estimated time: about").wait_for(timeout=60_000)
            name = page.get_by_role("textbox", name="run name (optional)")
            name.fill(run_name)
            name.press("Enter")
            settle(page)

            start = time.perf_counter()
            page.get_by_role("button", name="Start training").click()
            page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stProgress]')]"
                                   ".some(e => e.innerText.includes('epoch 1/'))", polling=250, timeout=120_000)
            switches = []
            for _ in range(SWITCHES):
                page.wait_for_timeout(5_000)
                for label in ("5 · Encoder stack", "10 · Training"):
                    tick = time.perf_counter()
                    page.locator("[data-testid=stSidebarNav]").get_by_text(label, exact=True).click()
                    page.wait_for_timeout(50)        # let the click reach the server
                    settle(page)
                    switches.append({"to": label, "seconds": round(time.perf_counter() - tick, 3)})
            ended = page.wait_for_function(STATUS_WORD, arg=[run_name, ENDED], polling=250,
                                           timeout=900_000).json_value()
            wall = time.perf_counter() - start
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    if ended != "finished":
        raise RuntimeError(f"the browser run ended {ended}, not finished")
    metrics = json.loads((checkpoints / run_name / "metrics.json").read_text())
    return {"wall_seconds": round(wall, 1), "test_accuracy": metrics["test_accuracy"],
            "tokens_per_second": metrics["tokens_per_second"], "page_switches": switches}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="browser/command-line pairs (default 3)")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1.")
    scratch = Path(tempfile.mkdtemp(prefix="minitx-live-"))
    pairs = []
    for n in range(args.pairs):
        cli = cli_quick(scratch, f"cli-{n}")
        browser = browser_quick(scratch, f"browser-{n}")
        pairs.append({"cli": cli, "browser": browser,
                      "wall_ratio": round(browser["wall_seconds"] / cli["wall_seconds"], 3),
                      "same_accuracy": browser["test_accuracy"] == cli["test_accuracy"]})
        print(json.dumps(pairs[-1]), flush=True)
    ratio = statistics.median(p["wall_ratio"] for p in pairs)
    switch = statistics.median(s["seconds"] for p in pairs for s in p["browser"]["page_switches"])
    write_result("live-training", {
        "summary": {"pairs": len(pairs), "wall_ratios": [p["wall_ratio"] for p in pairs],
                    "median_wall_ratio": round(ratio, 3), "median_switch_seconds": round(switch, 3),
                    "slowest_switch_seconds": max(s["seconds"] for p in pairs for s in p["browser"]["page_switches"]),
                    "targets_met": {"median_ratio_at_most_1.2": ratio <= TARGET_RATIO,
                                    "same_accuracy": all(p["same_accuracy"] for p in pairs),
                                    "median_switch_under_1.5_s": switch < TARGET_SWITCH_SECONDS}},
        "pairs": pairs, "note": "one machine runs the command line, or the server, the worker and Chromium"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
