"""SmolLM2-135M-Instruct run on its 4-bit blocks (`load_pretrained(dtype="q4")`) against the float32 engine
and transformers, on the same machine, in one run: speed, memory, load time and quality.

    python benchmarks/quantized.py          # writes benchmarks/results/quantized.json (about 10 minutes)

- decode: a chat answer of 128 greedy tokens (the end token not allowed to stop it), 2 threads; the
  4-bit engine, the float32 engine and transformers' `generate` in turns, 5 times each after a
  warm-up; tokens/s is the 128 tokens over the whole call, the prompt's pass included;
- prefill: a 256-token prompt to its first new token, 4-bit against float32, 5 times each;
- load: `load_pretrained(dtype="q4")` in a fresh process, cold (an empty cache: read the file, pack the
  blocks, keep them) then warm (the packed blocks from the cache), 5 times each, with the resident
  memory after loading and after writing 128 tokens;
- the 30 layers' products a token, timed alone (every matrix cycled through once per token, as a
  step reads them), for the int4 kernel and the float32 slabs, beside the bandwidth bound; a profile
  of 20 decode steps of each engine (where a step's milliseconds go);
- quality, against the float32 model dequantized from the same file: 50 IMDB test reviews, first
  256 tokens each: perplexity, how often the top-1 next token is the same, the largest logit
  difference; on 4 of them (64 tokens) the same with float32 scales and activations (the kernel's slow
  path) beside bfloat16, which says what bfloat16 changes; the answer to "What is the capital of France?".

Targets (issue 47): decode at least 2x the float32 engine and at least 0.6x llama.cpp's Q4_1 figure for
the CPU (BASELINES.md: AMD EPYC 110 tokens/s, Intel Xeon 243); memory at most 450 MB; warm load at most
1.5 s, cold at most 5 s; prefill at least the float32 engine's; perplexity within 1% and top-1 the same
at >= 97% of positions.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import machine, write_result  # noqa: E402
from pretrained import decode_profile, load_in_fresh_process, read_bandwidth  # noqa: E402  (shared with it)

from minitx.generate import generate  # noqa: E402
from minitx.pretrained import load_pretrained  # noqa: E402
from minitx.pretrained.gguf_file import read_gguf  # noqa: E402
from minitx.quant.stored import in_blocks, stored_model  # noqa: E402

STORY = "Write a short story about a cat who learns to fly."
NEW, PREFILL, REVIEWS, REVIEW_TOKENS = 128, 256, 50, 256
LLAMA_CPP_Q4_1 = {"AMD": 110.0, "Intel": 243.0}          # ../shared/BASELINES.md, tokens/s, 2 threads

def loads(repeats: int) -> dict:
    """Cold (an empty cache: read the file, pack, keep the packed blocks) then warm, in turns."""
    runs = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            runs["cold"].append(load_in_fresh_process(Path(cache), "q4"))
            runs["warm"].append(load_in_fresh_process(Path(cache), "q4"))
        print("load", runs["cold"][-1], runs["warm"][-1], flush=True)
    assert not any(r["from_cache"] for r in runs["cold"]) and all(r["from_cache"] for r in runs["warm"])
    return {**runs, **{f"{kind}_{key}_median": round(statistics.median(r[key] for r in runs[kind]), 2)
                       for kind in runs for key in ("seconds", "rss_mb_after_load", "rss_mb_after_generating")}}


def timed_transformers(model, ids: list[int], new: int) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(torch.tensor([ids]), max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return time.perf_counter() - start


def products_per_token(engine, repeats: int = 20) -> float:
    """Milliseconds for the 30 layers' four products of one token, every matrix read once a round."""
    x = {}
    for layer in engine.layers:
        for matrix in (layer.qkv, layer.out, layer.gate_up, layer.down):
            x.setdefault(matrix.in_features, torch.randn(1, matrix.in_features))
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for layer in engine.layers:
                for matrix in (layer.qkv, layer.out, layer.gate_up, layer.down):
                    matrix(x[matrix.in_features])
            times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def reviews(tokenizer) -> list[list[int]]:
    from minitx.data import load_imdb

    texts = load_imdb()["test"]["text"]
    step = len(texts) // REVIEWS                       # spread over the split: both labels, many films
    return [tokenizer.encode(texts[i * step]).ids[:REVIEW_TOKENS] for i in range(REVIEWS)]


def quality(model, reference, texts: list[list[int]]) -> dict:
    """Perplexity of both models on the texts, the share of positions whose top-1 token agrees, the largest
    logit difference."""
    losses, agree, positions, largest = {"model": 0.0, "reference": 0.0}, 0, 0, 0.0
    with torch.inference_mode():
        for ids in texts:
            x = torch.tensor([ids])
            ours, theirs = model(x).logits[0, :-1].float(), reference(x).logits[0, :-1].float()
            target = x[0, 1:]
            losses["model"] += torch.nn.functional.cross_entropy(ours, target, reduction="sum").item()
            losses["reference"] += torch.nn.functional.cross_entropy(theirs, target, reduction="sum").item()
            agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
            positions += target.numel()
            largest = max(largest, (ours - theirs).abs().max().item())
    perplexity = {name: math.exp(total / positions) for name, total in losses.items()}
    return {"perplexity": {k: round(v, 3) for k, v in perplexity.items()},
            "perplexity_ratio": round(perplexity["model"] / perplexity["reference"], 4),
            "top1_agreement": round(agree / positions, 4), "largest_logit_difference": round(largest, 3),
            "positions": positions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    load = loads(args.repeats)
    q4, fp32 = load_pretrained(dtype="q4"), load_pretrained()
    path = q4.source
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ids = q4.chat.encode([{"role": "user", "content": STORY}])

    engines = {"q4": (q4.model, q4.engine), "fp32": (fp32.model, fp32.engine)}
    for model, engine in engines.values():
        generate(model, ids, 16, temperature=0, n_top=0, engine=engine)
    timed_transformers(theirs, ids, 16)
    speeds, tokens = {"q4": [], "fp32": [], "transformers": []}, {}
    for _ in range(args.repeats):
        for name, (model, engine) in engines.items():
            out = generate(model, ids, NEW, temperature=0, n_top=0, engine=engine)
            speeds[name].append(round(NEW / out.seconds, 2))
            tokens[name] = out.new_ids
        speeds["transformers"].append(round(NEW / timed_transformers(theirs, ids, NEW), 2))
        print("decode", speeds, flush=True)
    del theirs
    median = {name: statistics.median(values) for name, values in speeds.items()}

    prompt = q4.tokenizer.encode(" ".join(["The cat learned to fly over the quiet town at night."] * 40)).ids[:PREFILL]
    prefill = {"q4": [], "fp32": []}
    for _ in range(args.repeats):
        for name, (model, engine) in engines.items():
            out = generate(model, prompt, 1, temperature=0, n_top=0, engine=engine)
            prefill[name].append(round(PREFILL / out.seconds, 1))
    print("prefill", prefill, flush=True)

    profiles = {"q4": decode_profile(q4.model, ids, q4.engine), "fp32": decode_profile(fp32.model, ids, fp32.engine)}

    bandwidth = read_bandwidth()
    q4_bytes = sum(m.nbytes for layer in q4.engine.layers for m in (layer.qkv, layer.out, layer.gate_up, layer.down))
    q4_bytes += q4.engine.head.nbytes + sum(p.numel() * 4 for p in q4.model.parameters())
    fp32_bytes = sum(p.numel() * 4 for p in fp32.model.parameters())
    products = {"q4_ms": products_per_token(q4.engine), "fp32_ms": products_per_token(fp32.engine)}

    france = q4.chat.encode([{"role": "user", "content": "What is the capital of France?"}])
    answer = q4.tokenizer.decode(generate(q4.model, france, 24, temperature=0, eos_id=q4.tokenizer.stop_ids,
                                          engine=q4.engine).new_ids)
    texts = reviews(q4.tokenizer)
    bf16 = quality(q4.model, fp32.model, texts)
    print("quality", bf16, flush=True)
    # the kernel's float32 path is a plain loop: a few short texts, both ways, say what bfloat16 changes
    state, _ = in_blocks(read_gguf(path, keep_blocks=True).state)
    exact, _, _ = stored_model(state, q4.model.cfg, activations=torch.float32)
    short = [ids[:64] for ids in texts[:4]]
    float_scales = {"float32": quality(exact, fp32.model, short), "bfloat16": quality(q4.model, fp32.model, short)}
    print("float32 scales", float_scales, flush=True)

    vendor = "Intel" if "Intel" in machine()["processor"] else "AMD"
    write_result("quantized", {
        "model": q4.name, "file": path.name, "prompt_tokens": len(ids), "new_tokens": NEW, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "notes": list(q4.notes),
        "decode_tokens_per_second": speeds, "decode_median": median,
        "q4_over_fp32_engine": round(median["q4"] / median["fp32"], 2),
        "q4_over_llama_cpp_q4_1": round(median["q4"] / LLAMA_CPP_Q4_1[vendor], 2),
        "first_tokens_equal_to_fp32": next((i for i, (a, b) in enumerate(zip(tokens["q4"], tokens["fp32"]))
                                            if a != b), NEW),
        "prefill_tokens_per_second": prefill, "prefill_median": {k: statistics.median(v) for k, v in prefill.items()},
        "load": load,
        "bound": {"read_bandwidth_gb_s": bandwidth, "bytes_per_token": {"q4": q4_bytes, "fp32": fp32_bytes},
                  "bound_tokens_per_second": {"q4": round(bandwidth * 1e9 / q4_bytes, 1),
                                              "fp32": round(bandwidth * 1e9 / fp32_bytes, 1)}},
        "products_30_layers_per_token": products, "decode_step_profiles": profiles,
        "quality_bf16_activations_and_scales": bf16, "float32_against_bfloat16_scales_4_reviews_64_tokens": float_scales,
        "capital_of_france": answer,
        "targets_met": {
            "decode_at_least_2x_fp32_engine": median["q4"] >= 2 * median["fp32"],
            "decode_at_least_0.6x_llama_cpp_q4_1": median["q4"] >= 0.6 * LLAMA_CPP_Q4_1[vendor],
            "memory_at_most_450_mb": max(load["cold_rss_mb_after_generating_median"],
                                         load["warm_rss_mb_after_generating_median"]) <= 450,
            "warm_load_at_most_1.5_s": load["warm_seconds_median"] <= 1.5,
            "cold_load_at_most_5_s": load["cold_seconds_median"] <= 5,
            "prefill_at_least_fp32": statistics.median(prefill["q4"]) >= statistics.median(prefill["fp32"]),
            "perplexity_within_1_percent": abs(bf16["perplexity_ratio"] - 1) <= 0.01,
            "top1_same_at_97_percent": bf16["top1_agreement"] >= 0.97,
            "answers_paris": "Paris" in answer}})


if __name__ == "__main__":
    main()
