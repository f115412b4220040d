"""The app's worker process against the command line, with no browser: does a run cost
tokens/s by training in a worker?

    python benchmarks/worker_speed.py              # 5 turns of each
    python benchmarks/worker_speed.py --turns 8

The two take turns on the same run (the Quick preset for one epoch on 3,000
reviews, about 15 s here), so this machine's drift hits both alike:

- cli: `python -m minitx.train --preset quick --train-size 3000 --test-size 200
  --epochs 1 --no-save`, its tokens/s from `--json`;
- worker: `RunRegistry.start` on a spare worker (`prepare_worker`, ready before
  Start, as on the Training page), its run asked for a `snapshot` once a second
  (as the page's live panel does, without a page), tokens/s from the summary.

The result is the median of the per-turn ratios, worker / cli. If it is about 1,
what live_training.py finds between the browser and the command line is the
page's cost (the server and the browser on the same cores), not the worker's.
Writes benchmarks/results/worker-speed.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from common import train_from_cli, write_result  # noqa: E402
from minitx.presets import preset  # noqa: E402
from minitx.runs import POLL_SECONDS, RunRegistry  # noqa: E402  (the live panel's interval)

TRAIN_SIZE, TEST_SIZE, EPOCHS = 3_000, 200, 1
SPARE_READY_SECONDS = 4.0   # a spare is ready about 1.5 s after it starts


def cli_tokens_per_second() -> float:
    summary, _ = train_from_cli("--preset", "quick", "--no-save", "--train-size", str(TRAIN_SIZE),
                                "--test-size", str(TEST_SIZE), "--epochs", str(EPOCHS))
    return summary["tokens_per_second"]


def worker_tokens_per_second(registry: RunRegistry, name: str) -> float:
    model_cfg, train_cfg = preset("quick")
    train_cfg = train_cfg.replace(train_size=TRAIN_SIZE, test_size=TEST_SIZE, epochs=EPOCHS)
    registry.prepare_worker()
    time.sleep(SPARE_READY_SECONDS)
    run_id = registry.start(model_cfg, train_cfg, name=name)
    while (snap := registry.snapshot(run_id)).active:
        time.sleep(POLL_SECONDS)
    if snap.status != "finished":
        raise RuntimeError(f"the worker's run ended {snap.status}: {snap.reason}")
    return snap.summary["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5, help="runs of each, in turns (default 5)")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error("--turns must be at least 1.")
    cli, worker = [], []
    with tempfile.TemporaryDirectory() as scratch:
        registry = RunRegistry(Path(scratch) / "runs")
        try:
            for turn in range(args.turns):
                # who goes first alternates, so neither always runs on a warmer machine
                for kind in (("cli", "worker") if turn % 2 == 0 else ("worker", "cli")):
                    if kind == "cli":
                        cli.append(round(cli_tokens_per_second(), 1))
                    else:
                        worker.append(round(worker_tokens_per_second(registry, f"turn-{turn}"), 1))
                    print(f"turn {turn}: {kind} {(cli if kind == 'cli' else worker)[-1]:,.0f} tokens/s",
                          flush=True)
        finally:
            registry.shutdown()
    ratios = [round(w / c, 3) for w, c in zip(worker, cli)]
    write_result("worker-speed", {
        "run": {"preset": "quick", "train_size": TRAIN_SIZE, "test_size": TEST_SIZE, "epochs": EPOCHS},
        "cli_tokens_per_second": cli, "worker_tokens_per_second": worker,
        "worker_vs_cli": ratios, "median_worker_vs_cli": statistics.median(ratios),
        "note": "no browser; the worker's run polled with snapshot() once a second",
    })


if __name__ == "__main__":
    main()
