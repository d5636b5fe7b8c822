"""FlowMo encoder: an MMDiT that reads image patches into a 1-D sequence of continuous codes."""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import repeat
from torch import nn

from tokenizer_zoo.layers import MMDiTStack, OutputHead, check_images, patchify
from tokenizer_zoo.registry import ENCODERS


class CodeStart(nn.Module):
    """The bias of ``Linear(code_dim, hidden_size)`` applied to zeros, initialised as that Linear's bias
    (saved as ``code_in.bias``): the code stream's first state, the same for every token."""

    def __init__(self, code_dim: int, hidden_size: int):
        super().__init__()
        bound = 1 / math.sqrt(code_dim)
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))


@ENCODERS.register("flowmo")
class FlowMoEncoder(ModelMixin, ConfigMixin):
    """Images (B, C, H, W) in [-1, 1] -> pre-quantisation codes (B, code_length, code_dim).

    Double-stream MMDiT without time input: no modulation parameters are allocated (shift 0,
    scale 0, gate 1), so every parameter gets a gradient. The code stream starts from
    ``Linear(code_dim, H)(zeros(B, S, code_dim))``, which is its bias: only ``code_in.bias`` is
    allocated (the weight would multiply zeros and never learn); tokens differ only through
    RoPE (code token i sits at (i, i, i), patch (r, c) at (0, r, c)). The code stream goes through
    a final LayerNorm + Linear to ``code_dim``; the image stream's output is never computed in the
    last block.

    ``image_size`` is the nominal (training) size; any H, W divisible by ``patch_size`` work,
    since positions are RoPE only. Attention uses the muP scale 8/head_dim.

    Differences from the reference release (all unused there): no block modulation, no time
    embedder, no image output head, no adaLN in the code head, no weight in the code input, and the
    last block's image stream has no query / output projection / MLP.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, image_size: int = 256, patch_size: int = 4, hidden_size: int = 768, depth: int = 8,
                 num_heads: int = 12, mlp_ratio: float = 4.0, code_length: int = 256, code_dim: int = 18,
                 in_channels: int = 3, qkv_bias: bool = True, rope_theta: float = 10_000.0,
                 rope_axes_dims: list[int] | None = None):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be divisible by patch_size {patch_size}")
        self.image_in = nn.Linear(in_channels * patch_size**2, hidden_size)
        self.code_in = CodeStart(code_dim, hidden_size)
        self.transformer = MMDiTStack(hidden_size, depth, num_heads, mlp_ratio, modulated=False, output_stream="code",
                                      qkv_bias=qkv_bias, rope_axes_dims=rope_axes_dims, rope_theta=rope_theta)
        self.code_out = OutputHead(hidden_size, code_dim, modulated=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        config = self.config
        grid = check_images(images, config.patch_size, config.in_channels)
        image = self.image_in(patchify(images, config.patch_size).to(self.image_in.weight.dtype))
        start = repeat(self.code_in.bias.to(image.dtype), "h -> b s h", b=images.shape[0], s=config.code_length)
        code = self.transformer(start, image, grid)
        return self.code_out(code)
