"""diffusers' own autoencoders as zoo encoders: the encoding half of an ``AutoencoderKL`` or ``VQModel``.

The component holds the diffusers model itself, built from its config (``autoencoder_config``, saved in
ours), with the other half removed: no code of diffusers is copied, and diffusers computes what it
always computes. Latents leave as the zoo's codes, the grid flattened row-major ``b d h w -> b (h w) d``:

* ``AutoencoderKL`` (the SD, SDXL, SD3 and FLUX VAEs): the mode of the posterior,
  ``encode(x).latent_dist.mode()``, unscaled (``scaling_factor`` and ``shift_factor`` are for diffusion
  models; a tokenizer's decoder takes the latents as they are);
* ``VQModel`` (aMUSEd's VQ, ...): ``encode(x).latents``, the pre-quantisation latents after
  ``quant_conv``; the zoo's ``vq`` quantizer holds the codebook.

Build these from a model with ``TokenizerPipeline.from_diffusers`` (:mod:`tokenizer_zoo.convert.diffusers_models`).
"""

from __future__ import annotations

from typing import Any

import diffusers
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.layers import check_images
from tokenizer_zoo.registry import ENCODERS

HALVES = {"encoder": ("encoder", "quant_conv"), "decoder": ("post_quant_conv", "decoder")}
"""The submodules each half keeps (the same names in AutoencoderKL and VQModel); VQModel's ``quantize``
goes to the zoo's quantizer."""
AUTOENCODER_CLASSES = ("AutoencoderKL", "VQModel")


def code_dim_of(autoencoder_class: str, config: dict[str, Any]) -> int:
    """Channels of the latents the autoencoder's decoder takes."""
    if autoencoder_class == "VQModel":
        return config.get("vq_embed_dim") or config["latent_channels"]
    return config["latent_channels"]


def half_autoencoder(module: ModelMixin, autoencoder_class: str, autoencoder_config: dict[str, Any],
                     image_size: int, half: str) -> ModelMixin:
    """The diffusers model of ``autoencoder_class`` from its config with only ``half`` kept, and the latent grid
    written into ``module``'s config (``code_dim``, ``code_length``)."""
    if autoencoder_class not in AUTOENCODER_CLASSES:
        raise ValueError(f"autoencoder_class {autoencoder_class!r} is not one the zoo wraps: "
                         f"{', '.join(AUTOENCODER_CLASSES)}")
    factor = 2 ** (len(autoencoder_config["block_out_channels"]) - 1)
    if image_size % factor:
        raise ValueError(f"image_size {image_size} is not a multiple of the autoencoder's downsampling factor "
                         f"{factor}; choose another image_size")
    module.register_to_config(code_dim=code_dim_of(autoencoder_class, autoencoder_config),
                              code_length=(image_size // factor) ** 2)
    model = getattr(diffusers, autoencoder_class).from_config(autoencoder_config)
    for name, _ in list(model.named_children()):
        if name not in HALVES[half]:
            setattr(model, name, None)
    return model


@ENCODERS.register("diffusers_autoencoder")
class DiffusersAutoencoderEncoder(ModelMixin, ConfigMixin):
    """Images (B, 3, image_size, image_size) in [-1, 1] -> latents (B, (image_size / f)^2, latent channels)."""

    @register_to_config
    def __init__(self, autoencoder_class: str, autoencoder_config: dict, image_size: int = 256,
                 code_dim: int | None = None, code_length: int | None = None):
        super().__init__()
        self.autoencoder = half_autoencoder(self, autoencoder_class, autoencoder_config, image_size, "encoder")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            check_images(images, 1, self.autoencoder.config.in_channels)
        output = self.autoencoder.encode(images.to(self.autoencoder.encoder.conv_in.weight.dtype))
        latents = output.latent_dist.mode() if self.config.autoencoder_class == "AutoencoderKL" else output.latents
        return rearrange(latents, "b d h w -> b (h w) d")
