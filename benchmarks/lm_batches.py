"""lm-quick with its batches taken as fixed blocks or as windows at random places, 3 seeds each.

    python benchmarks/lm_batches.py                      # writes benchmarks/results/lm-batches.json (about 25 minutes)
    python benchmarks/lm_batches.py --extra="--tokenizer bpe --vocab-size 2000"

Each run is the command line, as a learner runs it (`--random-windows` or not, seeds 0, 1, 2);
the preset keeps whichever reaches fewer bits per character (median of the 3 seeds).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import train_from_cli, write_result  # noqa: E402

VARIANTS = {"blocks": "--no-random-windows", "windows": "--random-windows"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--extra", default="", help="more flags for every run")
    args = parser.parse_args()
    runs = {name: [] for name in VARIANTS}
    for seed in range(args.seeds):
        for name, flag in VARIANTS.items():
            summary, wall = train_from_cli("--preset", "lm-quick", flag, "--seed", str(seed), "--no-save",
                                           *shlex.split(args.extra))
            runs[name].append({"seed": seed, "test_bits_per_char": round(summary["test_bits_per_char"], 4),
                               "val_bits_per_char": round(summary["val_bits_per_char"], 4),
                               "wall_seconds": round(wall, 1), "tokens_per_second": summary["tokens_per_second"]})
            print(name, runs[name][-1], flush=True)
    medians = {name: statistics.median(r["test_bits_per_char"] for r in rows) for name, rows in runs.items()}
    write_result("lm-batches", {"preset": "lm-quick", "extra": args.extra, "runs": runs,
                                "median_test_bits_per_char": medians, "better": min(medians, key=medians.get)})


if __name__ == "__main__":
    main()
