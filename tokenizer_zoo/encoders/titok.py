"""TiTok's 1-D ViT encoder (bytedance/1d-tokenizer, ``TiTokEncoder``), as a zoo encoder.

Patches (conv, kernel = stride = patch) flattened row-major, then the sequence
[class token, patches, learned latent tokens] with positional embeddings, ``ln_pre``, pre-norm ViT
blocks and ``ln_post`` on the latent tokens, and a 1x1 conv to ``code_dim`` channels per latent token.

Recorded switches for the release: ``input_range="unit"`` (the release reads images in [0, 1], so
the zoo's [-1, 1] input is mapped to (x + 1) / 2 first), ``legacy_reshape=True`` (the released
models *reshape* the (B, N, W) latents to (B, W, N, 1) before the 1x1 conv, reinterpreting memory,
where a permute would be the natural layout).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange, repeat
from torch import nn

from tokenizer_zoo.layers import check_images
from tokenizer_zoo.layers.vit import add_titok_trunk, run_titok_trunk
from tokenizer_zoo.registry import ENCODERS

INPUT_RANGES = ("signed", "unit")
RELEASED_SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}
"""TiTok's ViT size names -> (width, num_layers, num_heads), as its ``TiTokEncoder`` / ``TiTokDecoder`` look them up."""


@ENCODERS.register("titok")
class TiTokEncoder(ModelMixin, ConfigMixin):
    """Images (B, C, image_size, image_size) in [-1, 1] -> codes (B, code_length, code_dim)."""

    @register_to_config
    def __init__(self, image_size: int = 256, patch_size: int = 16, width: int = 1024, num_layers: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, code_length: int = 32, code_dim: int = 12,
                 in_channels: int = 3, input_range: str = "signed", legacy_reshape: bool = False):
        super().__init__()
        if image_size % patch_size or input_range not in INPUT_RANGES:
            raise ValueError(f"TiTokEncoder needs image_size divisible by patch_size (got {image_size}, {patch_size}) "
                             f"and input_range in {INPUT_RANGES} (got {input_range!r})")
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.latent_tokens = nn.Parameter(width**-0.5 * torch.randn(code_length, width))
        add_titok_trunk(self, self.grid, width, num_layers, num_heads, code_length, mlp_ratio)
        self.conv_out = nn.Conv2d(width, code_dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        config = self.config
        check_images(images, config.patch_size, config.in_channels)
        if tuple(images.shape[-2:]) != (config.image_size,) * 2:
            raise ValueError(f"TiTokEncoder was built for {config.image_size}x{config.image_size} images, got "
                             f"{tuple(images.shape[-2:])}; resize the images")
        images = images.to(self.patch_embed.weight.dtype)
        if config.input_range == "unit":
            images = (images + 1) / 2
        patches = rearrange(self.patch_embed(images), "b w h v -> b (h v) w")
        batch = images.shape[0]
        cls = repeat(self.class_embedding, "one w -> b one w", b=batch)
        latents = repeat(self.latent_tokens + self.latent_token_positional_embedding, "n w -> b n w", b=batch)
        x = torch.cat([torch.cat([cls, patches], dim=1) + self.positional_embedding, latents], dim=1)
        latents = run_titok_trunk(self, x)[:, 1 + self.grid**2:]
        if config.legacy_reshape:  # the release's raw reinterpretation of (B, N, W) memory as (B, W, N, 1)
            grid = latents.reshape(batch, config.width, config.code_length, 1)
        else:
            grid = rearrange(latents, "b n w -> b w n 1")
        return rearrange(self.conv_out(grid), "b d n 1 -> b n d")
