"""Per-head QK RMSNorm and joint (non-causal) scaled dot-product attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class HeadRMSNorm(nn.Module):
    """RMSNorm over the last (head) dimension with a learnable scale, computed in float32."""

    def __init__(self, head_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.scale.float()).to(x.dtype)


def mup_attention_scale(head_dim: int) -> float:
    """The muP attention scale 8/head_dim (equals 1/sqrt(head_dim) at head_dim 64)."""
    return 8.0 / head_dim


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of q (B, heads, Lq, D) over k, v (B, heads, Lk, D); returns (B, Lq, heads*D)."""
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return rearrange(out, "b heads length d -> b length (heads d)")
