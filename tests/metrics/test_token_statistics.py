"""Token statistics against a brute-force numpy computation, for (B, S) and (B, S, G) ids."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.metrics.helpers import stream
from tokenizer_zoo.metrics import TokenStatistics
from tokenizer_zoo.quantizers.fsq import FSQuantizer
from tokenizer_zoo.quantizers.lfq import LFQuantizer
from tokenizer_zoo.quantizers.vq import VectorQuantizer


def _brute_force(batches, vocab_size, bits_per_token):
    """The four statistics by counting every id with numpy, from all batches at once."""
    ids = np.concatenate([indices.numpy().reshape(-1) for indices, _ in batches])
    tokens = sum(indices.shape[0] * indices.shape[1] for indices, _ in batches)
    pixels = sum(indices.shape[0] * size[0] * size[1] for indices, size in batches)
    values, counts = np.unique(ids, return_counts=True)
    probabilities = counts / counts.sum()
    entropy = -sum(p * math.log2(p) for p in probabilities)
    return {
        "bpp": tokens * bits_per_token / pixels,
        "codebook_usage": len(values) / vocab_size,
        "entropy_bits": entropy,
        "perplexity": 2**entropy,
    }


def _assert_matches(result, expected):
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name


@settings(max_examples=30, deadline=None)
@given(
    vocab_bits=st.integers(1, 6),
    groups=st.sampled_from([None, 1, 3]),
    batch_sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    tokens=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_streamed_statistics_match_brute_force(vocab_bits, groups, batch_sizes, tokens, seed):
    vocab_size = 2**vocab_bits
    generator = torch.Generator().manual_seed(seed)
    trailing = () if groups is None else (groups,)
    # a skewed distribution, so usage and entropy are not trivially maximal
    weights = torch.rand(vocab_size, generator=generator) ** 4
    batches = []
    for size in batch_sizes:
        count = size * tokens * (groups or 1)
        ids = torch.multinomial(weights, count, replacement=True, generator=generator)
        batches.append((ids.reshape(size, tokens, *trailing), (16, 8 * size)))
    expected = _brute_force(batches, vocab_size, vocab_bits * (groups or 1))
    _assert_matches(stream(TokenStatistics(vocab_size), batches), expected)


def test_explicit_bits_per_token_is_per_token_position():
    indices = torch.tensor([[[0, 1], [2, 3]]])  # one image, two tokens of two groups
    stats = TokenStatistics(4, bits_per_token=5.0)
    stats.update(indices, (2, 5))
    assert stats.compute()["bpp"].item() == pytest.approx(2 * 5 / 10)


@pytest.mark.parametrize(
    "quantizer",
    [LFQuantizer(dim=12, bits_per_group=4), FSQuantizer(levels=[8, 5, 5]), VectorQuantizer(dim=4, codebook_size=16)],
    ids=["lfq", "fsq", "vq"],
)
def test_for_quantizer_counts_the_quantizer_bit_rate(quantizer):
    codes = torch.randn(3, 7, quantizer.dim)
    indices = quantizer(codes).indices
    stats = TokenStatistics.for_quantizer(quantizer)
    stats.update(indices, (32, 32))
    result = stats.compute()
    assert result["bpp"].item() == pytest.approx(7 * quantizer.bits_per_token / 1024)
    _assert_matches(result, _brute_force([(indices, (32, 32))], quantizer.vocab_size, quantizer.bits_per_token))


def test_uniform_ids_have_full_usage_and_maximal_entropy():
    stats = TokenStatistics(8)
    stats.update(torch.arange(16).reshape(2, 8) % 8, (4, 4))
    result = stats.compute()
    assert result["codebook_usage"].item() == 1.0
    assert result["entropy_bits"].item() == pytest.approx(3.0)
    assert result["perplexity"].item() == pytest.approx(8.0)
