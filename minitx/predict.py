"""Ask a trained model about a review: the probability it is positive, and which tokens drove it.

Attribution is integrated gradients (Sundararajan et al., 2017), gradient x
input done properly. Take the score "positive logit minus negative logit".
Start from the review with every word replaced by [UNK] (the token the model
reads for a word it does not know; [CLS] and the positions stay) and slide
each token's embedding to its real one; along the way, take the gradient of
the score with respect to each token's input and average it; multiply by
how far the embedding moved. The token scores then add up to how far the
score moved from the all-[UNK] review to the real one, so they read as shares
of the decision: positive values pushed towards positive, negative ones
towards negative. (A zero-vector start would not do: layer norm of a zero
vector jumps, and RoPE models have no position code to keep it off zero.)

Why not plain gradient x input (the gradient at the real input only): the
trained Quick model, 100% sure that "A wonderful film, moving and funny. I
loved it." is positive, had a slightly negative gradient x input on every
token, "wonderful" included. A confident model sits on a plateau where the
local gradient says little; the path average does not have that problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import truncate
from .encoder import SentimentClassifier
from .tokenizer import CLS_ID, UNK, UNK_ID, Tokenizer

METHOD = "integrated gradients"
STEPS = 16                 # points on the path from blanked-out to real; error falls as 1/STEPS**2


@dataclass
class Prediction:
    p_positive: float
    tokens: list[str]              # what the model saw: [CLS] and the kept tokens
    attributions: list[float]      # one per token; > 0 pushed towards positive
    n_tokens_in_text: int          # before truncation
    method: str = METHOD

    @property
    def truncated(self) -> bool:
        return self.n_tokens_in_text > len(self.tokens) - 1

    @property
    def all_unknown(self) -> bool:
        """Every token the model read is [UNK]: it knows none of the words (emoji, another script)."""
        return all(token == UNK for token in self.tokens[1:])


def encode_review(tokenizer: Tokenizer, text: str, max_len: int,
                  truncation: str = "head_tail") -> tuple[list[int], list[str], int]:
    """[CLS] plus the tokens a model of max_len keeps, their strings, and the untruncated count."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the review is empty: type a few words.")
    encoded = tokenizer.encode(text)
    if not encoded.ids:
        raise ValueError("the tokenizer found no tokens in this text.")
    kept = truncate(range(len(encoded.ids)), max_len - 1, truncation)
    ids = [CLS_ID] + [encoded.ids[i] for i in kept]
    tokens = ["[CLS]"] + [encoded.tokens[i] for i in kept]
    return ids, tokens, len(encoded.ids)


def predict(model: SentimentClassifier, tokenizer: Tokenizer, text: str,
            truncation: str = "head_tail", steps: int = STEPS) -> Prediction:
    """P(positive) for one review and an integrated-gradients attribution for each token it kept."""
    if steps < 1:
        raise ValueError(f"integrated gradients needs at least 1 step, not {steps}.")
    ids, tokens, n_tokens = encode_review(tokenizer, text, model.cfg.max_len, truncation)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids_t = torch.tensor([ids], device=device)                                 # (1, T)
    mask = ids_t != model.cfg.pad_id                                          # (1, T)
    blank_t = torch.full_like(ids_t, UNK_ID)
    blank_t[:, 0] = CLS_ID                                                    # (1, T): [CLS] [UNK] [UNK] ...
    with torch.no_grad():
        x = model.embed(ids_t)                                                # (1, T, D): tokens + positions
        blank = model.embed(blank_t)                                          # (1, T, D): [UNK]s + positions
        p_positive = model.run_embeddings(x, mask).logits.float().softmax(-1)[0, -1].item()
    # midpoints of `steps` equal slices of the straight path from the all-[UNK] review to the real one
    alphas = (torch.arange(steps, device=device, dtype=x.dtype) + 0.5) / steps    # (S,)
    path = blank + alphas[:, None, None] * (x - blank)                         # (S, T, D)
    with torch.enable_grad():
        path.requires_grad_(True)
        logits = model.run_embeddings(path, mask.expand(steps, -1)).logits     # (S, C)
        score = (logits[:, -1] - logits[:, 0]).sum()   # positive minus negative, every point
        (gradient,) = torch.autograd.grad(score, path)                         # (S, T, D)
    model.train(was_training)
    attributions = (gradient.mean(0) * (x - blank)[0]).sum(-1)                 # (T,); [CLS] gets 0
    return Prediction(p_positive, tokens, attributions.detach().cpu().tolist(), n_tokens)
