"""Sub-token split and merge: a bijection for every quantizer's ids, radices multiplying to the vocabulary."""

import itertools
import math

import pytest
import torch

from tokenizer_zoo.generation import SubTokenSplit
from tokenizer_zoo.generation.sub_tokens import balanced_radices, prime_factors
from tokenizer_zoo.registry import QUANTIZERS

# (quantizer name, kwargs, code dim, sub-tokens per token, expected radices)
CASES = {
    "lfq 18 bits as 2 x 9": ("lfq", {"dim": 18, "bits_per_group": 9}, 18, 2, [512, 512]),
    "lfq 18 bits in one group as 3 x 6": ("lfq", {"dim": 18, "bits_per_group": 18}, 18, 3, [64, 64, 64]),
    "lfq 12 bits as 1": ("lfq", {"dim": 12, "bits_per_group": 6}, 12, 1, [4096]),
    "fsq 8-5-5-5 as 2": ("fsq", {"levels": [8, 5, 5, 5]}, 4, 2, [40, 25]),
    "vq 96 codes as 2": ("vq", {"dim": 4, "codebook_size": 96}, 4, 2, [12, 8]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_and_merge_round_trip_real_quantizer_ids(case):
    name, kwargs, dim, parts, radices = CASES[case]
    torch.manual_seed(0)
    quantizer = QUANTIZERS.build(name, **kwargs)
    indices = quantizer(torch.randn(6, 5, dim)).indices
    groups = indices.shape[-1] if indices.dim() == 3 else 1
    split = SubTokenSplit(int(quantizer.vocab_size), groups, parts)
    assert split.radices == radices and math.prod(radices) == int(quantizer.vocab_size) ** groups
    sub = split.split(indices)
    assert sub.shape == (6, 5 * parts)
    digits = sub.view(6, 5, parts)
    assert (digits >= 0).all() and (digits < torch.tensor(radices)).all()
    assert torch.equal(split.merge(sub, grouped=indices.dim() == 3), indices)


def test_the_split_is_a_bijection_over_every_token():
    split = SubTokenSplit(index_vocab_size=12, index_groups=2, num_sub_tokens=3)  # 144 = 6 * 6 * 4
    tokens = torch.tensor(list(itertools.product(range(12), repeat=2)))[None]  # (1, 144, 2)
    sub = split.split(tokens)
    as_tuples = {tuple(row) for row in sub.view(144, 3).tolist()}
    assert as_tuples == set(itertools.product(*(range(r) for r in split.radices)))  # onto, hence one-to-one
    # the value is read most significant group first, then written most significant digit first
    value = tokens[0, :, 0] * 12 + tokens[0, :, 1]
    expected = torch.stack([value // 24, (value // 4) % 6, value % 4], dim=1)
    assert split.radices == [6, 6, 4] and torch.equal(sub.view(144, 3), expected)
    assert torch.equal(split.merge(sub), tokens)


def test_radices_are_exact_and_balanced():
    assert prime_factors(360) == [5, 3, 3, 2, 2, 2]
    for values, parts in [(2**18, 2), (1000, 2), (1000, 3), (360, 3), (7 * 1024, 2)]:
        radices = balanced_radices(values, parts)
        assert math.prod(radices) == values and len(radices) == parts and min(radices) > 1
    assert balanced_radices(1000, 3) == [10, 10, 10]


def test_impossible_splits_and_bad_ids_are_refused():
    with pytest.raises(ValueError, match="num_sub_tokens <= 1"):
        SubTokenSplit(101, 1, 2)  # a prime vocabulary has no two-digit split
    split = SubTokenSplit(512, 2, 2)
    with pytest.raises(ValueError, match=r"\(b, s\) or \(b, s, 2\)"):
        split.split(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 512\)"):
        split.split(torch.full((2, 3, 2), 512))
    with pytest.raises(TypeError, match="integers"):
        split.split(torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="out of range"):
        split.merge(torch.full((1, 4), 512))
