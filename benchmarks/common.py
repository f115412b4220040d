"""Helpers shared by the benchmarks: where results go and what machine made them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    from minitx.hardware import REPORTED_FLAGS, cpu_flags, cpu_name

    return {"cpu_cores": cores, "processor": cpu_name(),
            "cpu_flags": sorted(set(REPORTED_FLAGS) & cpu_flags()),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": datetime.now().isoformat(timespec="seconds")}


def write_result(name: str, result: dict) -> Path:
    """Write benchmarks/results/<name>.json and print it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"benchmark": name, "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def train_from_cli(*options: str) -> tuple[dict, float]:
    """`python -m minitx.train --json --quiet OPTIONS`, as a learner runs it: its summary (the
    last line of its output) and its wall time in seconds, from process start to exit."""
    command = [sys.executable, "-m", "minitx.train", "--json", "--quiet", *options]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start
