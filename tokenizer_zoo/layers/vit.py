"""The pre-norm ViT block of CLIP and TiTok: ``x + attn(ln_1 x)``, then ``x + mlp(ln_2 x)``.

Affine LayerNorms (eps 1e-5), a packed qkv projection whose rows are [q; k; v], each split into heads
as (heads, head_dim) (``nn.MultiheadAttention``'s ``in_proj`` layout), attention scale
head_dim^-0.5 through the zoo's :func:`~tokenizer_zoo.layers.attention.joint_attention`, and the
zoo's :class:`~tokenizer_zoo.layers.mmdit.FeedForward` with the exact (erf) GELU.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from tokenizer_zoo.layers.attention import joint_attention
from tokenizer_zoo.layers.mmdit import FeedForward


class ViTBlock(nn.Module):
    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"ViTBlock width {width} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = FeedForward(width, mlp_ratio, exact_gelu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.ln_1(x)), "b l (three heads d) -> three b heads l d", three=3,
                            heads=self.num_heads)
        x = x + self.proj(joint_attention(q, k, v, scale=q.shape[-1] ** -0.5))
        return x + self.mlp(self.ln_2(x))


def vit_stack(width: int, num_layers: int, num_heads: int, mlp_ratio: float = 4.0) -> nn.Sequential:
    """``num_layers`` :class:`ViTBlock` in sequence (saved as ``<i>.*``)."""
    return nn.Sequential(*(ViTBlock(width, num_heads, mlp_ratio) for _ in range(num_layers)))


def add_titok_trunk(module: nn.Module, grid: int, width: int, num_layers: int, num_heads: int, num_latents: int,
                    mlp_ratio: float = 4.0) -> None:
    """What TiTok's encoder and decoder share: ``class_embedding`` (1, W), ``positional_embedding``
    (grid^2 + 1, W), ``latent_token_positional_embedding`` (num_latents, W), ``ln_pre``, the blocks
    (``transformer``) and ``ln_post``. Embeddings start at N(0, W^-1/2) as in the release."""
    scale = width**-0.5
    module.class_embedding = nn.Parameter(scale * torch.randn(1, width))
    module.positional_embedding = nn.Parameter(scale * torch.randn(grid**2 + 1, width))
    module.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latents, width))
    module.ln_pre = nn.LayerNorm(width)
    module.transformer = vit_stack(width, num_layers, num_heads, mlp_ratio)
    module.ln_post = nn.LayerNorm(width)


def run_titok_trunk(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``ln_post(blocks(ln_pre(x)))`` over the whole sequence (LayerNorm is per token, so slicing after is the same)."""
    return module.ln_post(module.transformer(module.ln_pre(x)))
