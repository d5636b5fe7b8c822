"""Splitting tokenizer tokens into sub-tokens that a generative model predicts one by one.

A token of the zoo is ``G`` indices of ``V`` values each (LFQ with d bits in groups of k:
G = d / k, V = 2**k; FSQ and VQ: G = 1, V = the codebook size), so one token takes
``V ** G`` values. :class:`SubTokenSplit` writes that value in a mixed radix with ``M`` digits
whose radices multiply to exactly ``V ** G``, so every sequence of sub-tokens is a valid token and
the split is a bijection. Radices are as equal as the prime factors allow: 18-bit LFQ tokens in
M = 2 sub-tokens take 512 values each (9 bits); FSQ with levels (8, 5, 5, 5) (1000 values) takes
radices (25, 40).

    split = SubTokenSplit(index_vocab_size=512, index_groups=2, num_sub_tokens=2)
    sub = split.split(indices)       # (b, s, g) -> (b, s * m), digit j of token i at i * m + j
    indices = split.merge(sub)       # and back

Axes: b images, s tokens per image, g indices per token, m sub-tokens per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from einops import rearrange

MAX_VALUES = 2**62  # int64 arithmetic on token values stays exact below this


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` with multiplicity, by trial division (largest first)."""
    factors, divisor = [], 2
    while divisor * divisor <= n:
        while n % divisor == 0:
            factors.append(divisor)
            n //= divisor
        divisor += 1
    if n > 1:
        factors.append(n)
    return sorted(factors, reverse=True)


def balanced_radices(values: int, parts: int) -> list[int]:
    """``parts`` integers, all > 1, whose product is exactly ``values``, as equal as possible
    (largest prime factors first, each to the currently smallest part; returned largest first)."""
    factors = prime_factors(values)
    if len(factors) < parts:
        raise ValueError(
            f"a token with {values} values = {' x '.join(map(str, factors)) or '1'} cannot be split into {parts} "
            f"sub-tokens of more than one value each; choose num_sub_tokens <= {len(factors)}"
        )
    radices = [1] * parts
    for factor in factors:
        radices[radices.index(min(radices))] *= factor
    return sorted(radices, reverse=True)


@dataclass(frozen=True)
class SubTokenSplit:
    """A bijection between tokens of ``index_groups`` indices (each ``< index_vocab_size``) and
    ``num_sub_tokens`` sub-tokens (digit ``j`` ``< radices[j]``, most significant first)."""

    index_vocab_size: int
    index_groups: int = 1
    num_sub_tokens: int = 1

    def __post_init__(self):
        if self.index_vocab_size < 2 or self.index_groups < 1 or self.num_sub_tokens < 1:
            raise ValueError(f"need index_vocab_size >= 2, index_groups >= 1 and num_sub_tokens >= 1, got {self}")
        if self.token_values >= MAX_VALUES:
            raise ValueError(f"tokens of {self.token_values} values do not fit int64 arithmetic; "
                             "use a quantizer with fewer bits per token")
        self.radices  # noqa: B018 - validate the split now, not at first use

    @property
    def token_values(self) -> int:
        return self.index_vocab_size**self.index_groups

    @cached_property
    def radices(self) -> list[int]:
        return balanced_radices(self.token_values, self.num_sub_tokens)

    @property
    def sub_vocab_size(self) -> int:
        """The largest radix: one embedding table of this size serves every sub-token position."""
        return self.radices[0]

    def _weights(self, sizes: list[int], device) -> torch.Tensor:
        """Place values of mixed-radix digits with radices ``sizes`` (most significant first)."""
        places = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
        return torch.tensor(places, dtype=torch.int64, device=device)

    def split(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices (b, s) or (b, s, g) -> sub-tokens (b, s * m)."""
        if indices.is_floating_point():
            raise TypeError(f"token indices must be integers, got {indices.dtype}")
        grouped = indices.long() if indices.dim() == 3 else indices.long()[..., None]
        if grouped.dim() != 3 or grouped.shape[-1] != self.index_groups:
            raise ValueError(f"expected token indices (b, s) or (b, s, {self.index_groups}), got {tuple(indices.shape)}")
        if grouped.numel() and (grouped.min() < 0 or grouped.max() >= self.index_vocab_size):
            raise ValueError(f"token indices must lie in [0, {self.index_vocab_size}), got "
                             f"[{int(grouped.min())}, {int(grouped.max())}]")
        values = (grouped * self._weights([self.index_vocab_size] * self.index_groups, grouped.device)).sum(-1)
        places = self._weights(self.radices, values.device)
        digits = (values[..., None] // places) % torch.tensor(self.radices, device=values.device)
        return rearrange(digits, "b s m -> b (s m)")

    def merge(self, sub_tokens: torch.Tensor, grouped: bool | None = None) -> torch.Tensor:
        """Sub-tokens (b, s * m) -> token indices (b, s, g), or (b, s) when ``index_groups == 1``
        (``grouped=True`` keeps the g axis)."""
        radices = torch.tensor(self.radices, device=sub_tokens.device)
        digits = rearrange(sub_tokens.long(), "b (s m) -> b s m", m=self.num_sub_tokens)
        if (digits < 0).any() or (digits >= radices).any():
            raise ValueError(f"sub-tokens out of range: digit j must lie in [0, radices[j]) with radices {self.radices}")
        values = (digits * self._weights(self.radices, digits.device)).sum(-1)
        index_places = self._weights([self.index_vocab_size] * self.index_groups, values.device)
        indices = (values[..., None] // index_places) % self.index_vocab_size
        keep_groups = self.index_groups > 1 if grouped is None else grouped
        return indices if keep_groups else indices[..., 0]
