"""How long a learner waits for a check: the attention lab's right answer through the warm lab worker,
as the Build it page sends it (median of 5), and two wrong ones, whose diagnosis runs
too: a mistake the lab knows by name, and one it does not.

    python benchmarks/lab_check.py              # target: at most 1.5x the check before the sandbox
    python benchmarks/lab_check.py --name NAME  # writes benchmarks/results/NAME.json (default lab-check)

Two ways: with a pause of 3 s before each check (a learner reads the last message and edits), and
back to back. Either way the job's process is forked from the worker's zygote when the check comes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import write_result  # noqa: E402

from minitx.labs.worker import LabWorker  # noqa: E402
from tests.lab_sources import RIGHT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="lab-check")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    request = {"op": "check", "lab": "attention", "source": RIGHT["attention"], "filename": "attention.py"}
    worker = LabWorker()
    worker.start()
    time.sleep(3)
    assert worker.request(request).result["passed"]             # warm: the first job's imports
    paused, back_to_back = [], []
    for _ in range(args.repeats):
        time.sleep(3)
        started = time.perf_counter()
        assert worker.request(request).result["passed"]
        paused.append(time.perf_counter() - started)
    for _ in range(args.repeats):
        started = time.perf_counter()
        assert worker.request(request).result["passed"]
        back_to_back.append(time.perf_counter() - started)
    named = {**request, "source": RIGHT["attention"].replace("/ math.sqrt(d)", "")}            # no 1/sqrt(Dh)
    unnamed = {**request, "source": RIGHT["attention"].replace("/ math.sqrt(d)", "/ (d + 1)")}  # nobody's mistake
    wrong = {"named": [], "unnamed": []}
    for kind, sent in (("named", named), ("unnamed", unnamed)):
        assert not worker.request(sent).result["passed"]
        for _ in range(args.repeats):
            started = time.perf_counter()
            assert not worker.request(sent).result["passed"]
            wrong[kind].append(time.perf_counter() - started)
    mode = worker.request({"op": "sandbox"}).result
    worker.close()
    write_result(args.name, {"sandbox": mode,
                             "check_after_a_pause_s": {"median": statistics.median(paused), "runs": paused},
                             "check_back_to_back_s": {"median": statistics.median(back_to_back),
                                                      "runs": back_to_back},
                             **{f"{kind}_mistake_back_to_back_s": {"median": statistics.median(runs), "runs": runs}
                                for kind, runs in wrong.items()}})


if __name__ == "__main__":
    main()
