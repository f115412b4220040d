"""How close the Training page's time estimate is to a run's own wall time, for quick and lm-quick.

    python benchmarks/estimate.py                          # quick and lm-quick, one run each
    python benchmarks/estimate.py --presets quick --repeats 3

The estimate is made as the page makes it (`minitx.estimate.estimate_for`: steps of the model timed
here, review lengths under a tokenizer trained on a sample); the run is started as the app starts it
(`RunRegistry`, a worker process of its own) and timed from `start()` until it has ended, which is
the elapsed time the page shows. Each phase's share is read from the run's snapshots (polled every
0.1 s). Target (issue 46): the estimate within 10% of the wall time, for both presets. Writes
benchmarks/results/estimate.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import write_result  # noqa: E402

from minitx.data import imdb_subsets  # noqa: E402
from minitx.estimate import estimate_for  # noqa: E402
from minitx.inspect import review_lengths  # noqa: E402
from minitx.presets import PRESETS  # noqa: E402
from minitx.runs import RunRegistry  # noqa: E402
from minitx.tokenizer import Tokenizer  # noqa: E402

TARGET = 0.10


def page_estimate(model_cfg, train_cfg) -> dict:
    """What the Training page says: a tokenizer trained on 2,000 sample reviews (ui.resources), the lengths
    of 500 of them, and steps of this model timed here."""
    texts = imdb_subsets(2_000, 2, 0.0, 0)["train"].texts
    tokenizer = Tokenizer.train(train_cfg.tokenizer, texts, train_cfg.vocab_size, train_cfg.lowercase)
    estimate, step_seconds, _ = estimate_for(model_cfg.replace(vocab_size=train_cfg.vocab_size), train_cfg,
                                             review_lengths(tokenizer, texts[:500]))
    return {"total_seconds": round(estimate.total_seconds, 1), "prepare_seconds": round(estimate.prepare_seconds, 1),
            "train_seconds": round(estimate.train_seconds, 1), "eval_seconds": round(estimate.eval_seconds, 1),
            "steps": estimate.steps, "step_seconds": round(step_seconds, 4)}


def timed_run(model_cfg, train_cfg, folder: Path) -> dict:
    """The run as the app starts it; when each phase began, from its snapshots."""
    registry = RunRegistry(folder, training_lock=folder / "lock")
    try:
        started = time.monotonic()
        run_id = registry.start(model_cfg, train_cfg, "timed")
        phases, snapshot = {}, registry.snapshot(run_id)
        while snapshot.active:
            if snapshot.phase not in phases:
                phases[snapshot.phase] = round(time.monotonic() - started, 2)
            if snapshot.step and "first step" not in phases:
                phases["first step"] = round(time.monotonic() - started, 2)
            time.sleep(0.1)
            snapshot = registry.snapshot(run_id)
        wall = time.monotonic() - started
    finally:
        registry.shutdown()
    if snapshot.status != "finished":
        raise RuntimeError(f"the run ended {snapshot.status}: {snapshot.reason}")
    return {"wall_seconds": round(wall, 1), "phases_began_at": phases, "steps": snapshot.step}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "lm-quick"], choices=list(PRESETS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--name", default="estimate")
    args = parser.parse_args()
    results = {}
    for name in args.presets:
        model_cfg, train_cfg = PRESETS[name]
        runs = []
        for _ in range(args.repeats):
            estimate = page_estimate(model_cfg, train_cfg)
            run = timed_run(model_cfg, train_cfg, Path(tempfile.mkdtemp(prefix="minitx-estimate-")))
            runs.append({"estimate": estimate, "run": run,
                         "estimate_over_wall": round(estimate["total_seconds"] / run["wall_seconds"], 3)})
            print(name, runs[-1], flush=True)
        ratio = statistics.median(r["estimate_over_wall"] for r in runs)
        results[name] = {"runs": runs, "median_estimate_over_wall": ratio,
                         "within_10_percent": abs(ratio - 1) <= TARGET}
    write_result(args.name, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
