import math

import torch

from tokenizer_zoo.layers import IDENTITY, AdaLNModulation, ShiftScaleGate, TimestepEmbedder, sinusoidal_embedding


def test_sinusoidal_embedding_values():
    t = torch.tensor([0.0, 0.5])
    emb = sinusoidal_embedding(t, 8, time_factor=1000.0)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    freq1 = math.exp(-math.log(10_000.0) / 4)
    torch.testing.assert_close(emb[1, 1], torch.tensor(math.cos(500.0 * freq1)))
    torch.testing.assert_close(emb[1, 5], torch.tensor(math.sin(500.0 * freq1)))
    assert sinusoidal_embedding(t, 7).shape == (2, 7)


def test_timestep_embedder_shape_and_layout():
    embedder = TimestepEmbedder(48)
    assert embedder(torch.rand(3)).shape == (3, 48)
    assert [tuple(p.shape) for p in embedder.parameters()] == [(48, 256), (48,), (48, 48), (48,)]


def test_adaln_zero_chunks_and_shapes():
    mod = AdaLNModulation(8, 6, zero_chunks=(2, 5))
    chunks = mod(torch.randn(3, 8))
    assert len(chunks) == 6 and all(c.shape == (3, 1, 8) for c in chunks)
    assert torch.equal(chunks[2], torch.zeros(3, 1, 8)) and torch.equal(chunks[5], torch.zeros(3, 1, 8))
    assert not torch.equal(chunks[0], torch.zeros(3, 1, 8))
    assert mod.linear.weight[16:24].abs().sum() == 0 and mod.linear.weight[:16].abs().sum() > 0


def test_shift_scale_gate():
    x = torch.randn(2, 4, 8)
    assert torch.equal(IDENTITY.modulate(x), x) and torch.equal(IDENTITY.gated(x), x)
    shift, scale, gate = torch.randn(3, 2, 1, 8).unbind(0)
    mod = ShiftScaleGate(shift, scale, gate)
    torch.testing.assert_close(mod.modulate(x), x * (1 + scale) + shift)
    torch.testing.assert_close(mod.gated(x), x * gate)
