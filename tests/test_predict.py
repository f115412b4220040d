import pytest
import torch

from minitx.encoder import SentimentClassifier
from minitx.predict import encode_review, predict
from minitx.tokenizer import CLS_ID, UNK_ID, Tokenizer
from tests.conftest import tiny_config

TEXTS = ["a great film with great acting", "a bad film, awful and boring", "the plot was fine"] * 5


@pytest.fixture
def tok():
    return Tokenizer.train("word", TEXTS, 40)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("pos", ["sinusoidal", "rope"])
def test_attributions_add_up_to_the_score_change_from_the_blanked_out_review(tok, pooling, pos):
    """Integrated gradients' completeness: sum over tokens = score(review) - score(all [UNK])."""
    torch.manual_seed(0)
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size, pooling=pooling,
                                            pos_encoding=pos, dropout=0.3)).double()
    prediction = predict(model, tok, "a great film but boring", steps=200)
    model.eval()                       # the check below must see what predict saw: no dropout
    ids, _, _ = encode_review(tok, "a great film but boring", model.cfg.max_len)
    ids_t = torch.tensor([ids])
    blank_ids = torch.tensor([[CLS_ID] + [UNK_ID] * (len(ids) - 1)])

    def score(token_ids):
        logits = model(token_ids)
        return (logits[0, -1] - logits[0, 0]).item()

    moved = score(ids_t) - score(blank_ids)
    assert sum(prediction.attributions) == pytest.approx(moved, rel=1e-3, abs=1e-7)   # 200 points
    assert prediction.attributions[0] == 0.0                                  # [CLS] stays put
    assert len(set(round(a, 6) for a in prediction.attributions)) > 1        # not spread evenly
    assert prediction.p_positive == pytest.approx(model(ids_t).softmax(-1)[0, 1].item())


def test_for_a_model_linear_in_its_inputs_it_is_gradient_times_the_input_change(tok):
    """With nothing nonlinear between input and score, every path point has the same gradient:
    integrated gradients is then gradient x (input - start)."""
    torch.manual_seed(0)
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size, n_layers=1, dropout=0.0)).double()
    model.encoder = torch.nn.Identity()
    model.encoder.forward = lambda x, mask, need_weights: (x, [], [])
    ids, _, _ = encode_review(tok, "great film", model.cfg.max_len)
    ids_t = torch.tensor([ids])
    x = model.embed(ids_t).detach().requires_grad_(True)
    logits = model.run_embeddings(x, ids_t != 0).logits
    (gradient,) = torch.autograd.grad(logits[0, -1] - logits[0, 0], x)
    blank = model.embed(torch.tensor([[CLS_ID] + [UNK_ID] * (len(ids) - 1)])).detach()
    expected = (gradient * (x - blank)).sum(-1)[0]
    got = predict(model, tok, "great film", steps=3).attributions
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected)


def test_predict_restores_the_training_mode_and_reports_truncation(tok):
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size, max_len=5))
    model.train()
    prediction = predict(model, tok, "a great film with great acting and a bad plot")
    assert model.training
    assert prediction.tokens[0] == "[CLS]" and len(prediction.tokens) == 5
    assert prediction.truncated and prediction.n_tokens_in_text == 10   # 10 words
    assert len(prediction.attributions) == len(prediction.tokens)
    assert 0.0 <= prediction.p_positive <= 1.0


def test_zero_steps_is_a_clear_error(tok):
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size))
    with pytest.raises(ValueError, match="at least 1 step"):
        predict(model, tok, "great", steps=0)


@pytest.mark.parametrize("text", ["", "   \n", None])
def test_empty_text_is_a_clear_error(tok, text):
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size))
    with pytest.raises(ValueError, match="empty"):
        predict(model, tok, text)
