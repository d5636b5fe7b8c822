"""What the built-in quantizers (and the BSQ plugin) promise beyond the conformance kit: exact codes,
straight-through gradients equal to ``prequantize``'s, bit rates from the config, clear errors for bad input."""

from __future__ import annotations

import math

import pytest
import torch

import tokenizer_zoo.quantizers  # noqa: F401  (registers the built-ins)
from tokenizer_zoo.quantizers import NoBitRateError
from tokenizer_zoo.registry import QUANTIZERS, RegistryError
from tokenizer_zoo.testing.quantizer_conformance import is_discrete

# Tiny configurations of the core's quantizers and the BSQ plugin (the kit runs some: test_conformance.py).
TINY: dict[str, list[dict]] = {
    "lfq": [dict(dim=8, bits_per_group=4), dict(dim=6, bits_per_group=3, temperature=0.5)],
    "fsq": [dict(levels=[3, 4, 5]), dict(levels=[2, 2, 2, 2])],
    "vq": [
        dict(dim=6, codebook_size=16),
        dict(dim=6, codebook_size=16, distance="cosine"),
        dict(dim=4, codebook_size=8, ema_decay=0.9),
        dict(dim=4, codebook_size=8, distance="cosine", ema_decay=0.5),
    ],
    "continuous": [dict(dim=5), dict(dim=5, noise_sync_prob=0.5, noise_sync_max=0.8), dict(dim=5, layer_norm=False)],
    "bsq": [dict(dim=8, bits_per_group=4)],
}

# Bits per token, computed from the configuration independently of the classes.
EXPECTED_BITS = {
    "lfq": lambda kw: kw["dim"],
    "bsq": lambda kw: kw["dim"],
    "fsq": lambda kw: sum(math.log2(n) for n in kw["levels"]),
    "vq": lambda kw: math.log2(kw["codebook_size"]),
}

CASES = [pytest.param(name, i, id=f"{name}-{i}") for name, configs in TINY.items() for i in range(len(configs))]


def build(name: str, i: int):
    return QUANTIZERS.build(name, **TINY[name][i])


def codes_for(q, batch: int = 3, tokens: int = 5) -> torch.Tensor:
    return torch.randn(batch, tokens, q.dim)


def test_unknown_name_gives_the_registry_error():
    with pytest.raises(RegistryError, match="unknown quantizer 'lfqq'.*Did you mean 'lfq'"):
        QUANTIZERS.build("lfqq", dim=4)


@pytest.mark.parametrize("name, i", CASES)
def test_indices_to_codes_equals_quantized_exactly(name, i):
    q = build(name, i).eval()
    z = codes_for(q)
    out = q(z)
    if not is_discrete(q):
        assert out.indices is None
        with pytest.raises(NoBitRateError, match="no token ids"):
            q.indices_to_codes(torch.zeros(3, 5, dtype=torch.long))
        return
    assert torch.equal(q.indices_to_codes(out.indices), out.quantized)
    assert not torch.allclose(out.quantized, q.prequantize(z))  # it really rounds


@pytest.mark.parametrize("name, i", CASES)
def test_rounding_passes_gradients_straight_through(name, i):
    q = build(name, i).eval()
    z = codes_for(q).requires_grad_()
    weight = torch.randn(z.shape)
    (through_quantizer,) = torch.autograd.grad((q(z).quantized * weight).sum(), z)
    (through_prequantize,) = torch.autograd.grad((q.prequantize(z) * weight).sum(), z)
    assert through_quantizer.abs().sum() > 0
    torch.testing.assert_close(through_quantizer, through_prequantize, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, i", CASES)
def test_bits_per_token(name, i):
    q = build(name, i)
    if name == "continuous":
        with pytest.raises(NoBitRateError, match="no bit rate"):
            q.bits_per_token
        with pytest.raises(NoBitRateError):
            q.vocab_size
        return
    assert isinstance(q.bits_per_token, float)
    assert q.bits_per_token == pytest.approx(EXPECTED_BITS[name](TINY[name][i]))


@pytest.mark.parametrize("name, i", CASES)
def test_bad_codes_give_clear_errors(name, i):
    q = build(name, i)
    z = codes_for(q)
    with pytest.raises(ValueError, match=rf"built for {q.dim} channels.*dim={q.dim + 1}"):
        q(torch.randn(3, 5, q.dim + 1))
    with pytest.raises(ValueError, match=r"shape \(B, S, .*rearrange"):
        q(z[0])
    with pytest.raises(TypeError, match=r"floating-point.*z\.float\(\)"):
        q(z.long())
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = z.clone()
        broken[1, 2, 0] = bad
        with pytest.raises(ValueError, match="NaN or inf.*learning rate"):
            q(broken)


@pytest.mark.parametrize("name, i", CASES)
def test_bad_indices_give_clear_errors(name, i):
    q = build(name, i)
    if not is_discrete(q):
        return  # covered in test_shapes_and_indices_to_codes_equals_quantized
    good = q.eval()(codes_for(q)).indices
    with pytest.raises(TypeError, match=r"integer token ids.*indices\.long\(\)"):
        q.indices_to_codes(good.float())
    for value in (-1, q.vocab_size):
        bad = good.clone()
        bad.view(-1)[3] = value
        with pytest.raises(ValueError, match=rf"vocabulary is \[0, {q.vocab_size - 1}\]"):
            q.indices_to_codes(bad)
    with pytest.raises(ValueError, match="ids of shape"):
        q.indices_to_codes(good[..., None])
