"""Where the training time goes: attention path, padding strategy, attention dropout.

    python benchmarks/speed.py            # writes benchmarks/results/speed.json

Measures training steps per second of the seed recipe's shape (d_model 256,
4 heads, 3 post-norm layers, d_ff 1024, batch 16) on real IMDB batches:

- padding: every batch padded to max_len 512, vs dynamic padding, vs dynamic
  padding with length bucketing (tokens per second of real tokens);
- attention: minitx's explicit path, its fused path, and PyTorch's
  nn.TransformerEncoder of the same size, as the reference, compared at equal
  settings twice: both without dropout on the attention weights (minitx's
  default), and both with 0.1 there (nn.TransformerEncoderLayer's `dropout`
  also drops attention weights).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # run as a script from anywhere
from common import write_result  # noqa: E402

from minitx.config import ModelConfig  # noqa: E402
from minitx.data import encode_split, imdb_subsets, pad_batch, training_batches  # noqa: E402
from minitx.encoder import SentimentClassifier, mean_pool  # noqa: E402
from minitx.tokenizer import cached_tokenizer  # noqa: E402

STEPS = 8          # timed steps per variant, after 2 warm-up steps
BATCH = 16


class TorchReference(nn.Module):
    """The same shape built from nn.TransformerEncoder (post-norm, ReLU), for comparison only.
    Its residual and feed-forward dropout is cfg.dropout; on the attention weights, cfg.attention_dropout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=0)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout,
                                           batch_first=True, norm_first=False)
        layer.self_attn.dropout = cfg.attention_dropout      # MultiheadAttention's own, on its weights
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, ids):
        mask = ids != 0
        hidden = self.encoder(self.embedding(ids), src_key_padding_mask=~mask)
        return self.classifier(mean_pool(hidden, mask))


class ExplicitPath(nn.Module):
    """minitx's model forced onto the explicit attention path (the one that returns weights)."""

    def __init__(self, model: SentimentClassifier):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model.run(ids, need_weights=True).logits


def time_steps(model: nn.Module, batches) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    seconds, tokens = [], 0
    for i, batch in enumerate(batches[: STEPS + 2]):
        start = time.perf_counter()
        loss = F.cross_entropy(model(batch.ids), batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            seconds.append(time.perf_counter() - start)
            tokens += batch.n_tokens
    return {"seconds_per_step": round(statistics.mean(seconds), 3),
            "real_tokens_per_second": round(tokens / sum(seconds)),
            "padded_tokens_per_batch": round(statistics.mean(b.ids.numel() for b in batches[2: STEPS + 2]))}


def main() -> None:
    torch.manual_seed(0)
    subsets = imdb_subsets(2000, 2, 0.0, seed=0)
    tok = cached_tokenizer("wordpiece", subsets["train"].texts, 30_000)
    split = encode_split(tok, subsets["train"].texts, subsets["train"].labels, 512, "head")
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=256, n_heads=4, n_kv_heads=4, n_layers=3,
                      d_ff=1024, max_len=512, dropout=0.1, norm_position="post")

    random_batches = training_batches(split, BATCH, seed=0, bucket=False)
    bucketed = training_batches(split, BATCH, seed=0, bucket=True)
    padded_512 = [type(b)(pad_batch([split.sequences[r] + [0] * (512 - len(split.sequences[r]))
                                     for r in b.rows]), b.labels, b.rows) for b in random_batches]

    results = {}
    fused = SentimentClassifier(cfg)
    results["padding"] = {
        "pad_to_512": time_steps(fused, padded_512),
        "dynamic": time_steps(fused, random_batches),
        "dynamic_bucketed": time_steps(fused, bucketed),
    }
    dropped = cfg.replace(attention_dropout=0.1)
    results["attention"] = {
        "explicit": time_steps(ExplicitPath(SentimentClassifier(cfg)), bucketed),
        "fused": time_steps(SentimentClassifier(cfg), bucketed),
        "torch_transformer_encoder": time_steps(TorchReference(cfg), bucketed),
        "fused_attention_dropout_0.1": time_steps(SentimentClassifier(dropped), bucketed),
        "torch_transformer_encoder_attention_dropout_0.1": time_steps(TorchReference(dropped), bucketed),
    }
    a = results["attention"]

    def faster(ours: str, theirs: str) -> float:
        return round(a[theirs]["seconds_per_step"] / a[ours]["seconds_per_step"], 2)

    results["ratios"] = {
        "fused_over_explicit_speed": faster("fused", "explicit"),
        "fused_over_torch_speed_no_attention_dropout": faster("fused", "torch_transformer_encoder"),
        "fused_over_torch_speed_attention_dropout_0.1": faster(
            "fused_attention_dropout_0.1", "torch_transformer_encoder_attention_dropout_0.1"),
        "bucketed_over_pad512_tokens_per_second": round(
            results["padding"]["dynamic_bucketed"]["real_tokens_per_second"]
            / results["padding"]["pad_to_512"]["real_tokens_per_second"], 2),
    }
    write_result("speed", {"shape": cfg.to_dict(), "batch_size": BATCH, "timed_steps": STEPS, **results})


if __name__ == "__main__":
    main()
