"""Generating with and without the KV cache, and the cache's size for MHA, GQA and MQA.

    python benchmarks/generation.py            # writes benchmarks/results/generation.json

A decoder of the lm-quick shape but with room for the text (d_model 128, 4 query
heads, 2 layers, context 512; random weights: speed and memory do not depend on
training) writes 256 tokens greedily after a 32-token prompt, 5 times with the
cache and 5 times without, in turns; the result is the median of each. The
same generation is run for MHA (G = 4), GQA (G = 2) and MQA (G = 1), and the
cache's bytes are read from its tensors.

Targets (issue 26): with the cache at least 3x faster than without (median of
5); cache bytes MHA : GQA : MQA = H : G : 1.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import write_result  # noqa: E402

from minitx.decoder import CausalLM  # noqa: E402
from minitx.generate import generate  # noqa: E402
from minitx.inspect import attention_variants  # noqa: E402
from minitx.presets import PRESETS  # noqa: E402

PROMPT, NEW, REPEATS = 32, 256, 5


def main() -> None:
    torch.manual_seed(0)
    shape = PRESETS["lm-quick"][0].replace(max_len=512, vocab_size=2_000)
    prompt = torch.randint(4, shape.vocab_size, (PROMPT,), generator=torch.Generator().manual_seed(0)).tolist()
    kinds = attention_variants(shape)                        # MHA 4, GQA 2, MQA 1, as the page shows
    results = {}
    for kind, g in kinds.items():
        cfg = shape.replace(n_kv_heads=g)
        torch.manual_seed(0)
        model = CausalLM(cfg).eval()
        generate(model, prompt, 8, temperature=0)            # warm-up: first calls allocate
        timings = {"with_cache": [], "without_cache": []}
        texts = {}
        for _ in range(REPEATS):
            for name, use_cache in (("with_cache", True), ("without_cache", False)):
                out = generate(model, prompt, NEW, temperature=0, use_cache=use_cache)
                timings[name].append(round(out.seconds, 4))
                texts[name] = out.new_ids
                if use_cache:
                    results.setdefault(kind, {})["cache_bytes"] = out.cache_bytes
        with_cache, without = statistics.median(timings["with_cache"]), statistics.median(timings["without_cache"])
        results[kind].update(n_kv_heads=g, seconds=timings, median_seconds_with_cache=with_cache,
                             median_seconds_without_cache=without, speedup=round(without / with_cache, 2),
                             tokens_per_second_with_cache=round(NEW / with_cache),
                             tokens_per_second_without_cache=round(NEW / without),
                             same_tokens=texts["with_cache"] == texts["without_cache"])
        print(kind, results[kind], flush=True)
    mqa = results["MQA"]["cache_bytes"]
    ratio = [results[k]["cache_bytes"] / mqa for k in kinds]
    write_result("generation", {
        "shape": shape.to_dict(), "prompt_tokens": PROMPT, "new_tokens": NEW, "repeats": REPEATS,
        "results": results,
        "summary": {"speedup_median_of_5": {k: results[k]["speedup"] for k in kinds},
                    "cache_bytes_mha_gqa_mqa": [results[k]["cache_bytes"] for k in kinds],
                    "cache_ratio_mha_gqa_mqa": ratio,
                    "targets_met": {"cache_at_least_3x_faster": all(results[k]["speedup"] >= 3 for k in kinds),
                                    "bytes_in_ratio_H_G_1": ratio == list(kinds.values())}}})


if __name__ == "__main__":
    main()
