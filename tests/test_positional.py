import math

import torch

from minitx.positional import apply_rope, rope_angles, sinusoidal_table


def test_sinusoidal_table_equals_the_closed_formula():
    max_len, d_model = 50, 16
    table = sinusoidal_table(max_len, d_model)
    assert table.shape == (max_len, d_model)
    for pos in range(max_len):
        for i in range(d_model // 2):
            angle = pos / 10_000 ** (2 * i / d_model)
            assert math.isclose(table[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-5)
            assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-5)


def test_rope_preserves_norms():
    x = torch.randn(2, 3, 20, 8)                      # (B, H, T, Dh)
    cos, sin = rope_angles(20, 8)
    rotated = apply_rope(x, cos, sin)
    assert rotated.shape == x.shape
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    # position 0 is not rotated at all
    torch.testing.assert_close(rotated[:, :, 0], x[:, :, 0])


def test_rope_dot_product_depends_only_on_the_offset():
    head_dim, seq_len = 16, 64
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    cos, sin = rope_angles(seq_len, head_dim)
    # the same q and k placed at every position
    q_at = apply_rope(q.expand(1, 1, seq_len, head_dim), cos, sin)[0, 0]   # (T, Dh)
    k_at = apply_rope(k.expand(1, 1, seq_len, head_dim), cos, sin)[0, 0]   # (T, Dh)
    scores = q_at @ k_at.T                                                  # (T, T): q_m . k_n
    for offset in (-5, 0, 3, 17):
        diagonal = torch.diagonal(scores, offset=-offset)                   # all pairs with m - n = offset
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=1e-4)
    # ...and it really does change with the offset
    assert not torch.isclose(scores[10, 10], scores[10, 3], atol=1e-3)
