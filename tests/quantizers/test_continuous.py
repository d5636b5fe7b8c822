"""Continuous codes: LayerNorm, noise synchronisation in training only, no bit rate."""

from __future__ import annotations

import pytest
import torch

from tokenizer_zoo.quantizers import ContinuousQuantizer, NoBitRateError


def layer_norm_by_hand(z: torch.Tensor) -> torch.Tensor:
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    return (z - mean) / torch.sqrt(var + 1e-6)


def test_eval_returns_the_layer_norm_of_the_code():
    q = ContinuousQuantizer(dim=16, noise_sync_prob=1.0).eval()
    z = torch.randn(3, 7, 16) * 5 + 2
    out = q(z)
    torch.testing.assert_close(out.quantized, layer_norm_by_hand(z))
    assert out.indices is None and float(out.aux_loss) == 0.0


@pytest.mark.parametrize("kwargs", [dict(noise_sync_prob=0.0), dict(noise_sync_prob=1.0, noise_sync_max=0.0)])
def test_training_without_noise_is_the_layer_norm(kwargs):
    q = ContinuousQuantizer(dim=8, **kwargs).train()
    z = torch.randn(4, 5, 8)
    torch.testing.assert_close(q(z).quantized, layer_norm_by_hand(z))


def test_noise_synchronisation_mixes_each_sample_with_a_uniform_level():
    q = ContinuousQuantizer(dim=64, noise_sync_prob=1.0, noise_sync_max=1.0).train()
    z = torch.randn(300, 64, 64)
    clean = layer_norm_by_hand(z)
    out = q(z).quantized
    # out = (1 - s) clean + s eps with unit-variance clean and independent eps: E[out * clean] = 1 - s
    s = 1 - (out * clean).mean(dim=(1, 2))
    assert s.min() > -0.05 and s.max() < 1.05
    assert s.min() < 0.05 and s.max() > 0.95 and abs(float(s.mean()) - 0.5) < 0.06  # ~ U(0, 1)


def test_noise_synchronisation_probability_and_maximum():
    q = ContinuousQuantizer(dim=32, noise_sync_prob=0.3, noise_sync_max=0.2).train()
    z = torch.randn(1000, 4, 32)
    clean = layer_norm_by_hand(z)
    out = q(z).quantized
    touched = ~torch.isclose(out, clean, atol=1e-5).all(dim=(1, 2))
    assert 0.24 < float(touched.float().mean()) < 0.36
    s = 1 - (out * clean).mean(dim=(1, 2))
    assert s.max() < 0.2 + 0.1


def test_no_bit_rate_and_no_indices():
    q = ContinuousQuantizer(dim=4)
    with pytest.raises(NoBitRateError, match="continuous codes have no bit rate"):
        q.bits_per_token
    with pytest.raises(NoBitRateError, match="no token ids"):
        q.indices_to_codes(torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize("kwargs", [dict(noise_sync_prob=1.5), dict(noise_sync_max=-0.1), dict(dim=0)])
def test_bad_configurations_are_rejected(kwargs):
    with pytest.raises(ValueError):
        ContinuousQuantizer(**{"dim": 4, **kwargs})


def test_without_layer_norm_the_latents_pass_unchanged():
    """The switch for published continuous autoencoders (diffusers' AutoencoderKL): their decoders take raw latents."""
    z = torch.randn(2, 7, 4) * 3 + 1
    quantizer = ContinuousQuantizer(dim=4, layer_norm=False).eval()
    assert torch.equal(quantizer(z).quantized, z)
