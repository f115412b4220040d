"""Ask a trained model about a review: the probability it is positive, and which tokens drove it.

Attribution is gradient x input: for each token, the dot product of its
(scaled) token embedding with the gradient of the score "positive logit minus
negative logit" with respect to the model's input at that position. It is the
first-order estimate of how much the score would drop if the token's embedding
were taken away (its position code stays: position says nothing about
sentiment). Positive values pushed the review towards positive, negative ones
towards negative. It works for every pooling and attention variant, unlike
"attention paid by the pooled output", which mean pooling does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import truncate
from .encoder import SentimentClassifier
from .tokenizer import CLS_ID, Tokenizer

METHOD = "gradient x input"


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
            truncation: str = "head_tail") -> Prediction:
    """P(positive) for one review and a gradient x input attribution for each token it kept."""
    ids, tokens, n_tokens = encode_review(tokenizer, text, model.cfg.max_len, truncation)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids_t = torch.tensor([ids], device=device)                                # (1, T)
    with torch.enable_grad():
        x = model.embed(ids_t).detach().requires_grad_(True)                  # (1, T, D)
        logits = model.run_embeddings(x, ids_t != model.cfg.pad_id).logits    # (1, C)
        score = logits[0, -1] - logits[0, 0]       # positive minus negative
        (gradient,) = torch.autograd.grad(score, x)                           # (1, T, D)
    model.train(was_training)
    tokens_only = model.embedding(ids_t).detach() * model.embed_scale        # (1, T, D), no position
    attributions = (gradient * tokens_only).sum(-1)[0]                        # (T,)
    p_positive = logits.detach().float().softmax(-1)[0, -1].item()
    return Prediction(p_positive, tokens, attributions.detach().cpu().tolist(), n_tokens)
