r"""Mixture of experts: many feed-forward networks, and a router that sends each token to a few.

A dense feed-forward layer runs every token through the same MLP. A mixture of
experts keeps E MLPs (the experts) and a small linear router; each token goes
to its k best-scoring experts only, and their outputs are mixed by the
router's weights. The model holds E times the feed-forward parameters while
each token pays for k experts, not E.

    token x (D)
     -> router: softmax(x W_r)          (E,)  one probability per expert
     -> keep the top k, renormalise     (k,)  e.g. experts 3 and 0, weights 0.7 and 0.3
     -> y = 0.7 * expert_3(x) + 0.3 * expert_0(x)

Left alone, a router tends to send everything to the few experts that won
early. The load-balancing loss of the Switch Transformer (Fedus et al., 2021)
pushes back: E * sum_e f_e * P_e, where f_e is the share of routing choices
that went to expert e and P_e the router's mean probability for e. It is 1 when
the router is uniform and grows as the load piles up; the trainer adds it to
the task's loss with a small weight. Experts here are SwiGLU feed-forwards, as
in Mixtral (Jiang et al., 2024).

Notation: B batch, T tokens, D model size, N = B*T tokens, E experts, k experts per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .feedforward import FeedForward
from .swaps import SwapPoints


def route(probs: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the router's probabilities (N, E): each token's top_k experts, best first (N, k),
    their weights renormalised to sum to 1 (N, k), and the load-balancing loss (a 0-d tensor).

    The loss is Switch Transformer's E * sum_e f_e * P_e: f_e the share of the N * k routing
    choices that went to expert e, P_e the mean probability the router gave e.
    """
    weights, chosen = probs.topk(top_k, dim=-1)                     # (N, k), (N, k)
    weights = weights / weights.sum(-1, keepdim=True)               # (N, k): each row sums to 1
    n_experts = probs.size(-1)
    routed = F.one_hot(chosen, n_experts).sum(1).float().mean(0) / top_k   # (E,): f_e
    aux_loss = n_experts * (routed * probs.mean(0)).sum()                   # (): 1 when even
    return weights, chosen, aux_loss


class MixtureOfExperts(nn.Module):
    """E SwiGLU experts and a linear router; each token is run through its top k experts.

    After every forward pass it keeps, for the trainer and the pages:
    `aux_loss` (the load-balancing loss of that pass) and `choices` (B, T, k), the
    experts each token went to, best first.
    """

    def __init__(self, cfg: ModelConfig, swaps: SwapPoints | None = None):
        super().__init__()
        self.swaps = swaps if swaps is not None else SwapPoints()
        self.n_experts, self.top_k = cfg.n_experts, cfg.experts_per_token
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(cfg, kind="swiglu") for _ in range(cfg.n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.choices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # (B, T, D)
        B, T, D = x.shape
        tokens = x.reshape(B * T, D)                                 # (N, D)
        # 1) the router's probability for every expert, per token
        probs = self.router(tokens).float().softmax(-1)              # (N, E)
        # 2) each token's k best experts and their weights; the load-balancing loss
        weights, chosen, self.aux_loss = self.swaps.get("moe_route", route)(probs, self.top_k)   # (N, k) x2, ()
        weights = weights.to(x.dtype)
        # 3) each expert runs on the tokens routed to it, its output added in with its weight
        out = torch.zeros_like(tokens)                               # (N, D)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)       # which tokens, in which of their k slots
            if token.numel():
                out.index_add_(0, token, weights[token, slot, None] * expert(tokens[token]))
        self.choices = chosen.view(B, T, self.top_k).detach()
        return out.view(B, T, D)                                     # (B, T, D)


def load_balancing_loss(model: nn.Module) -> torch.Tensor | None:
    """The mean load-balancing loss of every mixture-of-experts layer in the model's last
    forward pass, or None if it has none."""
    losses = [m.aux_loss for m in model.modules() if isinstance(m, MixtureOfExperts) and m.aux_loss is not None]
    return torch.stack(losses).mean() if losses else None


def expert_choices(model: nn.Module) -> list[torch.Tensor]:
    """Per mixture-of-experts layer, the experts each token went to in the last forward pass,
    (B, T, k) each, best first: what the pages draw."""
    return [m.choices for m in model.modules() if isinstance(m, MixtureOfExperts) and m.choices is not None]
