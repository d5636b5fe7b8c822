"""CNN decoder of the VQGAN family, built from diffusers' autoencoder blocks."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder
from einops import rearrange

from tokenizer_zoo.decoders.regression import check_one_pass_inputs
from tokenizer_zoo.encoders.cnn import latent_projection, setup_latent_grid, vae_block_kwargs
from tokenizer_zoo.registry import DECODERS


@DECODERS.register("cnn")
class CNNDecoder(ModelMixin, ConfigMixin):
    """Codes (B, code_length, code_dim) -> images (B, C, image_size, image_size), in one pass.

    The mirror of :class:`~tokenizer_zoo.encoders.cnn.CNNEncoder` (give the same
    ``block_out_channels``, in encoder order): the codes are laid back on the (image_size / f)^2 grid
    row-major (``b (h w) d -> b d h w``), then diffusers' VAE ``Decoder`` (3x3 conv in, mid block
    with self-attention when ``mid_block_attention``, ``len(block_out_channels) - 1`` nearest-x2
    upsamplings with ``layers_per_block + 1`` ResNet blocks per level, GroupNorm + SiLU + 3x3 conv
    to ``out_channels``). The output is not clamped or squashed (as in VQGAN); pipelines clamp to
    [-1, 1] when converting. ``latent_channels`` and ``deepest_level_attention`` are the encoder's
    switches mirrored: a 1x1 ``post_quant_conv`` from ``code_dim`` to ``latent_channels`` first, and
    self-attention after each ResNet block of the deepest level (diffusers' ``AttnUpDecoderBlock2D``).
    """

    _supports_gradient_checkpointing = True
    is_generative = False

    @register_to_config
    def __init__(self, image_size: int = 256, block_out_channels: list[int] = (128, 128, 256, 256, 512),
                 layers_per_block: int = 2, norm_num_groups: int = 32, code_dim: int = 18,
                 code_length: int | None = None, out_channels: int = 3, mid_block_attention: bool = True,
                 latent_channels: int | None = None, deepest_level_attention: bool = False):
        super().__init__()
        self.grid = setup_latent_grid(self, image_size, list(block_out_channels), code_length)
        self.post_quant_conv = latent_projection(code_dim, latent_channels, to_codes=False)
        self.decoder = Decoder(in_channels=latent_channels or code_dim, out_channels=out_channels,
                               **vae_block_kwargs(self.config, "up_block_types", "UpDecoderBlock2D", 0))

    def forward(self, codes: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | float | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():  # compiled graphs skip it: callers validate once
            check_one_pass_inputs(self, codes, x_t, t)
        latents = rearrange(codes, "b (h w) d -> b d h w", h=self.grid, w=self.grid)
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents.to(self.post_quant_conv.weight.dtype))
        return self.decoder(latents.to(self.decoder.conv_in.weight.dtype))
