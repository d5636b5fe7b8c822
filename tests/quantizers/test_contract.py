"""The quantizer contract, checked for every registered quantizer (plugins included)."""

from __future__ import annotations

import math

import pytest
import torch

import tokenizer_zoo.quantizers  # noqa: F401  (registers the built-ins)
from tokenizer_zoo.quantizers import NoBitRateError
from tokenizer_zoo.registry import QUANTIZERS, RegistryError

# Tiny configurations per registered name; a registered quantizer without one fails loudly.
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

CASES = [
    pytest.param(name, i, id=f"{name}-{i}") for name in QUANTIZERS.names() for i in range(len(TINY.get(name, [None])))
]


def build(name: str, i: int):
    if name not in TINY:
        pytest.fail(f"registered quantizer {name!r} has no tiny configuration: add one to TINY in {__file__}")
    return QUANTIZERS.build(name, **TINY[name][i])


def codes_for(q, batch: int = 3, tokens: int = 5) -> torch.Tensor:
    return torch.randn(batch, tokens, q.dim)


def public_config(q) -> dict:
    return {k: v for k, v in q.config.items() if not k.startswith("_")}


def is_discrete(q) -> bool:
    try:
        q.bits_per_token
    except NoBitRateError:
        return False
    return True


def test_every_registered_quantizer_has_a_tiny_config():
    missing = sorted(set(QUANTIZERS.names()) - set(TINY))
    assert not missing, f"add tiny configurations to TINY for {missing}"
    assert {"lfq", "fsq", "vq", "continuous"} <= set(QUANTIZERS.names())


def test_unknown_name_gives_the_registry_error():
    with pytest.raises(RegistryError, match="unknown quantizer 'lfqq'.*Did you mean 'lfq'"):
        QUANTIZERS.build("lfqq", dim=4)


@pytest.mark.parametrize("name, i", CASES)
def test_shapes_and_indices_to_codes_equals_quantized(name, i):
    q = build(name, i).eval()
    z = codes_for(q)
    out = q(z)
    assert out.quantized.shape == z.shape and out.quantized.dtype == z.dtype
    assert out.aux_loss.ndim == 0
    if not is_discrete(q):
        assert out.indices is None
        with pytest.raises(NoBitRateError, match="no token ids"):
            q.indices_to_codes(torch.zeros(3, 5, dtype=torch.long))
        return
    assert out.indices.dtype == torch.int64 and out.indices.shape[:2] == z.shape[:2] and out.indices.ndim in (2, 3)
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < q.vocab_size
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
def test_save_pretrained_from_pretrained_round_trip(name, i, tmp_path):
    q = build(name, i)
    q.train()(codes_for(q, batch=8))  # a training step changes state where there is any (EMA codebooks)
    q.eval()
    q.save_pretrained(tmp_path)
    loaded = type(q).from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(q)
    assert q.state_dict().keys() == loaded.state_dict().keys()
    for key, value in q.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    z = codes_for(q)
    a, b = q(z), loaded(z)
    assert torch.equal(a.quantized, b.quantized)
    assert (a.indices is None and b.indices is None) or torch.equal(a.indices, b.indices)
    assert torch.equal(a.aux_loss, b.aux_loss)
    assert a.losses.keys() == b.losses.keys() and all(torch.equal(a.losses[n], b.losses[n]) for n in a.losses)


@pytest.mark.parametrize("name, i", CASES)
def test_losses_are_finite_scalars_and_detached(name, i):
    q = build(name, i)
    z = codes_for(q).requires_grad_()
    for training in (True, False):
        out = q.train(training)(z)
        assert torch.isfinite(out.aux_loss) and out.aux_loss.ndim == 0
        for part, value in out.losses.items():
            assert value.ndim == 0 and torch.isfinite(value) and not value.requires_grad, part
    if out.aux_loss.requires_grad:
        out.aux_loss.backward()
        assert torch.isfinite(z.grad).all()


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
    indices = q(codes_for(q)).indices
    positions = indices.shape[2] if indices.ndim == 3 else 1
    assert q.bits_per_token == pytest.approx(positions * math.log2(q.vocab_size))


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
