"""Open-MAGVIT2's CNN encoder (TencentARC/SEED-Voken, ``improved_model.Encoder``), as a zoo encoder.

Fully convolutional: conv3x3 in (no bias); per level ``num_res_blocks`` ResBlocks to
``channels * channel_mult[i]`` channels and, on every level but the last, a stride-2 conv3x3 with
padding 1 on each side (with bias); ``num_res_blocks`` mid ResBlocks (no attention anywhere);
GroupNorm + SiLU + conv1x1 to ``code_dim``. Downsampling factor f = 2^(len(channel_mult) - 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from tokenizer_zoo.layers import check_images
from tokenizer_zoo.layers.conv_blocks import ResBlock, conv3x3, group_norm
from tokenizer_zoo.registry import ENCODERS


def latent_grid(module: ModelMixin, image_size: int, levels: int, code_length: int | None) -> int:
    """Side of the square latent grid of ``image_size`` at factor 2^(levels - 1); checks ``code_length``
    and writes the derived value into the module's config (shared by the Open-MAGVIT2 encoder and decoder)."""
    factor = 2 ** (levels - 1)
    grid, remainder = divmod(image_size, factor)
    if remainder or (code_length is not None and code_length != grid**2):
        raise ValueError(f"{type(module).__name__}: image_size {image_size} must be a multiple of the factor {factor} "
                         f"(2^(len(channel_mult) - 1)) and code_length the {grid}x{grid} grid's {grid**2} tokens, "
                         f"got code_length={code_length}; leave code_length out to derive it")
    module.register_to_config(code_length=grid**2)
    return grid


@ENCODERS.register("open_magvit2")
class OpenMagvit2Encoder(ModelMixin, ConfigMixin):
    """Images (B, C, H, W) in [-1, 1] -> codes (B, (H/f)(W/f), code_dim), the grid flattened row-major.

    Any H, W divisible by f work (``image_size`` is the nominal size that fixes ``code_length``).
    """

    @register_to_config
    def __init__(self, image_size: int = 256, channels: int = 128, channel_mult: list[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 4, code_dim: int = 18, code_length: int | None = None,
                 in_channels: int = 3, norm_num_groups: int = 32):
        super().__init__()
        channel_mult = list(channel_mult)
        self.register_to_config(channel_mult=channel_mult)
        latent_grid(self, image_size, len(channel_mult), code_length)
        self.factor = 2 ** (len(channel_mult) - 1)
        self.conv_in = conv3x3(in_channels, channels, bias=False)
        self.down = nn.ModuleList()
        width = channels
        for level, mult in enumerate(channel_mult):
            stage = nn.Module()
            stage.block = nn.ModuleList(ResBlock(width if k == 0 else channels * mult, channels * mult, norm_num_groups)
                                        for k in range(num_res_blocks))
            width = channels * mult
            stage.downsample = conv3x3(width, width, stride=2) if level < len(channel_mult) - 1 else None
            self.down.append(stage)
        self.mid = nn.ModuleList(ResBlock(width, width, norm_num_groups) for _ in range(num_res_blocks))
        self.norm_out = group_norm(width, norm_num_groups)
        self.conv_out = nn.Conv2d(width, code_dim, 1)

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the latent grid (B, code_dim, H/f, W/f), before flattening."""
        check_images(images, self.factor, self.config.in_channels)
        h = self.conv_in(images.to(self.conv_in.weight.dtype))
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if stage.downsample is not None:
                h = stage.downsample(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return rearrange(self.latents(images), "b d h w -> b (h w) d")
