"""LFQ against brute-force references: the full 2^k softmax, explicit bit packing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ._reference import brute_entropy_terms
from tokenizer_zoo.quantizers import LFQuantizer, lfq_entropy_terms

SPEC_EPS = 1e-5


def spec_aux_loss(z: torch.Tensor, k: int, temperature: float, ew: float, cw: float, eps: float) -> torch.Tensor:
    """FLOWMO_SPEC §2 written out: groups of k consecutive channels, full softmax, MSE commitment."""
    per_sample, batch = brute_entropy_terms(z.reshape(-1, k), temperature, eps)
    sign = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
    return ew * (per_sample - batch) + cw * ((z - sign) ** 2).mean()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 7),
    temperature=st.floats(0.05, 3.0),
    scale=st.floats(0.01, 3.0),
    seed=st.integers(0, 2**16),
)
def test_entropy_terms_equal_brute_force_softmax(n, k, temperature, scale, seed):
    x = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    ours = lfq_entropy_terms(x, temperature)
    exact = brute_entropy_terms(x, temperature)
    spec = brute_entropy_terms(x, temperature, eps=SPEC_EPS)
    for mine, ref, ref_spec in zip(ours, exact, spec):
        torch.testing.assert_close(mine, ref, rtol=1e-9, atol=1e-9)
        # log(p + eps) vs log(p): sum_c p_c log(1 + eps/p_c) <= 2^k eps
        assert abs(float(mine - ref_spec)) <= 2**k * SPEC_EPS + 1e-12


def test_entropy_gradient_equals_brute_force_gradient():
    x = torch.randn(30, 5, dtype=torch.float64, requires_grad=True)
    per, batch = lfq_entropy_terms(x, 0.3)
    (ours,) = torch.autograd.grad(per - 2 * batch, x)
    per, batch = brute_entropy_terms(x, 0.3)
    (ref,) = torch.autograd.grad(per - 2 * batch, x)
    torch.testing.assert_close(ours, ref, rtol=1e-8, atol=1e-10)


def test_fourteen_bits_match_brute_force_on_a_small_batch():
    x = torch.randn(12, 14, dtype=torch.float64) * 0.2
    for mine, ref in zip(lfq_entropy_terms(x, 0.1), brute_entropy_terms(x, 0.1)):
        torch.testing.assert_close(mine, ref, rtol=1e-9, atol=1e-9)


def test_fourteen_bits_stay_practical_at_131072_sub_tokens():
    """FlowMo-Hi: 56 channels -> 4 sub-tokens of 14 bits; 128 x 256 tokens -> 131072 sub-tokens."""
    x = torch.randn(131072, 14)
    with torch.no_grad():
        per_sample, batch = lfq_entropy_terms(x, 0.1)
    assert 0 <= float(per_sample) <= 14 * math.log(2) and 0 <= float(batch) <= 14 * math.log(2) + 1e-4
    assert float(batch) > 13 * math.log(2)  # Gaussian inputs spread over nearly every code


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 6)),
    temperature=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_forward_aux_loss_matches_the_spec_formula(shape, temperature, seed):
    b, s, g, k = shape  # batch, tokens, groups per token, bits per group
    z = torch.randn(b, s, g * k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q = LFQuantizer(dim=g * k, bits_per_group=k, temperature=temperature)
    out = q(z)
    exact = spec_aux_loss(z, k, temperature, 0.0025, 0.000625, eps=0.0)
    torch.testing.assert_close(out.aux_loss, exact, rtol=1e-9, atol=1e-12)
    spec = spec_aux_loss(z, k, temperature, 0.0025, 0.000625, eps=SPEC_EPS)
    assert abs(float(out.aux_loss - spec)) <= 0.0025 * 2 * 2**k * SPEC_EPS
    assert out.indices.shape == (b, s, g)
    torch.testing.assert_close(out.losses["commitment"], ((z - z.sign()) ** 2).mean())


def test_sign_convention_and_bit_order():
    q = LFQuantizer(dim=8, bits_per_group=4)
    z = torch.tensor([[[0.5, -1.0, -0.1, 2.0, 0.0, 0.0, 1e-7, -3.0]]])
    out = q(z)
    assert out.quantized.tolist() == [[[1, -1, -1, 1, -1, -1, 1, -1]]]  # x > 0 -> +1, else -1 (0 -> -1)
    assert out.indices.tolist() == [[[0b1001, 0b0010]]]  # first channel of a group = most significant bit


def test_every_index_decodes_to_a_distinct_code_and_back():
    q = LFQuantizer(dim=10, bits_per_group=5)
    indices = torch.stack([torch.arange(32), torch.arange(32).flip(0)], -1)[None]  # (1, 32, 2)
    codes = q.indices_to_codes(indices)
    assert torch.equal(q(codes).indices, indices)
    assert codes.abs().eq(1).all() and len({tuple(c) for c in codes[0].tolist()}) == 32


def test_dim_must_be_a_multiple_of_the_group_size():
    with pytest.raises(ValueError, match="multiple of bits_per_group.*bits_per_group=9"):
        LFQuantizer(dim=18, bits_per_group=4)


def test_release_layout_groups_strided_channels_least_significant_first():
    """The reference release's layout, written out: sub-token j of a token is channels j, j + G, j + 2G, ...,
    and its i-th channel is bit i of the index."""
    k, groups = 4, 3
    z = torch.randn(2, 5, k * groups, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    quantizer = LFQuantizer(dim=k * groups, bits_per_group=k, temperature=0.3,
                            group_layout="interleaved", bit_order="lsb_first")
    out = quantizer(z)
    sub_tokens = torch.stack([z[..., j::groups] for j in range(groups)], dim=2)  # (b, s, g, k)
    weights = 2 ** torch.arange(k)
    assert torch.equal(out.indices, ((sub_tokens > 0).long() * weights).sum(-1))
    per_sample, batch = brute_entropy_terms(sub_tokens.reshape(-1, k), 0.3)
    torch.testing.assert_close(out.losses["per_sample_entropy"], per_sample)
    torch.testing.assert_close(out.losses["batch_entropy"], batch)
    torch.testing.assert_close(quantizer.indices_to_codes(out.indices).double(), out.quantized)
    # the codes do not depend on the layout, the indices do
    default = LFQuantizer(dim=k * groups, bits_per_group=k, temperature=0.3)(z)
    assert torch.equal(default.quantized, out.quantized) and not torch.equal(default.indices, out.indices)


def test_unknown_layouts_are_refused():
    with pytest.raises(ValueError, match="group_layout must be one of"):
        LFQuantizer(dim=18, group_layout="strided")
    with pytest.raises(ValueError, match="bit_order one of"):
        LFQuantizer(dim=18, bit_order="little")
