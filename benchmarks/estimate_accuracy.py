"""How close is the Training page's time estimate to the run it estimates?

    python benchmarks/estimate_accuracy.py                 # 6 turns, Quick
    python benchmarks/estimate_accuracy.py --turns 10 --repeats 1 2

Each turn estimates the Quick preset in a fresh Python process for each
`--repeats` value (how many times `time_training_step` times each length,
keeping the fastest), as the page's server does on its first estimate, then
runs the same preset from the command line (`python -m minitx.train --preset
quick --no-save`, process start to exit). The estimates' order alternates
from turn to turn, so neither always times on a warmer machine. The review
lengths timed are the page's, from the page's own sample (ui.resources.sample_lengths).

The result, per `--repeats` value: each turn's estimate / actual, their
median, and how many came within 15% of the run. Writes
benchmarks/results/estimate-accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from common import train_from_cli, write_result  # noqa: E402
from minitx.estimate import representative_lengths  # noqa: E402
from minitx.presets import preset  # noqa: E402
from streamlit.logger import set_log_level  # noqa: E402

set_log_level("error")   # outside a server, every cached loader warns that it caches in memory only
from ui.resources import sample_lengths  # noqa: E402

PRESET = "quick"
# an estimate this close to the run (either way) is a good one
WITHIN = 0.15

# Run in a fresh process, as a server's first estimate is: the first steps a process times are slower.
ESTIMATE = """
import json, sys
from minitx.estimate import estimate_run, time_training_step
from minitx.presets import preset
model_cfg, train_cfg = preset(sys.argv[1])
seconds = time_training_step(model_cfg, train_cfg.batch_size, json.loads(sys.argv[2]), repeats=int(sys.argv[3]))
print(json.dumps({"step_seconds": seconds, "total_seconds": estimate_run(train_cfg, seconds).total_seconds}))
"""


def page_lengths() -> list[int]:
    """The four lengths the Training page times for this preset, found as its show_estimate does."""
    model_cfg, train_cfg = preset(PRESET)
    lengths = sample_lengths(train_cfg.tokenizer, train_cfg.vocab_size, train_cfg.lowercase)
    return representative_lengths(lengths, model_cfg.max_len)


def estimate_in_fresh_process(lengths: list[int], repeats: int) -> dict:
    done = subprocess.run([sys.executable, "-c", ESTIMATE, PRESET, json.dumps(lengths), str(repeats)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6, help="estimate-then-run turns (default 6)")
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2],
                        help="time_training_step repeats to compare (default: 1 2)")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error("--turns must be at least 1.")
    if min(args.repeats) < 1 or len(set(args.repeats)) != len(args.repeats):
        parser.error("--repeats takes different whole numbers, each at least 1.")
    lengths = page_lengths()
    print(f"timing steps at {lengths} tokens", flush=True)
    estimates = {r: [] for r in args.repeats}
    runs = []
    for turn in range(args.turns):
        order = args.repeats if turn % 2 == 0 else args.repeats[::-1]
        for repeats in order:
            estimates[repeats].append(estimate_in_fresh_process(lengths, repeats))
        summary, wall = train_from_cli("--preset", PRESET, "--no-save")
        runs.append({"wall_seconds": round(wall, 1), "test_accuracy": summary["test_accuracy"]})
        said = ", ".join(f"repeats {r}: {estimates[r][-1]['total_seconds']:.1f} s" for r in args.repeats)
        print(f"turn {turn}: {said}; the run {wall:.1f} s", flush=True)
    methods = {}
    for repeats, made in estimates.items():
        ratios = [round(e["total_seconds"] / run["wall_seconds"], 3) for e, run in zip(made, runs)]
        methods[str(repeats)] = {
            "step_ms": [round(e["step_seconds"] * 1000, 1) for e in made],
            "estimate_seconds": [round(e["total_seconds"], 1) for e in made],
            "estimate_vs_actual": ratios,
            "median": statistics.median(ratios),
            "within_15_percent": sum(abs(r - 1) <= WITHIN for r in ratios),
            "spread": round(max(ratios) - min(ratios), 3),
        }
    write_result("estimate-accuracy", {"preset": PRESET, "lengths": lengths, "turns": args.turns,
                                       "runs": runs, "by_repeats": methods})


if __name__ == "__main__":
    main()
