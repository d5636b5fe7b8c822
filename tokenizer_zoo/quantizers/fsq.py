"""Finite scalar quantisation (FSQ, Mentzer et al. 2023): channel i is rounded to one of L_i levels.

Axes: b batch, s tokens, d channels (one per level count).

Bound: with h = (L-1)(1+1e-3)/2 and offset o = 1/2 for even L (0 for odd), the channel becomes
tanh(z + atanh(o/h)) * h - o, whose rounding takes exactly L integer values: -(L-1)/2..(L-1)/2 for
odd L, -L/2..L/2-1 for even L (the half offset). Codes are those integers divided by floor(L/2),
so they lie in [-1, 1]. Rounding passes gradients straight through to the bounded value.

Indices: mixed radix with the FIRST channel least significant,
index = sum_i digit_i * prod_{j<i} L_j, digit_i = integer_i + floor(L_i/2) in [0, L_i).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from tokenizer_zoo.outputs import QuantizerOutput
from tokenizer_zoo.quantizers._checks import check_codes, check_indices
from tokenizer_zoo.registry import QUANTIZERS


@QUANTIZERS.register("fsq")
class FSQuantizer(ModelMixin, ConfigMixin):
    """FSQ with per-channel ``levels`` (e.g. [8, 5, 5, 5]); code dim = len(levels). No parameters, no loss."""

    @register_to_config
    def __init__(self, levels: list[int]):
        super().__init__()
        levels = list(levels)
        if not levels or any(not isinstance(n, int) or n < 2 for n in levels):
            raise ValueError(f"FSQuantizer needs a non-empty list of integer levels >= 2, got {levels!r}.")
        if sum(math.log2(n) for n in levels) > 62:
            raise ValueError(f"levels {levels} give more than 2^62 codes, which int64 indices cannot hold.")
        self.register_buffer("_levels", torch.tensor(levels))  # persistent: diffusers saves no empty module
        self.register_buffer("_basis", torch.tensor([math.prod(levels[:i]) for i in range(len(levels))]), persistent=False)

    @property
    def dim(self) -> int:
        return len(self.config.levels)

    @property
    def bits_per_token(self) -> float:
        return float(sum(math.log2(n) for n in self.config.levels))

    @property
    def vocab_size(self) -> int:
        return math.prod(self.config.levels)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        levels = self._levels.to(z.dtype)
        half = (levels - 1) * (1 + 1e-3) / 2
        offset = (self._levels % 2 == 0).to(z.dtype) / 2
        return torch.tanh(z + torch.atanh(offset / half)) * half - offset

    def prequantize(self, z: torch.Tensor) -> torch.Tensor:
        """The differentiable map before rounding: the tanh bound, on the codes' [-1, 1] scale."""
        return self._bound(z) / (self._levels // 2).to(z.dtype)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_codes(z, self.dim, type(self).__name__)
        integers = torch.round(self._bound(z))
        codes = integers / (self._levels // 2).to(z.dtype)
        pre = self.prequantize(z)
        quantized = codes + (pre - pre.detach())
        indices = ((integers.long() + self._levels // 2) * self._basis).sum(-1)
        return QuantizerOutput(quantized, indices, z.new_zeros(()), {})

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, S, d) codes on the level grid -> (B, S) int64 indices (inverse of :meth:`indices_to_codes`)."""
        digits = torch.round(codes * (self._levels // 2)).long() + self._levels // 2
        return (digits * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, S) int64 -> (B, S, d) codes in [-1, 1] (float32)."""
        check_indices(indices, (), self.vocab_size, type(self).__name__)
        digits = indices[..., None] // self._basis % self._levels
        return (digits - self._levels // 2).float() / (self._levels // 2)
