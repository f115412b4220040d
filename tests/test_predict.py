import pytest
import torch

from minitx.encoder import SentimentClassifier
from minitx.predict import encode_review, predict
from minitx.tokenizer import Tokenizer
from tests.conftest import tiny_config

TEXTS = ["a great film with great acting", "a bad film, awful and boring", "the plot was fine"] * 5


@pytest.fixture
def tok():
    return Tokenizer.train("word", TEXTS, 40)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("pos", ["sinusoidal", "rope"])
def test_attribution_is_the_gradient_times_input_checked_by_finite_differences(tok, pooling, pos):
    """Adding e times token t's embedding to its input changes the score by e * attribution_t."""
    torch.manual_seed(0)
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size, pooling=pooling,
                                            pos_encoding=pos, dropout=0.3)).double()
    prediction = predict(model, tok, "a great film but boring")
    model.eval()                       # the check below must see what predict saw: no dropout
    ids, _, _ = encode_review(tok, "a great film but boring", model.cfg.max_len)
    ids_t = torch.tensor([ids])
    x = model.embed(ids_t).detach()                                   # token embedding + position
    token_vectors = model.embedding(ids_t).detach() * model.embed_scale

    def score(scale_token: int, eps: float) -> float:
        scaled = x.clone()
        scaled[0, scale_token] += eps * token_vectors[0, scale_token]
        logits = model.run_embeddings(scaled, ids_t != 0).logits
        return (logits[0, -1] - logits[0, 0]).item()

    eps = 1e-6
    for t in range(len(ids)):
        numeric = (score(t, eps) - score(t, -eps)) / (2 * eps)
        assert prediction.attributions[t] == pytest.approx(numeric, rel=1e-4, abs=1e-7)
    logits = model(ids_t)
    assert prediction.p_positive == pytest.approx(logits.softmax(-1)[0, 1].item())


def test_predict_restores_the_training_mode_and_reports_truncation(tok):
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size, max_len=5))
    model.train()
    prediction = predict(model, tok, "a great film with great acting and a bad plot")
    assert model.training
    assert prediction.tokens[0] == "[CLS]" and len(prediction.tokens) == 5
    assert prediction.truncated and prediction.n_tokens_in_text == 10   # 10 words
    assert len(prediction.attributions) == len(prediction.tokens)
    assert 0.0 <= prediction.p_positive <= 1.0


@pytest.mark.parametrize("text", ["", "   \n", None])
def test_empty_text_is_a_clear_error(tok, text):
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size))
    with pytest.raises(ValueError, match="empty"):
        predict(model, tok, text)
