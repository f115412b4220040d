"""Direct logit attribution and the contribution graph: the parts add up to the model's own numbers, on
random models, on SmolLM2 and on a model built by hand where one head copies the answer."""

from __future__ import annotations

import json

import pytest
import torch

from minitx import contribution_graph as graphs
from minitx.attribution import attribute, explainable, promoted_tokens, record
from minitx.config import ModelConfig
from minitx.contribution_graph import Node, contribution_graph, proximity
from minitx.decoder import CausalLM
from minitx.encoder import SentimentClassifier
from tests.pretrained_support import load_smollm2

V, D, ANSWER = 8, 16, 5
TEXT = [ANSWER, 1, 2, 3]                 # the answer token first; the last position must copy it


def copying_model() -> CausalLM:
    """Two layers of small random weights, and in layer 1 head 0 a copy head built by hand: every query
    looks for token ANSWER's key and writes the token it finds back into the stream, twice as large.
    Two query heads share one key/value head (grouped-query attention)."""
    cfg = ModelConfig(task="lm", vocab_size=V, d_model=D, n_heads=2, n_kv_heads=1, n_layers=2, d_ff=8, max_len=16,
                      dropout=0.0, pos_encoding="none", norm="rmsnorm", ffn="swiglu", bias=False,
                      scale_embeddings=False)
    torch.manual_seed(0)
    model = CausalLM(cfg).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.02 * torch.randn_like(parameter))
        for norm in [model.final_norm] + [n for layer in model.layers for n in (layer.attention_norm, layer.ffn_norm)]:
            norm.weight.fill_(1.0)
        model.embedding.weight[:, :V] += torch.eye(V)                  # tokens one-hot in dims 0..7
        copy = model.layers[1].attention                               # head 0: rows/columns 0..7
        copy.q_proj.weight[0, :V] = 40.0                               # every query, the same direction...
        copy.k_proj.weight[0, ANSWER] = 1.0                            # ...matched by the answer's key alone
        copy.v_proj.weight[:, :] = 0.0
        copy.v_proj.weight[:V, :V] = torch.eye(V)                      # the value is the token
        copy.out_proj.weight[:, :D // 2] = 0.0
        copy.out_proj.weight[:V, :V] = 2.0 * torch.eye(V)              # written back, twice as large
    return model


def random_lm(**changes) -> CausalLM:
    settings = dict(task="lm", vocab_size=50, d_model=32, n_heads=4, n_kv_heads=2, n_layers=3, d_ff=48, max_len=32,
                    dropout=0.0, pos_encoding="rope", norm="rmsnorm", ffn="swiglu")
    torch.manual_seed(1)
    return CausalLM(ModelConfig(**{**settings, **changes})).eval()


@pytest.mark.parametrize("changes", [{}, {"norm": "layernorm", "pos_encoding": "learned", "ffn": "gelu"},
                                     {"ffn": "moe", "bias": False}], ids=["rmsnorm-bias", "layernorm", "moe"])
def test_the_parts_add_up_to_the_models_logit_on_random_models(changes):
    model = random_lm(**changes)
    ids = [3, 14, 15, 9, 26, 5, 35]
    recording = record(model, ids)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    for position in (0, 3, -1):
        for other in (None, 7):
            parts = attribute(model, recording, target=11, position=position, other=other)
            expected = float(logits[position, 11] - (logits[position, 7] if other is not None else 0))
            assert parts.logit == pytest.approx(expected, abs=1e-5)
            assert parts.total == pytest.approx(expected, abs=1e-4)
            assert parts.heads.shape == (3, 4) and parts.feed_forward.shape == (3,)
    assert (parts.attention_bias != 0).any() == model.cfg.bias


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return load_smollm2(tmp_path_factory)


def test_smollm2s_parts_add_up_to_its_paris_logit_and_its_graph_shares_to_one(smollm2):
    model, tokenizer = smollm2.model, smollm2.tokenizer
    ids = tokenizer.encode("The capital of France is").ids
    paris, london = tokenizer.encode(" Paris").ids[0], tokenizer.encode(" London").ids[0]
    recording = record(model, ids)
    assert int(recording.logits[-1].argmax()) == paris
    for other in (None, london):
        parts = attribute(model, recording, paris, other=other)
        assert parts.heads.shape == (30, 9) and parts.feed_forward.shape == (30,)
        assert parts.total == pytest.approx(parts.logit, rel=1e-4, abs=1e-3)
    assert parts.logit > 0                                   # the model prefers Paris to London
    graph = contribution_graph(model, recording)
    assert torch.allclose(graph.attention_node_totals(), torch.ones(30, len(ids)), atol=1e-4)
    assert torch.allclose(graph.ffn + graph.ffn_residual, torch.ones(30, len(ids)), atol=1e-4)
    up, down = promoted_tokens(model, recording, recording.final[-1] - recording.layers[0].residual[-1], -1)
    assert up[0][0] == paris and down[0][1] < 0 < up[0][1]   # the blocks together promote the answer


def test_the_copy_head_tops_the_attribution_and_carries_the_strongest_edge():
    model = copying_model()
    recording = record(model, TEXT)
    assert int(recording.logits[-1].argmax()) == ANSWER
    parts = attribute(model, recording, ANSWER)
    assert parts.top(1)[0][0] == "L1 H0"
    others = parts.heads.abs().clone()
    others[1, 0] = 0
    assert parts.heads[1, 0] > 3 * max(float(others.max()), float(parts.feed_forward.abs().max()), abs(parts.embedding))
    graph = contribution_graph(model, recording)
    between = [edge for edge in graph.edges(position=-1, threshold=0.04)
               if edge.kind == "attention" and edge.source.position != edge.target.position]
    strongest = max(between, key=lambda edge: edge.weight)
    assert (strongest.source, strongest.target, strongest.head) == (Node("stream", 1, 0), Node("mid", 1, 3), 0)
    assert strongest.weight > 0.5
    everything = [edge for position in range(len(TEXT)) for edge in graph._into(Node("mid", 1, position))
                  if edge.kind == "attention" and edge.source.position != edge.target.position]
    assert max(everything, key=lambda edge: edge.weight) == strongest    # the strongest of the whole layer too


def test_proximity_shares_a_sum_by_how_much_closer_each_part_brings_it():
    own, copied = torch.zeros(4), torch.zeros(4)
    own[0], copied[1] = 1.0, 12.0
    close = proximity(own + copied, torch.stack([own, copied, -copied]))
    assert close.tolist() == [1.0, 12.0, 0.0]               # a part that points away brings it no closer
    assert (close / close.sum()).tolist() == pytest.approx([1 / 13, 12 / 13, 0.0])


def test_the_graph_formed_a_few_queries_at_a_time_equals_the_whole_at_once(monkeypatch):
    model = random_lm(bias=True)
    recording = record(model, [3, 14, 15, 9, 26, 5, 35, 8, 9])
    whole = contribution_graph(model, recording)
    monkeypatch.setattr(graphs, "CHUNK_VALUES", 1)          # one query position at a time
    parts = contribution_graph(model, recording)
    for name in ("attention_residual", "heads", "attention_bias", "ffn_residual", "ffn"):
        assert torch.allclose(getattr(whole, name), getattr(parts, name), atol=1e-6), name
    assert torch.allclose(whole.attention_node_totals(), torch.ones(3, 9), atol=1e-5)
    assert (whole.attention_bias > 0).any()


def test_a_higher_threshold_keeps_a_subgraph_that_always_reaches_the_chosen_position():
    model = random_lm()
    graph = contribution_graph(model, record(model, [3, 14, 15, 9, 26, 5]))
    low, high = graph.edges(2, 0.01), graph.edges(2, 0.3)
    assert set(high) <= set(low) and all(edge.weight >= 0.3 for edge in high)
    assert all(edge.target.position <= 2 and edge.source.position <= 2 for edge in low)
    targets = {edge.target for edge in low} | {Node("stream", 3, 2)}
    assert all(edge.target in targets for edge in low)
    assert {edge.source for edge in low} - targets <= {Node("stream", 0, p) for p in range(3)}  # only embeddings start


def test_what_cannot_be_taken_apart_is_said_in_a_sentence():
    assert "post-norm" in explainable(random_lm(norm_position="post"))
    classifier = SentimentClassifier(ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_kv_heads=2))
    assert "classifier" in explainable(classifier)
    with pytest.raises(ValueError, match="empty"):
        record(random_lm(), [])
    recording = record(random_lm(), [1, 2])
    for bad in (dict(target=50), dict(target=1, other=-1), dict(target=1, position=2)):
        with pytest.raises(ValueError, match="outside"):
            attribute(random_lm(), recording, **bad)
    with pytest.raises(ValueError, match="threshold"):
        contribution_graph(random_lm(), recording).edges(threshold=1.5)


def test_the_command_line_prints_attribution_and_graph_and_refuses_bad_input_in_one_line(smollm2, capsys):
    from minitx.inspect_cli import main

    assert main(["attribution", "--prompt", "The capital of France is", "--target", " Paris", "--versus", " London",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["predicted"] == " Paris" and result["sum_of_parts"] == pytest.approx(result["logit"], abs=1e-3)
    assert len(result["parts"]) == 10 and result["parts"][0]["part"].startswith("L")
    assert main(["graph", "--prompt", "The capital of France is", "--threshold", "0.3"]) == 0
    table = capsys.readouterr().out
    assert "edges with a share of at least 0.3" in table and "' is'" in table
    assert main(["attribution", "--prompt", "x", "--target", "Parisians", "--json"]) == 0
    assert "'Parisians' is 2 tokens" in " ".join(json.loads(capsys.readouterr().out)["notes"])
    for bad in (["graph", "--prompt", " "], ["graph", "--prompt", "x", "--threshold", "2"],
                ["attribution", "--prompt", "x", "--target", ""], ["attribution", "--prompt", "x", "--top", "0"],
                ["graph", "--prompt", "x", "--model", "no-such-model"], ["lens", "--prompt", "x"]):
        with pytest.raises(SystemExit) as stop:
            main(bad)
        error = capsys.readouterr().err
        assert stop.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error, (bad, error)


def test_a_prompt_longer_than_the_limit_is_cut_from_the_left_and_said_so():
    from minitx.analysis_input import MAX_TOKENS, analysis_text
    from tests.pretrained_support import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    text = analysis_text(tokenizer, "The capital of France is Paris. " * 40)
    assert len(text.ids) == MAX_TOKENS and "its last 64" in text.notes[0]
    assert text.ids == (tokenizer.start_ids + tokenizer.encode("The capital of France is Paris. " * 40).ids)[-64:]
