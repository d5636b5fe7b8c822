import pytest
import torch

from tokenizer_zoo.layers import RotaryEmbedding, apply_rope, default_axes_dims, flowmo_positions, validate_axes_dims


@pytest.mark.parametrize("head_dim,expected", [(64, [8, 28, 28]), (96, [12, 42, 42]), (32, [4, 14, 14])])
def test_default_axes_dims(head_dim, expected):
    assert default_axes_dims(head_dim) == expected


def test_axes_dims_validation():
    with pytest.raises(ValueError, match="rope_axes_dims"):
        default_axes_dims(48)
    assert validate_axes_dims([8, 20, 20], 48) == [8, 20, 20]
    for bad in ([8, 20, 19], [8, 20], [0, 24, 24], [8, 20, 22]):
        with pytest.raises(ValueError):
            validate_axes_dims(bad, 48)


def test_positions():
    code, image = flowmo_positions(3, 2, 3)
    assert code.tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    assert image.shape == (6, 3)
    assert image[4].tolist() == [0, 1, 1] and image[2].tolist() == [0, 0, 2]


def brute_force_rope(x, positions, axes_dims, theta):
    """Complex-number RoPE: channel pair j of axis a is multiplied by exp(i * pos_a * theta^(-2j/dim_a))."""
    out = []
    start = 0
    for axis, dim in enumerate(axes_dims):
        chunk = x[..., start:start + dim].double()
        z = torch.complex(chunk[..., 0::2], chunk[..., 1::2])
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        rotated = z * torch.exp(1j * positions[:, axis, None].double() * freqs)
        out.append(torch.stack([rotated.real, rotated.imag], dim=-1).flatten(-2))
        start += dim
    return torch.cat(out, dim=-1)


def test_matches_complex_brute_force():
    axes = [4, 14, 14]
    rope = RotaryEmbedding(axes, theta=10_000.0)
    positions = torch.randint(0, 40, (7, 3)).float()
    x = torch.randn(2, 3, 7, 32)
    ours = apply_rope(x, rope(positions))
    assert ours.dtype == x.dtype
    torch.testing.assert_close(ours.double(), brute_force_rope(x, positions, axes, 10_000.0), atol=1e-4, rtol=1e-4)


def test_scores_depend_only_on_relative_position_and_norm_is_kept():
    rope = RotaryEmbedding([8, 28, 28])
    q, k = torch.randn(64), torch.randn(64)
    p, r, shift = torch.tensor([[3.0, 5.0, 2.0]]), torch.tensor([[1.0, 9.0, 4.0]]), torch.tensor([[7.0, -2.0, 11.0]])

    def score(pq, pk):
        return (apply_rope(q.view(1, 1, 1, -1), rope(pq)) * apply_rope(k.view(1, 1, 1, -1), rope(pk))).sum()

    torch.testing.assert_close(score(p, r), score(p + shift, r + shift), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(p, r), score(p, r + shift), atol=1e-3)
    rotated = apply_rope(q.view(1, 1, 1, -1), rope(p))
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_rotary_rejects_wrong_positions():
    with pytest.raises(ValueError, match="positions"):
        RotaryEmbedding([8, 28, 28])(torch.zeros(5, 2))
