"""VQ against brute-force nearest-neighbour search, explicit EMA means and usage counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenizer_zoo.quantizers import VectorQuantizer


def brute_distances(z: torch.Tensor, book: torch.Tensor, distance: str) -> torch.Tensor:
    """(n, c): Euclidean distance, or 1 - cosine similarity, written element by element."""
    diff = z[:, None, :] - book[None, :, :]
    if distance == "l2":
        return diff.pow(2).sum(-1).sqrt()
    dots = (z[:, None, :] * book[None, :, :]).sum(-1)
    return 1 - dots / (z.norm(dim=-1)[:, None] * book.norm(dim=-1)[None, :])


@settings(max_examples=30, deadline=None)
@given(
    distance=st.sampled_from(["l2", "cosine"]),
    size=st.integers(2, 40),
    dim=st.integers(1, 9),
    tokens=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_picks_the_brute_force_nearest_code(distance, size, dim, tokens, seed):
    generator = torch.Generator().manual_seed(seed)
    q = VectorQuantizer(dim=dim, codebook_size=size, distance=distance)
    z = torch.randn(2, tokens, dim, generator=generator, dtype=torch.float64)
    out = q.double()(z)
    dist = brute_distances(z.reshape(-1, dim), q.codebook.detach(), distance)
    chosen = dist.gather(1, out.indices.reshape(-1, 1))[:, 0]
    torch.testing.assert_close(chosen, dist.min(1).values, rtol=1e-9, atol=1e-9)  # ties may pick either


def test_cosine_codes_are_unit_vectors_and_l2_codes_are_the_raw_codebook():
    cos = VectorQuantizer(dim=5, codebook_size=7, distance="cosine")
    assert torch.allclose(cos(torch.randn(2, 3, 5)).quantized.norm(dim=-1), torch.ones(2, 3))
    l2 = VectorQuantizer(dim=5, codebook_size=7)
    out = l2(torch.randn(2, 3, 5))
    assert torch.equal(out.quantized, l2.codebook.detach()[out.indices])


def test_losses_and_codebook_gradient():
    q = VectorQuantizer(dim=4, codebook_size=8, beta=0.25)
    z = torch.randn(3, 6, 4)
    out = q(z)
    mse = (z - q.codebook.detach()[out.indices]).pow(2).mean()
    torch.testing.assert_close(out.losses["commitment"], mse)
    torch.testing.assert_close(out.losses["codebook"], mse)
    torch.testing.assert_close(out.aux_loss, 1.25 * mse)
    out.aux_loss.backward()
    unused = torch.ones(8, dtype=torch.bool)
    unused[out.indices.unique()] = False
    assert q.codebook.grad[unused].abs().sum() == 0 and q.codebook.grad[~unused].abs().sum() > 0


def test_ema_with_zero_decay_moves_used_codes_to_the_mean_of_their_tokens():
    q = VectorQuantizer(dim=3, codebook_size=6, ema_decay=0.0, ema_epsilon=1e-12)
    assert not list(q.parameters())  # the codebook is not trained by the optimiser
    z = torch.randn(4, 10, 3, dtype=torch.float64)
    q.double().train()
    before = q.codebook.clone()
    out = q(z)
    assert torch.equal(out.quantized, before[out.indices])  # the codes looked up, before the update
    assert "codebook" not in out.losses
    flat, idx = z.reshape(-1, 3), out.indices.reshape(-1)
    for code in range(6):
        members = flat[idx == code]
        if len(members):
            torch.testing.assert_close(q.codebook[code], members.mean(0), rtol=1e-9, atol=1e-9)
        else:
            assert q.codebook[code].abs().max() < 1e-6  # Laplace smoothing keeps unused codes finite
    q.eval()
    after_training = q.codebook.clone()
    q(z)
    assert torch.equal(q.codebook, after_training) and not torch.equal(before, after_training)  # eval: frozen


def test_ema_decay_blends_old_and_new_statistics():
    q = VectorQuantizer(dim=2, codebook_size=2, ema_decay=0.75).double().train()
    q.codebook.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    q.ema_sums.copy_(q.codebook)
    z = torch.tensor([[[-3.0, 1.0], [-5.0, 1.0], [2.0, 0.0]]], dtype=torch.float64)
    q(z)
    # counts: 0.75 * 1 + 0.25 * (2, 1); sums: 0.75 * old + 0.25 * (sum of members)
    counts = torch.tensor([1.25, 1.0], dtype=torch.float64)
    sums = 0.75 * torch.tensor([[-1.0, 0.0], [1.0, 0.0]]) + 0.25 * torch.tensor([[-8.0, 2.0], [2.0, 0.0]])
    total, eps = counts.sum(), 1e-5
    expected = sums / ((counts + eps) / (total + 2 * eps) * total)[:, None]
    torch.testing.assert_close(q.codebook, expected.double(), rtol=1e-9, atol=1e-9)


def test_codebook_usage_in_the_batch_and_running():
    q = VectorQuantizer(dim=2, codebook_size=4)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
    first = q(torch.tensor([[[2.0, 0.1], [3.0, -0.2]]]))  # both -> code 0
    assert float(first.losses["codebook_usage"]) == 0.25 and q.codebook_usage() == 0.25
    second = q(torch.tensor([[[-2.0, 0.1], [0.1, 5.0], [0.0, 4.0]]]))  # codes 1, 2
    assert float(second.losses["codebook_usage"]) == 0.5 and q.codebook_usage() == 0.75
    q.reset_usage()
    assert q.codebook_usage() == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distance="dot"), "unknown distance 'dot'"),
        (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\)"),
        (dict(codebook_size=1), "codebook_size >= 2"),
    ],
)
def test_bad_configurations_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VectorQuantizer(**{"dim": 4, "codebook_size": 8, **kwargs})
