"""The thumbnail codec's encoder: the image averaged over a square grid of cells, one token per cell.

A parameter-free reference tokenizer (issue 23): ``thumbnail`` encoder -> ``fsq`` quantizer ->
``thumbnail`` decoder (bicubic upsampling). Each token is the mean colour (R, G, B) of a cell, and FSQ
is the uniform scalar quantiser: channel c has ``levels[c]`` values, so a token costs sum(log2 levels)
bits, exactly the bits of the model it is compared with (18 = 3 x 6 bits for the tiny presets).

Uniform levels: a colour value m in [-1, 1] is level ``round((m + 1) / 2 * (L - 1))`` of 0..L-1, whose
reconstruction is ``2 * level / (L - 1) - 1`` (both ends exact). FSQ rounds ``tanh(z + atanh(o / h)) * h -
o`` (:mod:`tokenizer_zoo.quantizers.fsq`), so the encoder emits the z that this bound maps to the wanted
continuous level; FSQ's rounding then picks the nearest uniform level, and its indices are the usual FSQ
token ids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.registry import ENCODERS


def grid_side(code_length: int) -> int:
    """The side of the square token grid of ``code_length`` tokens (ValueError when not a square)."""
    side = math.isqrt(code_length)
    if side * side != code_length:
        raise ValueError(f"a thumbnail has a square grid of tokens; code_length={code_length} is not a square")
    return side


def check_levels(levels: list[int]) -> torch.Tensor:
    """The three per-channel level counts as a float tensor (ValueError unless three integers >= 2)."""
    levels = list(levels)
    if len(levels) != 3 or any(not isinstance(n, int) or n < 2 for n in levels):
        raise ValueError(f"a thumbnail needs one level count >= 2 per colour channel (three), got {levels!r}")
    return torch.tensor(levels, dtype=torch.float32)


def code_scale(levels: torch.Tensor) -> torch.Tensor:
    """FSQ's code of integer level i is i / floor(L / 2); its integers start at -floor(L / 2)."""
    return torch.div(levels, 2, rounding_mode="floor")


@ENCODERS.register("thumbnail")
class ThumbnailEncoder(ModelMixin, ConfigMixin):
    """``forward(images (B, 3, H, W) in [-1, 1]) -> z (B, code_length, 3)``: FSQ's pre-bound values of the
    cell means, so that ``fsq`` with the same ``levels`` quantises each mean to its nearest uniform level."""

    @register_to_config
    def __init__(self, image_size: int = 32, code_length: int = 16, levels: list[int] = (64, 64, 64)):
        super().__init__()
        self.side = grid_side(code_length)
        if image_size % self.side:
            raise ValueError(f"image_size {image_size} must be a multiple of the grid side {self.side} "
                             f"(code_length {code_length})")
        self.register_buffer("_levels", check_levels(levels))  # persistent: diffusers saves no empty module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cells = F.adaptive_avg_pool2d(images.float(), self.side).clamp(-1.0, 1.0)
        means = rearrange(cells, "b c h w -> b (h w) c")
        levels = self._levels
        wanted = (means + 1.0) / 2.0 * (levels - 1.0) - code_scale(levels)  # FSQ's integer scale, continuous
        half = (levels - 1.0) * (1 + 1e-3) / 2.0  # FSQ's bound (tokenizer_zoo.quantizers.fsq)
        offset = (levels % 2 == 0).float() / 2.0
        return torch.atanh((wanted + offset) / half) - torch.atanh(offset / half)
