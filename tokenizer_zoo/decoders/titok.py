"""TiTok's two-stage decoder (bytedance/1d-tokenizer, ``TiTokDecoder`` + MaskGiT-VQGAN's pixel decoder).

Stage 1, a ViT: the codes (B, N, d) are embedded (``decoder_embed`` + latent positions) and appended to
[class token, one ``mask_token`` per patch of the grid] (+ positions); after the blocks, the grid tokens
go through the legacy head ``ffn`` = conv1x1 (W -> 2W), Tanh, conv1x1 (2W -> pixel_codebook_size): logits
over the MaskGiT-VQGAN codes at every grid position. Stage 2: ``softmax(logits)`` mixes the raw
(not normalised) MaskGiT-VQGAN codebook ``pixel_codebook`` (no argmax), and MaskGiT-VQGAN's decoder
(:class:`~tokenizer_zoo.layers.conv_blocks.ConvUpStack` with nearest+conv upsampling and its odd
residual ``h + nin_shortcut(h)``) renders the image.

``output_range="unit"`` records that the release's images are in [0, 1]; they are mapped to the zoo's
[-1, 1] (2y - 1). Outputs are not clamped.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange, repeat
from torch import nn

from tokenizer_zoo.decoders.regression import check_one_pass_inputs
from tokenizer_zoo.layers.conv_blocks import ConvUpStack
from tokenizer_zoo.layers.vit import add_titok_trunk, run_titok_trunk
from tokenizer_zoo.registry import DECODERS

OUTPUT_RANGES = ("signed", "unit")


@DECODERS.register("titok")
class TiTokDecoder(ModelMixin, ConfigMixin):
    """Codes (B, code_length, code_dim) -> images (B, C, image_size, image_size), in one pass."""

    is_generative = False

    @register_to_config
    def __init__(self, image_size: int = 256, patch_size: int = 16, width: int = 1024, num_layers: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, code_length: int = 32, code_dim: int = 12,
                 pixel_codebook_size: int = 1024, pixel_code_dim: int = 256, pixel_channels: int = 128,
                 pixel_channel_mult: list[int] = (1, 1, 2, 2, 4), pixel_num_res_blocks: int = 2,
                 out_channels: int = 3, output_range: str = "signed"):
        super().__init__()
        self.register_to_config(pixel_channel_mult=list(pixel_channel_mult))
        self.grid = image_size // patch_size
        factor = 2 ** (len(pixel_channel_mult) - 1)
        if image_size % patch_size or self.grid * factor != image_size or output_range not in OUTPUT_RANGES:
            raise ValueError(f"TiTokDecoder: the pixel decoder's x{factor} upsampling of "
                             f"the {image_size}/{patch_size} grid must give image_size {image_size} (set "
                             f"pixel_channel_mult or patch_size), and output_range must be in {OUTPUT_RANGES}")
        self.decoder_embed = nn.Linear(code_dim, width)
        self.mask_token = nn.Parameter(width**-0.5 * torch.randn(1, 1, width))
        add_titok_trunk(self, self.grid, width, num_layers, num_heads, code_length, mlp_ratio)
        self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.Tanh(),
                                 nn.Conv2d(2 * width, pixel_codebook_size, 1))
        self.pixel_codebook = nn.Parameter(torch.randn(pixel_codebook_size, pixel_code_dim))
        self.pixel_decoder = ConvUpStack(pixel_code_dim, pixel_channels, list(pixel_channel_mult), pixel_num_res_blocks,
                                         out_channels, shortcut="output", upsampler="nearest_conv")

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Stage 1: codes (B, N, d) -> logits (B, pixel_codebook_size, grid, grid) over the pixel codebook."""
        x = self.decoder_embed(codes.to(self.decoder_embed.weight.dtype))
        x = x + self.latent_token_positional_embedding[: x.shape[1]]
        batch = x.shape[0]
        masks = torch.cat([repeat(self.class_embedding, "one w -> b one w", b=batch),
                           self.mask_token.expand(batch, self.grid**2, -1)], dim=1) + self.positional_embedding
        grid = run_titok_trunk(self, torch.cat([masks, x], dim=1))[:, 1: 1 + self.grid**2]
        return self.ffn(rearrange(grid, "b (h w) c -> b c h w", h=self.grid))

    def pixel_codes(self, logits: torch.Tensor) -> torch.Tensor:
        """Stage 2's input: the softmax(logits)-weighted mix of the pixel codebook, (B, pixel_code_dim, h, w)."""
        return torch.einsum("bkhw,kc->bchw", logits.softmax(dim=1), self.pixel_codebook)

    def forward(self, codes: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | float | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            check_one_pass_inputs(self, codes, x_t, t)
        images = self.pixel_decoder(self.pixel_codes(self.logits(codes)))
        return images * 2 - 1 if self.config.output_range == "unit" else images
