"""Binary Spherical Quantization (BSQ; Zhao, Xiong and Krähenbühl 2024).

Axes: b batch, s tokens, d channels (= bits), g groups per token, k bits per group.

u = z / ||z|| over the d channels, q = sign(u) / sqrt(d) (u > 0 -> +, else -), so q lies on the unit
sphere too; quantized = q with the straight-through gradient of u. Entropy loss: a group of k
channels scores its 2^k codes c in {-1/sqrt(d), +1/sqrt(d)}^k with logits 2 u.c / T, computed exactly
by tokenizer-zoo's factorised LFQ entropy. Commitment: mean (u - q)^2. Indices (B, S, G) use LFQ's
bit order (first channel of a group most significant).

BSQ is LFQ on the sphere, so the class reuses LFQuantizer and changes only the map before rounding
(``prequantize``) and the code magnitude (``code_scale``). It is registered by the entry point in
pyproject.toml, not by the core's decorator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers looks the base classes up here)

from tokenizer_zoo.quantizers.lfq import LFQuantizer


class BSQuantizer(LFQuantizer):
    """BSQ of ``dim`` channels; entropy loss and ids over groups of ``bits_per_group`` bits.

    Arguments (the config) as LFQuantizer: dim, bits_per_group=9, entropy_weight=0.0025,
    commitment_weight=0.000625, temperature=0.1 (on the logits 2 u.c / T of the spherical codes).
    """

    @property
    def code_scale(self) -> float:
        return 1 / math.sqrt(self.config.dim)

    def prequantize(self, z: torch.Tensor) -> torch.Tensor:
        """Projection onto the unit sphere (the differentiable map before rounding)."""
        return F.normalize(z, dim=-1)
