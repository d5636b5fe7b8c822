"""Open-MAGVIT2's CNN decoder (TencentARC/SEED-Voken, ``improved_model.Decoder``), as a zoo decoder.

The :class:`~tokenizer_zoo.layers.conv_blocks.ConvUpStack` trunk with an adaptive GroupNorm before
every level (styled by the decoder's own quantised input) and depth-to-space (DCR) x2 upsamplers.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.decoders.regression import check_one_pass_inputs
from tokenizer_zoo.encoders.open_magvit2 import latent_grid
from tokenizer_zoo.layers.conv_blocks import ConvUpStack
from tokenizer_zoo.registry import DECODERS


@DECODERS.register("open_magvit2")
class OpenMagvit2Decoder(ModelMixin, ConfigMixin):
    """Codes (B, code_length, code_dim) -> images (B, C, image_size, image_size) in one pass, unclamped.

    :meth:`render` decodes a latent grid of any size (at least two positions: the adaptive norm takes
    an unbiased variance over them).
    """

    is_generative = False

    @register_to_config
    def __init__(self, image_size: int = 256, channels: int = 128, channel_mult: list[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 4, code_dim: int = 18, code_length: int | None = None,
                 out_channels: int = 3, norm_num_groups: int = 32):
        super().__init__()
        channel_mult = list(channel_mult)
        self.register_to_config(channel_mult=channel_mult)
        self.grid = latent_grid(self, image_size, len(channel_mult), code_length)
        self.trunk = ConvUpStack(code_dim, channels, channel_mult, num_res_blocks, out_channels, norm_num_groups,
                                 shortcut="input", upsampler="depth_to_space", adaptive_norm=True)

    def render(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, code_dim, h, w) latent grid -> images (B, C, h*f, w*f)."""
        if latents.shape[-2] * latents.shape[-1] < 2:
            raise ValueError("the Open-MAGVIT2 decoder needs a latent grid of at least 2 positions (its adaptive "
                             f"GroupNorm takes a variance over them), got {tuple(latents.shape[-2:])}")
        return self.trunk(latents.to(self.trunk.conv_in.weight.dtype))

    def forward(self, codes: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | float | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            check_one_pass_inputs(self, codes, x_t, t)
        return self.render(rearrange(codes, "b (h w) d -> b d h w", h=self.grid, w=self.grid))
