"""The Quick preset started from a real browser, against the same preset from the command line.

    python benchmarks/live_training.py                  # process worker (the app's default)
    python benchmarks/live_training.py --worker thread  # the alternative runs.py rejected
    python benchmarks/live_training.py --worker both    # both, one after the other

Per worker, two runs, each on a fresh `streamlit run` server (the README's
command, so .streamlit/config.toml applies) with headless Chromium
(Playwright) on the Training page, the Quick preset and Start:

- watch: hands off until "finished"; the page polls once a second on its own.
  Its time, from the click on Start to "finished" on the page, is the one
  compared with the CLI's (`python -m minitx.train --preset quick`, process
  start to exit; run before and after the browser runs, and averaged, since
  this machine's speed drifts by several percent from run to run).
- switch: mid-run, the browser switches to another page and back three times;
  each switch is timed from the click until the page has rendered (script
  finished, nothing stale).

The browser, the server and the worker share this machine's cores, as they
do when a learner runs the app on a laptop.

Targets (issue 4): the browser run within 10% of the CLI's wall time and at
the same test accuracy (within 1 point); a page switch during training
under 1 s. Writes benchmarks/results/live-training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from common import write_result  # noqa: E402
from tests.browser_support import CHROMIUM_ARGS, settle, start_server  # noqa: E402

SWITCHES = 3


def cli_quick(scratch: Path) -> dict:
    command = [sys.executable, "-m", "minitx.train", "--preset", "quick", "--json", "--quiet", "--no-save",
               "--checkpoint-dir", str(scratch / "cli-runs")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_seconds": round(wall, 1), "test_accuracy": summary["test_accuracy"],
            "run_wall_seconds": summary.get("wall_seconds"),
            "tokens_per_second": summary.get("tokens_per_second")}


def _heading_has(page, name: str, word: str) -> bool:
    return page.evaluate("([n, w]) => [...document.querySelectorAll('h4')].some(h => h.innerText.includes(n) "
                         "&& h.innerText.includes(w))", [name, word])


def browser_quick(worker: str, scratch: Path, switch: bool) -> dict:
    from playwright.sync_api import sync_playwright

    checkpoints = scratch / f"{worker}-runs"
    run_name = f"bench-{worker}-{'switch' if switch else 'watch'}"
    env = {**os.environ, "MINITX_CHECKPOINTS": str(checkpoints), "MINITX_RUN_WORKER": worker}
    server, url = start_server(env)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/training")
            settle(page)
            page.get_by_text("Estimated time: about").wait_for(timeout=60_000)
            estimate = page.get_by_text("Estimated time: about").inner_text()
            name = page.get_by_role("textbox", name="run name (optional)")
            name.fill(run_name)
            name.press("Enter")
            settle(page)

            start = time.perf_counter()
            page.get_by_role("button", name="Start training").click()
            page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stProgress]')]"
                                   ".some(e => e.innerText.includes('epoch 1/'))", timeout=120_000)
            switches = []
            for _ in range(SWITCHES if switch else 0):
                page.wait_for_timeout(5_000)         # into the run, with the page polling
                for label in ("5 · Encoder stack", "6 · Training"):
                    tick = time.perf_counter()
                    page.locator("[data-testid=stSidebarNav]").get_by_text(label, exact=True).click()
                    page.wait_for_timeout(50)        # let the click reach the server
                    settle(page)
                    switches.append({"to": label, "seconds": round(time.perf_counter() - tick, 3),
                                     "still_training": not _heading_has(page, run_name, "finished")})
                    page.wait_for_timeout(2_000)
            deadline = time.monotonic() + 900
            while not _heading_has(page, run_name, "finished") and time.monotonic() < deadline:
                if _heading_has(page, run_name, "failed") or _heading_has(page, run_name, "stopped"):
                    raise RuntimeError("the browser run did not finish")
                page.wait_for_timeout(250)
            wall = time.perf_counter() - start
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    metrics = json.loads((checkpoints / run_name / "metrics.json").read_text())
    result = {"worker": worker, "mode": "switch" if switch else "watch", "wall_seconds": round(wall, 1),
              "test_accuracy": metrics["test_accuracy"], "run_wall_seconds": metrics["wall_seconds"],
              "tokens_per_second": metrics["tokens_per_second"], "page_estimate": estimate}
    if switch:
        result.update(page_switches=switches, slowest_switch_seconds=max(s["seconds"] for s in switches))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["process", "thread", "both"], default="process")
    parser.add_argument("--modes", default="watch,switch", help="watch, switch or both (comma-separated)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="minitx-live-"))
    clis = [cli_quick(scratch)]
    print("cli", clis[-1], flush=True)
    runs = []
    for worker in (["process", "thread"] if args.worker == "both" else [args.worker]):
        for switch in [mode == "switch" for mode in args.modes.split(",")]:
            runs.append(browser_quick(worker, scratch, switch))
            print(runs[-1], flush=True)
    clis.append(cli_quick(scratch))   # the machine's own drift: the CLI again, after the browser runs
    print("cli", clis[-1], flush=True)
    cli = {"wall_seconds": round(sum(c["wall_seconds"] for c in clis) / len(clis), 1),
           "test_accuracy": clis[0]["test_accuracy"], "runs": clis}
    for run in runs:
        run["wall_vs_cli"] = round(run["wall_seconds"] / cli["wall_seconds"], 3)
        run["accuracy_points_vs_cli"] = round(100 * (run["test_accuracy"] - cli["test_accuracy"]), 2)
        if run["mode"] == "watch":
            run["targets_met"] = {"within_10_percent_of_cli": run["wall_vs_cli"] <= 1.10,
                                  "same_accuracy_within_1_point": abs(run["accuracy_points_vs_cli"]) <= 1.0}
        else:
            run["targets_met"] = {"page_switch_under_1_s": run["slowest_switch_seconds"] < 1.0}
    write_result("live-training", {"cli_quick_mean_of_2": cli, "browser_quick": runs,
                                   "note": "one 2-core machine runs the server, the worker and Chromium"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
