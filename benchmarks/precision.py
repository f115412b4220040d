"""fp32 against bf16 training on the CPU: speed (median of 5) and the quality each reaches.

    python benchmarks/precision.py                 # speed, then quick and lm-quick in both precisions
    python benchmarks/precision.py --speed-only
    python benchmarks/precision.py --seeds 3       # quick over three seeds in each: the seed noise

Speed: training tokens per second of the quick and lm-quick shapes (their model, batch size and
a typical length: 256 tokens for quick's reviews, lm-quick's 128-token blocks), fp32 and bf16
alternating, 5 repeats of 10 steps after 3 warm-up steps; bf16 is torch.autocast on the CPU
(matrix products in bf16; float32 weights, optimiser, softmax, norms and loss). Quality: each
preset run whole from the command line in each precision. Records the CPU's name and flags
(AVX-512 BF16, AMX). Writes benchmarks/results/precision.json (precision-speed.json with
--speed-only).

bf16 would be the CPU default only where it trains at least 1.3x as fast at equal quality.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import train_from_cli, write_result  # noqa: E402

from minitx.model import build_model  # noqa: E402
from minitx.presets import PRESETS  # noqa: E402
from minitx.train.loop import make_optimizer  # noqa: E402

SHAPES = {"quick": {"tokens": 256, "vocab_size": 20_000}, "lm-quick": {"tokens": 128, "vocab_size": 2_000}}
DEFAULT_BAR = 1.3


def tokens_per_second(preset: str, repeats: int, steps: int = 10, warmup: int = 3) -> dict[str, list[float]]:
    """Training tokens/s of a preset's shape in fp32 and bf16, the two alternating per repeat."""
    model_cfg, train_cfg = PRESETS[preset]
    shape = SHAPES[preset]
    cfg = model_cfg.replace(vocab_size=shape["vocab_size"])
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = make_optimizer(model, 1e-4, train_cfg.weight_decay, torch.device("cpu"))   # the trainer's
    B, T = train_cfg.batch_size, shape["tokens"]
    ids = torch.randint(3, cfg.vocab_size, (B, T))                                    # (B, T)
    labels = torch.randint(0, cfg.n_classes, (B,))

    def step(precision: str) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            if cfg.is_lm:
                logits = model(ids).logits                                            # (B, T, V)
                loss = F.cross_entropy(logits.float().flatten(0, 1), ids.roll(-1, 1).flatten())
            else:
                loss = F.cross_entropy(model(ids).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    speeds = {"fp32": [], "bf16": []}
    for precision in speeds:
        for _ in range(warmup):
            step(precision)
    for _ in range(repeats):
        for precision in speeds:
            start = time.perf_counter()
            for _ in range(steps):
                step(precision)
            speeds[precision].append(B * T * steps / (time.perf_counter() - start))
    return speeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1, help="quick's runs per precision (seeds 0, 1, ...)")
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()

    speed = {}
    for preset in SHAPES:
        runs = tokens_per_second(preset, args.repeats)
        medians = {p: statistics.median(v) for p, v in runs.items()}
        speed[preset] = {"tokens_per_second": {p: [round(x) for x in v] for p, v in runs.items()},
                         "median_fp32": round(medians["fp32"]), "median_bf16": round(medians["bf16"]),
                         "bf16_speedup": round(medians["bf16"] / medians["fp32"], 3)}
        print(preset, speed[preset], flush=True)

    quality = []
    if not args.speed_only:
        plan = [("quick", seed) for seed in range(args.seeds)] + [("lm-quick", 0)]
        for preset, seed in plan:
            for precision in ("fp32", "bf16"):
                summary, wall = train_from_cli("--preset", preset, "--precision", precision, "--device", "cpu",
                                               "--seed", str(seed), "--no-save")
                row = {"preset": preset, "precision": precision, "seed": seed, "wall_seconds": round(wall, 1),
                       "tokens_per_second": summary.get("tokens_per_second"),
                       "test_accuracy": summary.get("test_accuracy"),
                       "test_bits_per_char": summary.get("test_bits_per_char")}
                quality.append(row)
                print(row, flush=True)

    fast_enough = {preset: s["bf16_speedup"] >= DEFAULT_BAR for preset, s in speed.items()}
    # a speed-only run has its own file, so it never overwrites the last full run's quality rows
    write_result("precision-speed" if args.speed_only else "precision",
                 {"speed": speed, "quality": quality, "bar": DEFAULT_BAR, "bf16_at_least_the_bar": fast_enough})
    return 0


if __name__ == "__main__":
    sys.exit(main())
