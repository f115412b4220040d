"""Looking inside: the numbers and tensors the playground's pages draw.

Everything here is plain PyTorch and returns plain values (tensors, lists,
dicts), so a page only has to draw them. Nothing here trains or imports
Streamlit.

Notation: B batch, T tokens, H query heads, G key/value heads, Dh head size,
D model size.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass

import torch

from .attention import GroupedQueryAttention, attention_mask, explicit_attention, fused_attention, repeat_kv
from .config import ModelConfig
from .decoder import CausalLM, KVCache
from .encoder import SentimentClassifier
from .positional import rope
from .tokenizer import UNK_ID


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline, with the shape of what comes out of it."""

    name: str
    shape: tuple[int, ...]
    meaning: str


def pipeline_shapes(cfg: ModelConfig, n_tokens: int, batch: int = 1) -> list[Stage]:
    """The tensor shapes from text to logits, for a model config and a review of n_tokens ids."""
    B, T, D, H, G, Dh = batch, n_tokens, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    stages = [
        Stage("token ids", (B, T), "one integer per token"),
        Stage("embeddings", (B, T, D), f"a row of the {cfg.vocab_size} x {D} table per token, times sqrt(D)"),
    ]
    if cfg.pos_encoding in ("sinusoidal", "learned"):
        stages.append(Stage(f"+ {cfg.pos_encoding} positions", (B, T, D), "position codes added"))
    stages += [
        Stage("queries", (B, T, H, Dh), f"{H} heads of size {Dh}"),
        Stage("keys and values", (B, T, G, Dh), f"{G} key/value head(s), each shared by {H // G} quer{'y' if H // G == 1 else 'ies'}"),
        Stage("attention weights", (B, H, T, T), "every token's weights over every token, per head"),
        Stage("attention output", (B, T, D), "heads concatenated, then projected"),
        Stage("feed-forward hidden", (B, T, cfg.d_ff), f"{cfg.ffn} MLP, per token"),
        Stage(f"after {cfg.n_layers} layer(s)", (B, T, D), "the residual stream"),
        Stage(f"pooled ({cfg.pooling})", (B, D), "one vector per review"),
        Stage("logits", (B, cfg.n_classes), "one score per class"),
    ]
    return stages


@dataclass
class GQAWalkthrough:
    """Every intermediate tensor of one grouped-query attention call, for the pictures."""

    q: torch.Tensor              # (B, H, T, Dh)
    k: torch.Tensor              # (B, G, T, Dh), before repeat_kv
    v: torch.Tensor              # (B, G, T, Dh)
    weights: torch.Tensor        # (B, H, T, T)
    explicit: torch.Tensor       # (B, H, T, Dh), from softmax(QK^T/sqrt(Dh))V
    fused: torch.Tensor          # (B, H, T, Dh), from F.scaled_dot_product_attention
    max_difference: float        # max |explicit - fused|
    kv_group_of_head: list[int]  # query head h reads key/value head kv_group_of_head[h]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"q": tuple(self.q.shape), "k": tuple(self.k.shape), "v": tuple(self.v.shape),
                "k after repeat_kv": tuple(repeat_kv(self.k, self.q.size(1) // self.k.size(1)).shape),
                "weights": tuple(self.weights.shape), "output": tuple(self.explicit.shape)}


@torch.no_grad()
def gqa_walkthrough(cfg: ModelConfig, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                    causal: bool = False, seed: int = 0) -> GQAWalkthrough:
    """Run one freshly initialised (seeded) attention layer on x (B, T, D), both paths."""
    torch.manual_seed(seed)
    attn = GroupedQueryAttention(cfg).eval()
    q, k, v = attn.project(x)                                                      # (B, H|G, T, Dh)
    mask = attention_mask(key_padding_mask, x.size(1), causal)
    explicit, weights = explicit_attention(q, k, v, mask)
    fused = fused_attention(q, k, v, mask)
    return GQAWalkthrough(q, k, v, weights, explicit, fused,
                          (explicit - fused).abs().max().item(),
                          [h // cfg.queries_per_kv for h in range(cfg.n_heads)])


def attention_parameters(d_model: int, n_heads: int, n_kv_heads: int, bias: bool = True) -> int:
    """Weights of one attention layer: Q and output are D x D, K and V are D x (G * Dh) each."""
    head_dim = d_model // n_heads
    kv_width = n_kv_heads * head_dim
    weights = 2 * d_model * d_model + 2 * d_model * kv_width
    biases = (2 * d_model + 2 * kv_width) if bias else 0
    return weights + biases


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, seq_len: int,
                   batch: int = 1, bytes_per_value: int = 2) -> int:
    """Memory a decoder keeps for keys and values: 2 (K and V) x layers x G x Dh x tokens x batch."""
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch * bytes_per_value


# Published shapes of well-known models (from their papers and model cards).
WELL_KNOWN_MODELS = {
    "SmolLM2-135M (GQA)": dict(d_model=576, n_heads=9, n_kv_heads=3, n_layers=30),
    "Llama 2 7B (MHA)": dict(d_model=4096, n_heads=32, n_kv_heads=32, n_layers=32),
    "Llama 2 70B (GQA)": dict(d_model=8192, n_heads=64, n_kv_heads=8, n_layers=80),
    "Llama 3 8B (GQA)": dict(d_model=4096, n_heads=32, n_kv_heads=8, n_layers=32),
    "Mistral 7B (GQA)": dict(d_model=4096, n_heads=32, n_kv_heads=8, n_layers=32),
    "Falcon 7B (MQA)": dict(d_model=4544, n_heads=71, n_kv_heads=1, n_layers=32),
}


def parameter_breakdown(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters of a model (encoder or decoder), by part. A decoder's output head is
    its embedding table, so it is counted once, as the embedding."""
    parts: dict[str, int] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "layers." in name:
            part = "attention" if ".attention." in name else (
                "router" if ".router." in name else "feed-forward" if ".feed_forward." in name else "norms")
        elif "final_norm" in name:
            part = "norms"
        elif name.startswith("embedding"):
            part = "embedding table"
        elif name.startswith("positional"):
            part = "learned positions"
        else:
            part = "classifier"
        parts[part] = parts.get(part, 0) + p.numel()
    return parts


# -- tokenization ----------------------------------------------------------------------

def _lengths_with_cls(ids: list[list[int]]) -> list[int]:
    return sorted(len(seq) + 1 for seq in ids)


def review_lengths(tokenizer, texts: list[str]) -> list[int]:
    """Each review's length in tokens as the model would see it untruncated ([CLS] included), sorted."""
    return _lengths_with_cls(tokenizer.encode_batch(texts))


def tokenizer_stats(tokenizer, texts: list[str], max_len: int) -> dict[str, float]:
    """Chars per token, tokens per review (and kept of them), the share max_len truncates, [UNK] rate."""
    ids = tokenizer.encode_batch(texts)
    n_tokens = sum(map(len, ids)) or 1
    lengths = _lengths_with_cls(ids)
    return {
        "chars_per_token": sum(map(len, texts)) / n_tokens,
        "mean_tokens_per_review": n_tokens / max(1, len(texts)),
        "median_tokens_per_review": float(lengths[len(lengths) // 2]) if lengths else 0.0,
        "mean_kept_tokens": sum(min(n, max_len) for n in lengths) / max(1, len(lengths)),
        "truncated_share": sum(n > max_len for n in lengths) / max(1, len(lengths)),
        "unknown_rate": sum(seq.count(UNK_ID) for seq in ids) / n_tokens,
        "vocab_size": tokenizer.vocab_size,
    }


def bpe_merges(tokenizer, n: int = 20) -> list[tuple[str, str]]:
    """The first merges a BPE tokenizer learned: the most frequent pairs, in order."""
    spec = json.loads(tokenizer.to_str())["model"]
    if spec.get("type") != "BPE":
        return []
    merges = spec.get("merges", [])[:n]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


# -- embeddings ------------------------------------------------------------------------

def cosine_similarity_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """cos(angle) between every pair of rows.  # (N, D) -> (N, N)"""
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return unit @ unit.T


def pca_2d(vectors: torch.Tensor) -> torch.Tensor:
    """Project rows onto their two main directions of variation.  # (N, D) -> (N, 2)"""
    centred = vectors.float() - vectors.float().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


def nearest_neighbours(table: torch.Tensor, token_id: int, k: int = 8) -> list[tuple[int, float]]:
    """The k rows most similar (cosine) to one row, itself excluded."""
    sims = torch.nn.functional.normalize(table.float(), dim=-1) @ \
        torch.nn.functional.normalize(table[token_id].float(), dim=0)   # (V,)
    sims[token_id] = -2.0
    values, ids = sims.topk(min(k, table.size(0) - 1))
    return list(zip(ids.tolist(), values.tolist()))


def word_positivity(tokenizer, texts: list[str], labels: list[int],
                    min_count: int = 20) -> dict[int, float]:
    """log-odds of a token appearing in positive rather than negative reviews (smoothed)."""
    positive, negative = Counter(), Counter()
    for ids, label in zip(tokenizer.encode_batch(texts), labels):
        (positive if label == 1 else negative).update(set(ids))
    n_pos, n_neg = max(1, labels.count(1)), max(1, labels.count(0))
    return {t: math.log((positive[t] + 1) / n_pos) - math.log((negative[t] + 1) / n_neg)
            for t in set(positive) | set(negative) if positive[t] + negative[t] >= min_count}


# -- positions -------------------------------------------------------------------------

@torch.no_grad()
def order_blindness(model: SentimentClassifier, id_sequences: list[list[int]]) -> torch.Tensor:
    """Pooled vectors of several id sequences (same length), in eval mode.  # (N, D)"""
    model.eval()
    return model.run(torch.tensor(id_sequences)).pooled


def rope_relative_scores(head_dim: int, positions: list[tuple[int, int]], seed: int = 0) -> list[float]:
    """q_m . k_n after RoPE for a fixed random q and k placed at each (m, n) pair."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(head_dim, generator=g), torch.randn(head_dim, generator=g)
    longest = max(max(m, n) for m, n in positions) + 1
    q_at = rope(q.expand(1, 1, longest, head_dim))[0, 0]                   # (T, Dh)
    k_at = rope(k.expand(1, 1, longest, head_dim))[0, 0]                   # (T, Dh)
    return [float(q_at[m] @ k_at[n]) for m, n in positions]


def rope_pair_path(head_dim: int, n_positions: int, pairs: list[int], base: float = 10_000.0) -> list[dict]:
    """Where RoPE moves the vector (1, 0) of a few dimension pairs, position by position.

    Pair i turns by theta_i = base^(-2i/Dh) per position: pair 0 spins fast,
    later pairs slowly. Returns rows {pair, position, x, y}.
    """
    unit = torch.zeros(1, 1, n_positions, head_dim)
    unit[..., 0::2] = 1.0                                              # every pair starts at (1, 0)
    turned = rope(unit, base=base)[0, 0]                               # (T, Dh)
    return [{"pair": i, "position": p, "x": float(turned[p, 2 * i]), "y": float(turned[p, 2 * i + 1])}
            for i in pairs for p in range(n_positions)]


# -- the decoder -----------------------------------------------------------------------

@torch.no_grad()
def causal_check(model: CausalLM, ids: list[int], position: int, seed: int = 0) -> tuple[float, float]:
    """Change every token after `position` to another one and run the model again: the largest
    change of any logit at or before `position` (0 under a causal mask), and after it."""
    if not 0 <= position < len(ids) - 1:
        raise ValueError(f"position {position} leaves no later token to change in {len(ids)} tokens.")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    changed = list(ids)
    for t in range(position + 1, len(ids)):
        offset = int(torch.randint(1, model.cfg.vocab_size, (1,), generator=g))
        changed[t] = (ids[t] + offset) % model.cfg.vocab_size      # never the same token
    before, after = model(torch.tensor([ids])).logits[0], model(torch.tensor([changed])).logits[0]   # (T, V)
    difference = (before - after).abs().amax(-1)                                                     # (T,)
    return float(difference[: position + 1].max()), float(difference[position + 1:].max())


@dataclass
class CacheMeasurement:
    kind: str                    # MHA, GQA or MQA
    n_kv_heads: int
    measured_bytes: int          # read from the cache's tensors
    formula_bytes: int           # 2 x layers x B x G x T x Dh x bytes per value
    seconds_with_cache: float
    seconds_without_cache: float
    tokens: int

    @property
    def speedup(self) -> float:
        return self.seconds_without_cache / max(self.seconds_with_cache, 1e-9)


def attention_variants(cfg: ModelConfig) -> dict[str, int]:
    """MHA, GQA and MQA of a shape: the KV-head counts (GQA: the middle divisor of H, if any)."""
    divisors = [g for g in range(2, cfg.n_heads) if cfg.n_heads % g == 0]
    variants = {"MHA": cfg.n_heads}
    if divisors:
        variants["GQA"] = divisors[(len(divisors) - 1) // 2]
    variants["MQA"] = 1
    return variants


def kv_cache_sizes(cfg: ModelConfig, length: int, batch: int = 1) -> list[dict]:
    """For MHA, GQA and MQA versions of a decoder shape, the bytes of a cache for `length`
    positions, read from its tensors, beside the formula."""
    rows = []
    for kind, n_kv in attention_variants(cfg).items():
        cache = KVCache(cfg.n_layers, batch, n_kv, length, cfg.head_dim)
        rows.append({"attention": kind, "KV heads G": n_kv, "cache bytes (measured)": cache.nbytes,
                     "cache bytes (formula)": kv_cache_bytes(cfg.n_layers, n_kv, cfg.head_dim, length, batch, 4)})
    return rows


def measure_kv_cache(cfg: ModelConfig, prompt_tokens: int = 32, new_tokens: int = 64,
                     seed: int = 0) -> list[CacheMeasurement]:
    """For MHA, GQA and MQA versions of a decoder shape (random weights: speed and memory do not
    depend on training), the same greedy generation timed with and without the KV cache, and
    the cache's bytes from its tensors beside the formula."""
    from .generate import generate

    rows = []
    for kind, n_kv in attention_variants(cfg).items():
        variant = cfg.replace(task="lm", n_kv_heads=n_kv, dropout=0.0)
        torch.manual_seed(seed)
        model = CausalLM(variant).eval()
        prompt = torch.randint(4, variant.vocab_size, (prompt_tokens,), generator=torch.Generator().manual_seed(seed))
        n_new = min(new_tokens, variant.max_len - prompt_tokens)
        with_cache = generate(model, prompt.tolist(), n_new, temperature=0, use_cache=True)
        without = generate(model, prompt.tolist(), n_new, temperature=0, use_cache=False)
        length = len(with_cache.prompt_ids) + n_new
        rows.append(CacheMeasurement(kind, n_kv, with_cache.cache_bytes,
                                     kv_cache_bytes(variant.n_layers, n_kv, variant.head_dim, length, 1, 4),
                                     with_cache.seconds, without.seconds, len(with_cache.new_ids)))
    return rows


def expert_load(choices: torch.Tensor, n_experts: int) -> list[int]:
    """How many routing choices went to each expert.  # (B, T, k) -> E counts"""
    return torch.bincount(choices.flatten(), minlength=n_experts).tolist()


if __name__ == "__main__":       # python -m minitx.inspect: the command line (minitx.inspect_cli)
    from minitx.inspect_cli import main

    raise SystemExit(main())
