"""diffusers' own autoencoders as zoo decoders: the decoding half of an ``AutoencoderKL`` or ``VQModel``.

Codes (B, (image_size / f)^2, C) are laid back on the grid row-major and decoded by diffusers:
``decode(latents).sample`` (AutoencoderKL), ``decode(codes, force_not_quantize=True).sample`` (VQModel:
the zoo's quantizer has already chosen the codebook vectors; the wrapped config's
``lookup_from_codebook`` is set False, its only use being to read that call's input as ids). See
:mod:`tokenizer_zoo.encoders.diffusers_autoencoder`.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.decoders.regression import check_one_pass_inputs
from tokenizer_zoo.encoders.diffusers_autoencoder import half_autoencoder
from tokenizer_zoo.registry import DECODERS


@DECODERS.register("diffusers_autoencoder")
class DiffusersAutoencoderDecoder(ModelMixin, ConfigMixin):
    """Latents (B, (image_size / f)^2, C) -> images (B, 3, image_size, image_size), in one pass, unclamped."""

    is_generative = False

    @register_to_config
    def __init__(self, autoencoder_class: str, autoencoder_config: dict, image_size: int = 256,
                 code_dim: int | None = None, code_length: int | None = None):
        super().__init__()
        if autoencoder_class == "VQModel":
            autoencoder_config = {**autoencoder_config, "lookup_from_codebook": False}
        self.autoencoder = half_autoencoder(self, autoencoder_class, autoencoder_config, image_size, "decoder")

    def forward(self, codes: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | float | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            check_one_pass_inputs(self, codes, x_t, t)
        side = int(self.config.code_length**0.5)
        latents = rearrange(codes, "b (h w) d -> b d h w", h=side, w=side)
        latents = latents.to(self.autoencoder.decoder.conv_in.weight.dtype)
        if self.config.autoencoder_class == "VQModel":
            return self.autoencoder.decode(latents, force_not_quantize=True).sample
        return self.autoencoder.decode(latents).sample
