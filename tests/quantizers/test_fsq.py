"""FSQ: the index map is a bijection onto the level grid, rounding picks the nearest grid value."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tokenizer_zoo.quantizers import FSQuantizer

LEVEL_SETS = [[3, 4, 5], [2, 2, 2, 2], [8, 5, 5, 5], [7], [2, 3], [4, 4, 4], [8, 8, 8, 5, 5, 5]]


def grid(levels: int) -> list[float]:
    """The normalised float32 values of one channel: integers -floor(L/2).. divided by floor(L/2)."""
    half = levels // 2
    return torch.tensor([(i - half) / half for i in range(levels)], dtype=torch.float32).tolist()


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_index_map_is_a_bijection_onto_the_level_grid(levels):
    q = FSQuantizer(levels=levels)
    every = torch.arange(math.prod(levels))[None]  # (1, N)
    codes = q.indices_to_codes(every)[0]
    as_tuples = [tuple(c) for c in codes.tolist()]
    assert len(set(as_tuples)) == len(as_tuples) == q.vocab_size  # injective
    assert set(as_tuples) == set(itertools.product(*map(grid, levels)))  # onto the grid
    assert torch.equal(q.codes_to_indices(codes[None]), every)  # and back


def test_mixed_radix_puts_the_first_channel_least_significant():
    q = FSQuantizer(levels=[3, 4])
    # digits (d0, d1) -> index d0 + 3 * d1; code = (digit - L//2) / (L//2)
    assert q.indices_to_codes(torch.tensor([[1, 3, 11]])).tolist() == [[[0.0, -1.0], [-1.0, -0.5], [1.0, 0.5]]]


@pytest.mark.parametrize("levels", [[2, 3, 4, 5, 7, 8]], ids=str)
def test_forward_reaches_every_level_and_rounds_to_the_nearest(levels):
    q = FSQuantizer(levels=levels)
    sweep = torch.linspace(-8, 8, 4001)
    z = sweep[None, :, None].expand(1, -1, len(levels)).contiguous()
    out = q(z)
    for channel, n in enumerate(levels):
        values = sorted(set(out.quantized[0, :, channel].tolist()))
        assert values == pytest.approx(grid(n)), f"L={n}"
        assert torch.all(out.quantized[0, 1:, channel] >= out.quantized[0, :-1, channel])  # monotone in z
    pre = q.prequantize(z)
    step = 1 / torch.tensor([n // 2 for n in levels], dtype=torch.float32)
    assert torch.all((out.quantized - pre).abs() <= step / 2 + 1e-6)  # nearest grid value
    assert pre.abs().max() <= 1 + 1e-3


def test_bits_per_token_of_the_paper_ablation_levels():
    assert FSQuantizer(levels=[8, 5, 5, 5]).bits_per_token == pytest.approx(3 + 3 * math.log2(5))
    assert FSQuantizer(levels=[8, 5, 5, 5]).vocab_size == 1000


@pytest.mark.parametrize("levels", [[], [1, 4], [3, 2.5]], ids=str)
def test_bad_levels_are_rejected(levels):
    with pytest.raises(ValueError, match="integer levels >= 2"):
        FSQuantizer(levels=levels)
