"""CNN encoder of the VQGAN family, built from diffusers' autoencoder blocks."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Encoder
from einops import rearrange

from tokenizer_zoo.layers import check_images
from tokenizer_zoo.registry import ENCODERS


def setup_latent_grid(module: ModelMixin, image_size: int, block_out_channels: list[int],
                      code_length: int | None) -> int:
    """Side of the latent grid (image_size / 2^(len(block_out_channels) - 1)), checked against ``code_length``.

    Shared by the CNN encoder and decoder: ``code_length`` None means "derive it"; the derived value
    is written into the module's config, so saved configs always state it.
    """
    who = type(module).__name__
    if not block_out_channels:
        raise ValueError(f"{who} needs at least one entry in block_out_channels")
    factor = 2 ** (len(block_out_channels) - 1)
    grid, remainder = divmod(image_size, factor)
    if remainder:
        raise ValueError(f"{who}: image_size {image_size} is not divisible by the downsampling factor {factor} "
                         f"(2^(len(block_out_channels) - 1)); change image_size or block_out_channels")
    if code_length is not None and code_length != grid**2:
        raise ValueError(f"{who}: code_length {code_length} does not match the latent grid {grid}x{grid} = {grid**2} "
                         f"tokens of image_size {image_size} at factor {factor}; pass code_length={grid**2} "
                         f"(or leave it out)")
    module.register_to_config(code_length=grid**2, block_out_channels=list(block_out_channels))
    return grid


def vae_block_kwargs(config, block_types_key: str, block_type: str, deepest: int) -> dict:
    """Arguments for diffusers' VAE ``Encoder`` / ``Decoder`` from a CNN encoder's or decoder's config,
    with ``block_type`` at every level under ``block_types_key`` (``down_block_types`` / ``up_block_types``),
    and its self-attention variant at the deepest level (index ``deepest``) when ``deepest_level_attention``."""
    block_types = [block_type] * len(config.block_out_channels)
    if config.deepest_level_attention:
        block_types[deepest] = f"Attn{block_type}"
    return {"block_out_channels": tuple(config.block_out_channels), "layers_per_block": config.layers_per_block,
            "norm_num_groups": config.norm_num_groups, "mid_block_add_attention": config.mid_block_attention,
            block_types_key: tuple(block_types)}


def latent_projection(code_dim: int, latent_channels: int | None, to_codes: bool) -> torch.nn.Module | None:
    """The 1x1 convolution between the CNN's ``latent_channels`` and the ``code_dim`` codes (VQGAN's
    ``quant_conv`` when ``to_codes``, else ``post_quant_conv``); None when the CNN works at ``code_dim`` itself."""
    if latent_channels is None:
        return None
    channels = (latent_channels, code_dim) if to_codes else (code_dim, latent_channels)
    return torch.nn.Conv2d(*channels, kernel_size=1)


@ENCODERS.register("cnn")
class CNNEncoder(ModelMixin, ConfigMixin):
    """Images (B, C, image_size, image_size) in [-1, 1] -> codes (B, (image_size / f)^2, code_dim).

    diffusers' VAE ``Encoder`` (ResNet blocks, ``len(block_out_channels) - 1`` stride-2
    downsamplings so f = 2^(len - 1), a mid block with self-attention when ``mid_block_attention``,
    GroupNorm with ``norm_num_groups`` groups + SiLU + 3x3 conv to ``code_dim`` channels), then the
    latent grid flattened row-major: ``b d h w -> b (h w) d``. ``code_length`` is derived from the
    grid; given, it must match. Only ``image_size`` x ``image_size`` inputs are accepted, so every
    code sequence has ``code_length`` tokens (what the decoder and the BPP accounting assume).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, image_size: int = 256, block_out_channels: list[int] = (128, 128, 256, 256, 512),
                 layers_per_block: int = 2, norm_num_groups: int = 32, code_dim: int = 18,
                 code_length: int | None = None, in_channels: int = 3, mid_block_attention: bool = True,
                 latent_channels: int | None = None, deepest_level_attention: bool = False):
        super().__init__()
        self.grid = setup_latent_grid(self, image_size, list(block_out_channels), code_length)
        self.encoder = Encoder(in_channels=in_channels, out_channels=latent_channels or code_dim, double_z=False,
                               **vae_block_kwargs(self.config, "down_block_types", "DownEncoderBlock2D", -1))
        self.quant_conv = latent_projection(code_dim, latent_channels, to_codes=True)

    def check_inputs(self, images: torch.Tensor) -> None:
        """Raise a clear error for images that :meth:`forward` cannot take (eager mode only)."""
        config = self.config
        check_images(images, 1, config.in_channels)
        if tuple(images.shape[-2:]) != (config.image_size, config.image_size):
            raise ValueError(f"CNNEncoder was built for {config.image_size}x{config.image_size} images, got "
                             f"{tuple(images.shape[-2:])}; resize the images or build it with another image_size")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():  # compiled graphs skip it: callers validate once
            self.check_inputs(images)
        latents = self.encoder(images.to(self.encoder.conv_in.weight.dtype))
        if self.quant_conv is not None:
            latents = self.quant_conv(latents)
        return rearrange(latents, "b d h w -> b (h w) d")
