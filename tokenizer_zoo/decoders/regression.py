"""One-pass (regression) decoders: codes -> images, no noise, no sampling (TiTok-style baseline).

:class:`RegressionDecoder` is FlowMo's decoder without the diffusion: the same double-stream MMDiT
blocks (unmodulated, since there is no time), with the image stream starting from learned mask
tokens instead of a noisy image. :func:`check_one_pass_inputs` is the input check that every
one-pass decoder of the zoo (this one and the CNN decoder) shares.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from tokenizer_zoo.layers import MMDiTStack, OutputHead, unpatchify
from tokenizer_zoo.registry import DECODERS


def check_one_pass_inputs(decoder: nn.Module, codes: torch.Tensor, x_t, t) -> None:
    """Check ``codes`` is (B, config.code_length, config.code_dim) float and that no diffusion inputs came.

    The decoders' ``forward`` runs it in eager mode only; under ``torch.compile`` callers validate once.
    """
    who = type(decoder).__name__
    if x_t is not None or t is not None:
        raise ValueError(f"{who} decodes in one pass (is_generative=False): call it as decoder(codes), "
                         f"without x_t or t; diffusion decoders such as 'flowmo' take those")
    length, dim = decoder.config.code_length, decoder.config.code_dim
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{who} expects codes as a torch.Tensor of shape (B, {length}, {dim}), "
                        f"got {type(codes).__name__}")
    if codes.ndim != 3 or tuple(codes.shape[1:]) != (length, dim):
        raise ValueError(f"{who} expects codes of shape (B, code_length, code_dim) = (B, {length}, {dim}), got "
                         f"{tuple(codes.shape)}; the encoder, quantizer and decoder configs must agree")
    if not codes.is_floating_point():
        raise TypeError(f"{who} expects floating-point codes, got {codes.dtype}; turn token ids into codes with "
                        f"quantizer.indices_to_codes first")


@DECODERS.register("regression")
class RegressionDecoder(ModelMixin, ConfigMixin):
    """``forward(codes (B, code_length, code_dim)) -> images (B, C, image_size, image_size)``.

    Double-stream MMDiT without time input (no modulation parameters), ``depth`` blocks of width
    ``hidden_size``. Code stream: ``Linear(code_dim, hidden_size)(codes)``. Image stream: one learned
    mask token per patch (``mask_tokens``, (num_patches, hidden_size), initialised N(0, 0.02)), also
    told apart by RoPE (patch (r, c) at (0, r, c), code i at (i, i, i)). Output: LayerNorm + Linear
    to patch channels, unpatchified. The output is not clamped or squashed (train it with a
    regression loss against images in [-1, 1]; pipelines clamp when converting).

    Unlike FlowMo's encoder, the decoder is tied to ``image_size``: it has one mask token per patch.
    """

    _supports_gradient_checkpointing = True
    is_generative = False

    @register_to_config
    def __init__(self, image_size: int = 256, patch_size: int = 4, hidden_size: int = 1152, depth: int = 16,
                 num_heads: int = 12, mlp_ratio: float = 4.0, code_length: int = 256, code_dim: int = 18,
                 in_channels: int = 3, qkv_bias: bool = True, rope_theta: float = 10_000.0,
                 rope_axes_dims: list[int] | None = None):
        super().__init__()
        self.grid, remainder = divmod(image_size, patch_size)
        if remainder:
            raise ValueError(f"image_size {image_size} must be divisible by patch_size {patch_size}; the decoder "
                             f"makes one mask token per patch")
        self.mask_tokens = nn.Parameter(torch.randn(self.grid**2, hidden_size) * 0.02)
        self.code_in = nn.Linear(code_dim, hidden_size)
        self.transformer = MMDiTStack(hidden_size, depth, num_heads, mlp_ratio, modulated=False,
                                      output_stream="image", qkv_bias=qkv_bias, rope_axes_dims=rope_axes_dims,
                                      rope_theta=rope_theta)
        self.image_out = OutputHead(hidden_size, in_channels * patch_size**2, modulated=False)

    def forward(self, codes: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | float | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():  # compiled graphs skip it: callers validate once
            check_one_pass_inputs(self, codes, x_t, t)
        code = self.code_in(codes.to(self.code_in.weight.dtype))
        image = self.mask_tokens.expand(codes.shape[0], -1, -1)
        image = self.transformer(code, image, (self.grid, self.grid))
        return unpatchify(self.image_out(image), self.config.patch_size, self.grid, self.grid)
