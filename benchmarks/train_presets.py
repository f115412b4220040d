"""Accuracy and wall time of a training preset, run exactly as a user runs it.

    python benchmarks/train_presets.py quick        # target: >= 0.85 in <= 120 s
    python benchmarks/train_presets.py full         # target: >= 0.87 in <= 15 min
    python benchmarks/train_presets.py seed         # no target: the baseline, reported
    python benchmarks/train_presets.py lm-quick     # target: <= 2.0 bits per character in <= 300 s

The CLI runs in a child process, so the time includes Python start-up,
imports, data loading and tokenizer training. Pass --cold to empty the
tokenizer cache first (a first run on a new machine). Writes
benchmarks/results/train-<preset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import write_result  # noqa: E402

TARGETS = {"quick": {"min_test_accuracy": 0.85, "max_wall_seconds": 120},
           "full": {"min_test_accuracy": 0.87, "max_wall_seconds": 900},
           "seed": {},
           "lm-quick": {"max_test_bits_per_char": 2.0, "max_wall_seconds": 300}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=list(TARGETS))
    parser.add_argument("--cold", action="store_true", help="train the tokenizer from scratch")
    args, extra = parser.parse_known_args()   # anything else goes to minitx.train

    env = os.environ.copy()
    scratch = Path(tempfile.mkdtemp(prefix="minitx-bench-"))
    if args.cold:
        env["MINITX_CACHE"] = str(scratch / "cache")
    command = [sys.executable, "-m", "minitx.train", "--preset", args.preset, "--json", "--quiet",
               "--checkpoint-dir", str(scratch / "runs"), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        return done.returncode
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    target = TARGETS[args.preset]
    met = ((summary.get("test_accuracy") or 0) >= target.get("min_test_accuracy", 0)
           and (summary.get("test_bits_per_char") or 0) <= target.get("max_test_bits_per_char", float("inf"))
           and wall <= target.get("max_wall_seconds", float("inf")))
    write_result(f"train-{args.preset}", {
        "command": " ".join(command[1:]), "cold_tokenizer_cache": args.cold,
        "process_wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_rss_mb),
        "epoch_lines": [line for line in done.stdout.splitlines() if line.startswith("epoch")],
        "summary": summary, "target": target, "target_met": met if target else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
