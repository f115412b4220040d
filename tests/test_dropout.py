"""minitx's dropout, written out, against what dropout must do and against F.dropout."""

import pytest
import torch
import torch.nn.functional as F

from minitx.dropout import Dropout, dropout
from minitx.encoder import SentimentClassifier
from tests.conftest import tiny_config

N = 1_000_000


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_it_keeps_a_share_of_1_minus_p_scaled_by_1_over_1_minus_p_like_f_dropout(p):
    x = torch.full((N,), 2.0)
    ours, theirs = dropout(x, p, training=True), F.dropout(x, p, training=True)
    # a share of a million kept values has a standard deviation under 0.0005: 0.003 is 6 of them
    assert abs((ours != 0).float().mean().item() - (1 - p)) < 0.003
    assert abs((ours != 0).float().mean().item() - (theirs != 0).float().mean().item()) < 0.004
    torch.testing.assert_close(ours[ours != 0], torch.full_like(ours[ours != 0], 2.0 / (1 - p)))
    assert abs(ours.mean().item() - 2.0) < 0.02            # the expected value is unchanged


def test_it_does_nothing_in_evaluation_or_at_p_0_and_drops_everything_at_p_1():
    x = torch.randn(4, 8, 16)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert not dropout(x, 1.0, training=True).any()
    layer = Dropout(0.5)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    assert not torch.equal(layer(x), x)
    assert repr(layer) == "Dropout(p=0.5)"


def test_the_gradient_goes_through_the_kept_values_only_scaled_the_same():
    x = torch.randn(64, 32, requires_grad=True)
    out = dropout(x, 0.25, training=True)
    out.sum().backward()
    kept = out.detach() != 0
    torch.testing.assert_close(x.grad, kept.float() / 0.75)


def test_it_keeps_the_dtype_under_bf16_autocast_and_follows_the_seed():
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    assert dropout(x, 0.3, training=True).dtype == torch.bfloat16
    torch.manual_seed(7)
    first = dropout(torch.ones(1000), 0.3, training=True)
    torch.manual_seed(7)
    assert torch.equal(first, dropout(torch.ones(1000), 0.3, training=True))


def test_the_model_uses_it_everywhere_it_drops():
    model = SentimentClassifier(tiny_config(dropout=0.2))
    assert not [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    ours = [m for m in model.modules() if isinstance(m, Dropout)]
    assert len(ours) >= 4 and all(m.p == 0.2 for m in ours)
    ids = torch.randint(3, 50, (4, 10))
    model.eval()
    assert torch.equal(model(ids), model(ids))              # off in evaluation
    model.train()
    assert not torch.equal(model(ids), model(ids))          # on in training
