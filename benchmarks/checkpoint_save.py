"""How long saving a resumable run takes: the quick preset's run folder, resume files included.

    python benchmarks/checkpoint_save.py      # writes benchmarks/results/checkpoint-save.json

Quick trains for 60 steps (so AdamW has its moments and the history its events), then its run
folder is written 5 times, as a Stop writes it: model, config, tokenizer, metrics with the
history and attention snapshots, the last weights, the optimizer's state and resume.json, into a
staging folder renamed into place. Target (issue 39): at most 1 s, median of 5.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import write_result  # noqa: E402

from minitx.checkpoint import save_run  # noqa: E402
from minitx.presets import PRESETS  # noqa: E402
from minitx.train import run_training  # noqa: E402

REPEATS, STEPS = 5, 60


def main() -> None:
    model_cfg, train_cfg = PRESETS["quick"]
    outcome = run_training(model_cfg, train_cfg, checkpoint_dir=None, stop_after_steps=STEPS)
    seconds, sizes = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for n in range(REPEATS):
            start = time.perf_counter()
            path = save_run(folder, f"run-{n}", outcome.model, train_cfg, outcome.tokenizer, outcome.metrics,
                            outcome.result.resume)
            seconds.append(round(time.perf_counter() - start, 4))
        sizes = {file.name: file.stat().st_size for file in sorted(path.iterdir())}
    median = statistics.median(seconds)
    write_result("checkpoint-save", {"preset": "quick", "steps": STEPS, "seconds": seconds, "median_seconds": median,
                                     "bytes": sizes, "total_bytes": sum(sizes.values()),
                                     "target_met": {"at_most_1_s": median <= 1.0}})


if __name__ == "__main__":
    main()
