"""The thumbnail codec's decoder: quantised cell colours upsampled bicubically to the image size.

See :mod:`tokenizer_zoo.encoders.thumbnail`. Upsampling is ``F.interpolate(mode="bicubic",
align_corners=False)`` (Keys' cubic kernel with a = -0.75, edge pixels repeated), clamped to [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.encoders.thumbnail import check_levels, code_scale, grid_side
from tokenizer_zoo.registry import DECODERS


@DECODERS.register("thumbnail")
class ThumbnailDecoder(ModelMixin, ConfigMixin):
    """``forward(codes (B, code_length, 3)) -> images (B, 3, image_size, image_size)`` in [-1, 1]."""

    is_generative = False

    @register_to_config
    def __init__(self, image_size: int = 32, code_length: int = 16, levels: list[int] = (64, 64, 64)):
        super().__init__()
        self.side = grid_side(code_length)
        self.register_buffer("_levels", check_levels(levels))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        expected = (self.config.code_length, 3)
        if not isinstance(codes, torch.Tensor) or codes.ndim != 3 or tuple(codes.shape[1:]) != expected:
            got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"ThumbnailDecoder expects codes of shape (B, {expected[0]}, 3) (one colour per "
                             f"cell), got {got}; give it the codes of the fsq quantizer of its preset")
        levels = self._levels
        level = codes.float() * code_scale(levels) + code_scale(levels)  # 0 .. L-1
        colours = 2.0 * level / (levels - 1.0) - 1.0
        cells = rearrange(colours, "b (h w) c -> b c h w", h=self.side)
        size = self.config.image_size
        return F.interpolate(cells, size=(size, size), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)
