"""The language-modelling task: learn to write IMDB reviews, one next token at a time.

The same loop as classification (`minitx.train.loop`), another task. A batch is
B windows of T + 1 tokens from the stream of packed reviews, at random places
(or the stream's fixed blocks); the model reads
the first T and is scored, by cross-entropy, on predicting each next one
(plus, for a mixture-of-experts model, the load-balancing loss times
`moe_loss_weight`). An evaluation scores every token of the validation and
held-out test text in nats per token, bits per character and perplexity, and
writes a short sample from a fixed prompt, so a run shows what the model
wrote as it learned. The model is chosen on validation loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ModelConfig, TrainConfig
from ..data import lm_texts, pack_blocks, token_stream
from ..generate import generate, prompt_ids
from ..metrics import bits_per_char, compressor_bits_per_char, perplexity, unigram_bits_per_char
from ..moe import load_balancing_loss
from ..tokenizer import Tokenizer, cached_tokenizer
from .distributed import Distributed

SAMPLE_PROMPT = "This movie"
SAMPLE_TOKENS = 48
TOKENIZER_REVIEWS = 5_000      # the tokenizer learns its pieces from this many training reviews
EVAL_BATCH = 32


@dataclass
class HeldOutText:
    """Text a model is scored on: its blocks (the last may be shorter), how many tokens are
    predicted in them, and how many characters those tokens spell."""

    blocks: list[torch.Tensor]     # each (<= T + 1,)
    stream: list[int]              # the reviews' tokens end to end, as the blocks cut them
    n_tokens: int
    n_chars: int
    text: str                      # as the model sees it: normalised reviews, one per line
    n_reviews: int


def held_out(tokenizer: Tokenizer, texts: list[str], block_len: int) -> HeldOutText:
    """Reviews packed for scoring. Each review's end-of-review token counts as one character
    (a newline in `text`), so the compressors and the model are scored on the same text."""
    stream = token_stream(tokenizer.encode_batch(texts), tokenizer.eos_id)
    text = "".join(tokenizer.normalize(t) + "\n" for t in texts)
    return HeldOutText(pack_blocks(stream, block_len, keep_tail=True), stream, len(stream) - 1, len(text), text,
                       len(texts))


@torch.inference_mode()
def score(model, text: HeldOutText, device: torch.device, stop=None,
          distributed: Distributed | None = None) -> dict | None:
    """Summed cross-entropy over every predicted token of the text: loss (nats per token), bits per
    character and perplexity. None when a stop request cut it short. Under torchrun each rank
    scores its share of the blocks and the sums are added up."""
    was_training = model.training
    model.eval()
    full = [b for b in text.blocks if len(b) == len(text.blocks[0])]
    groups = [torch.stack(full[i:i + EVAL_BATCH]) for i in range(0, len(full), EVAL_BATCH)]
    groups += [b[None] for b in text.blocks[len(full):]]                     # the shorter tail
    nats = 0.0
    for group in distributed.shard(groups) if distributed else groups:     # (B, T + 1)
        if distributed is None and stop is not None and stop.is_set():
            model.train(was_training)
            return None
        group = group.to(device)
        logits = model(group[:, :-1]).logits.float()                        # (B, T, V)
        nats += F.cross_entropy(logits.flatten(0, 1), group[:, 1:].flatten(), reduction="sum").item()
    model.train(was_training)
    if distributed is not None:
        nats = float(distributed.sum(torch.tensor([nats], dtype=torch.float64))[0])
    return {"loss": nats / max(1, text.n_tokens), "bits_per_char": bits_per_char(nats, text.n_chars),
            "perplexity": perplexity(nats, text.n_tokens)}


def write_sample(model, tokenizer: Tokenizer, prompt: str = SAMPLE_PROMPT, max_new_tokens: int = SAMPLE_TOKENS,
                 temperature: float = 0.8, top_k: int = 40, seed: int = 0) -> str:
    """What the model writes after the prompt (seeded, so samples of one run differ only by
    what the model learnt), ending at the end of a review."""
    out = generate(model, prompt_ids(tokenizer, prompt), max_new_tokens, temperature, top_k, 1.0, seed,
                   eos_id=tokenizer.eos_id)
    return prompt + tokenizer.text_of([t for t in out.new_ids if t != tokenizer.eos_id])


class LanguageModelTask:
    """Next-token prediction on packed IMDB text: what the trainer needs, and what a run reports."""

    evaluate_at_start = True       # the untrained model's score and sample: where the curves begin

    def __init__(self, tokenizer: Tokenizer, train_blocks: torch.Tensor, val: HeldOutText, test: HeldOutText,
                 cfg: TrainConfig, n_train_reviews: int, baselines: dict | None = None):
        self.tokenizer, self.train_blocks, self.val, self.test = tokenizer, train_blocks, val, test
        self.cfg, self.n_train_reviews, self.baselines = cfg, n_train_reviews, baselines or {}
        self.distributed: Distributed | None = None       # set under torchrun: evaluation is sharded

    @classmethod
    def prepare(cls, model_cfg: ModelConfig, train_cfg: TrainConfig, source: str | None = None,
                tokenizer: Tokenizer | None = None) -> "LanguageModelTask":
        """Reviews, a tokenizer with an end-of-review token (or the one given: a continued run's own),
        packed blocks of max_len + 1 tokens, and what the baselines (a unigram model, zlib, bz2, xz)
        need on the test text."""
        texts = lm_texts(train_cfg.train_size, train_cfg.test_size, train_cfg.val_fraction, train_cfg.seed, source)
        tokenizer = tokenizer or cached_tokenizer(train_cfg.tokenizer, texts["train"][:TOKENIZER_REVIEWS],
                                                  train_cfg.vocab_size, train_cfg.lowercase, eos=True)
        train_stream = token_stream(tokenizer.encode_batch(texts["train"]), tokenizer.eos_id)
        blocks = pack_blocks(train_stream, model_cfg.max_len)
        train_blocks = torch.stack(blocks) if blocks else torch.empty(0, model_cfg.max_len + 1, dtype=torch.long)
        val = held_out(tokenizer, texts["val"], model_cfg.max_len)
        test = held_out(tokenizer, texts["test"], model_cfg.max_len)
        baselines = compressor_bits_per_char(test.text)
        if test.n_tokens:
            baselines["unigram"] = unigram_bits_per_char(train_stream, test.stream, tokenizer.vocab_size, test.n_chars)
        return cls(tokenizer, train_blocks, val, test, train_cfg, len(texts["train"]), baselines)

    # -- what the trainer asks ----------------------------------------------------------

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.train_blocks) / batch_size)

    def batches(self, epoch: int, batch_size: int) -> list[torch.Tensor]:
        """An epoch's batches, each (B, T + 1): windows starting anywhere in the training text
        (random_windows; nanoGPT's get_batch), so every token is seen in ever new contexts, or the
        fixed blocks in a shuffled order. As many windows as blocks; seeded by the run's seed and
        the epoch, so a resumed run takes the very same ones."""
        generator = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        count, span = self.train_blocks.shape                                     # blocks, T + 1
        if self.cfg.random_windows and count:
            text = torch.cat([self.train_blocks[:, :-1].flatten(), self.train_blocks[-1, -1:]])   # the blocks' text
            starts = torch.randint(0, len(text) - span + 1, (count,), generator=generator)        # (N,)
            windows = starts[:, None] + torch.arange(span)                                        # (N, T + 1)
            return [text[windows[i:i + batch_size]] for i in range(0, count, batch_size)]
        order = torch.randperm(count, generator=generator)
        return [self.train_blocks[order[i:i + batch_size]] for i in range(0, count, batch_size)]

    def loss(self, model, batch: torch.Tensor, device) -> tuple[torch.Tensor, int]:
        batch = batch.to(device, non_blocking=device.type == "cuda")           # (B, T + 1)
        inputs, targets = batch[:, :-1], batch[:, 1:]                           # (B, T) each
        logits = model(inputs).logits                                           # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        balance = load_balancing_loss(model)
        if balance is not None:
            loss = loss + self.cfg.moe_loss_weight * balance
        return loss, targets.numel()

    def evaluate(self, model, device, stop=None) -> tuple[dict, None] | None:
        metrics = {}
        for name, text in (("val", self.val), ("test", self.test)):
            if text.n_tokens:
                scores = score(model, text, device, stop, self.distributed)
                if scores is None:
                    return None
                metrics.update({f"{name}_{k}": v for k, v in scores.items()})
        metrics["sample"] = write_sample(model, self.tokenizer)
        return metrics, None

    @staticmethod
    def better(event: dict, best: dict | None) -> bool:
        """Lower validation loss. Without validation, the latest."""
        return best is None or "val_loss" not in event or event["val_loss"] < best["val_loss"]

    # -- what a run records and reports -------------------------------------------------

    def recorders(self, model, total_steps: int) -> list:
        return []

    def sizes(self) -> dict:
        return {"train_size": self.n_train_reviews + self.val.n_reviews, "val_size": self.val.n_reviews,
                "test_size": self.test.n_reviews, "test_subset": f"{self.test.n_reviews:,} test reviews, "
                f"{self.test.n_chars:,} characters", "train_tokens": int(self.train_blocks[:, 1:].numel()),
                "test_chars": self.test.n_chars, "test_tokens": self.test.n_tokens}

    def report(self, model, kept) -> dict:
        return {"baselines": self.baselines, "sample": write_sample(model, self.tokenizer)}
