"""The head finder on a model whose heads are built by hand, and the logit lens against the model's own logits."""

import pytest
import torch

from minitx.config import ModelConfig
from minitx.decoder import CausalLM
from minitx.heads import (find_heads, first_layer_with, first_token_score, induction_score, logit_lens,
                          previous_token_score, repeated_random_tokens)

V, P = 16, 32                  # vocabulary; positions
TOK, POS, PREV = 0, V, V + P    # where each subspace of the residual stream starts
D, HEAD = 2 * V + P, (2 * V + P) // 2
BIG = 60.0


def built_model() -> CausalLM:
    """Two layers, two heads each, every weight set by hand. The residual stream holds the token
    (one-hot, dims TOK..), the position (one-hot, dims POS..) and, written by layer 0, the previous
    token (dims PREV..):

        layer 0, head 0   previous-token head: position t's query matches position t - 1's key;
                          it copies that token into PREV
        layer 0, head 1   does nothing (zero weights: attention spread evenly, nothing written)
        layer 1, head 0   induction head: the query is the current token, each key the token
                          before it (PREV), so it attends to the token after the last occurrence
        layer 1, head 1   attention sink: every query matches position 0's key alone
    """
    cfg = ModelConfig(task="lm", vocab_size=V, d_model=D, n_heads=2, n_kv_heads=2, n_layers=2, d_ff=4,
                      max_len=P, dropout=0.0, pos_encoding="learned", norm="rmsnorm", ffn="relu",
                      bias=False, scale_embeddings=False)
    model = CausalLM(cfg).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for layer in model.layers:
            layer.attention_norm.weight.fill_(1.0)
            layer.ffn_norm.weight.fill_(1.0)            # the feed-forward's weights stay 0: it adds nothing
        model.final_norm.weight.fill_(1.0)
        model.embedding.weight[:, TOK:TOK + V] = torch.eye(V)
        model.positional.table.weight[:, POS:POS + P] = torch.eye(P)
        first, second = model.layers[0].attention, model.layers[1].attention
        for t in range(1, P):                           # 0.0: query at t is the position t - 1
            first.q_proj.weight[t - 1, POS + t] = BIG
        first.k_proj.weight[:P, POS:POS + P] = torch.eye(P)
        first.v_proj.weight[:V, TOK:TOK + V] = torch.eye(V)
        first.out_proj.weight[PREV:PREV + V, :V] = torch.eye(V)
        second.q_proj.weight[:V, TOK:TOK + V] = BIG * torch.eye(V)          # 1.0: this token...
        second.k_proj.weight[:V, PREV:PREV + V] = torch.eye(V)              # ...where it came before
        second.q_proj.weight[HEAD, TOK:TOK + V] = BIG                       # 1.1: every query the same
        second.k_proj.weight[HEAD, POS] = 1.0                               # ...matching position 0 alone
    return model


def test_each_built_head_tops_its_own_score():
    model = built_model()
    text = [3, 7, 1, 9, 4, 12, 5, 2, 8, 11, 6, 10]
    scores = find_heads(model, text, n_random=8, low=0, high=V, seed=0)
    assert scores.top("previous token", 1)[0][:2] == (0, 0)
    assert scores.top("induction", 1)[0][:2] == (1, 0)
    assert scores.top("first token", 1)[0][:2] == (1, 1)
    assert scores.previous_token[0, 0] > 0.9 and scores.first_token[1, 1] > 0.9
    assert scores.induction[1, 0] > 0.5 > scores.induction[0, 0]
    assert scores.induction_ids[1:9] == scores.induction_ids[9:]             # the random tokens, twice


def test_scores_read_the_right_cells_of_a_map():
    T = 6
    previous = torch.diag(torch.ones(T - 1), -1)
    previous[0, 0] = 1.0
    sink = torch.zeros(T, T)
    sink[:, 0] = 1.0
    maps = torch.stack([previous, sink])[None]                              # (1, 2, T, T)
    assert previous_token_score(maps)[0].tolist() == pytest.approx([1.0, 1 / 5])   # the sink's t = 1 is both
    assert first_token_score(maps)[0].tolist() == pytest.approx([1 / 5, 1.0])
    period = 3                                   # tokens a b c a b c: from t = 3, 4, 5 to t - 2
    induction = torch.zeros(T, T)
    for t in range(period, T):
        induction[t, t - period + 1] = 1.0
    assert induction_score(induction[None, None], period).item() == 1.0
    with pytest.raises(ValueError, match="at least 2 tokens"):
        induction_score(induction[None, None], 5)
    assert repeated_random_tokens(4, 5, 9, seed=1, start=[0])[:1] == [0]


def test_the_logit_lens_ends_at_the_models_own_prediction():
    torch.manual_seed(0)
    model = CausalLM(ModelConfig(task="lm", vocab_size=50, d_model=32, n_heads=4, n_kv_heads=2, n_layers=3,
                                 d_ff=64, max_len=32, dropout=0.0, pos_encoding="rope", norm="rmsnorm",
                                 ffn="swiglu")).eval()
    ids = torch.randint(3, 50, (10,)).tolist()
    top, probs = logit_lens(model, ids, k=3)
    assert top.shape == (3, 10, 3) and probs.shape == (3, 10, 3)
    with torch.inference_mode():
        final = model(torch.tensor([ids])).logits[0].softmax(-1)                # (T, V)
    assert torch.equal(top[-1, :, 0], final.argmax(-1))
    torch.testing.assert_close(probs[-1, :, 0], final.max(-1).values, atol=1e-5, rtol=0)
    assert (probs[..., 0] >= probs[..., 1]).all()


def test_the_first_layer_with_the_answer_is_the_start_of_its_last_run():
    column = torch.tensor([[4], [7], [4], [7], [7]])[:, None, :]           # (L, T = 1, k = 1)
    assert first_layer_with(column, 0, 7) == 3 and first_layer_with(column, 0, 4) is None
    assert first_layer_with(torch.full((3, 1, 1), 9), 0, 9) == 0
