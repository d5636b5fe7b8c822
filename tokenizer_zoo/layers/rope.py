"""3-axis rotary position embedding (RoPE) for joint code + image sequences.

Every token has a 3-d integer position. FlowMo places image patch (row, col) at (0, row, col) and
code token i at (i, i, i). The head dimension is split into three axis blocks; inside each block,
consecutive channel pairs (2j, 2j+1) are rotated by the angle ``pos_axis * theta**(-2j/axis_dim)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange


def default_axes_dims(head_dim: int) -> list[int]:
    """Split ``head_dim`` into RoPE axis dims ``[hd/8, 7hd/16, 7hd/16]`` (64 -> [8, 28, 28], 96 -> [12, 42, 42]).

    Each axis needs an even number of channels, so ``head_dim`` must be a multiple of 32; for other
    head dims pass explicit ``rope_axes_dims`` to the model.
    """
    if head_dim % 32:
        raise ValueError(f"cannot derive RoPE axes dims for head_dim={head_dim} (needs a multiple of 32 so that "
                         f"[hd/8, 7hd/16, 7hd/16] are even); pass rope_axes_dims explicitly, e.g. three even "
                         f"numbers summing to {head_dim}")
    return [head_dim // 8, 7 * head_dim // 16, 7 * head_dim // 16]


def validate_axes_dims(axes_dims: list[int] | tuple[int, ...], head_dim: int) -> list[int]:
    """Check that ``axes_dims`` are three positive even numbers summing to ``head_dim``."""
    axes_dims = [int(a) for a in axes_dims]
    if len(axes_dims) != 3 or any(a <= 0 or a % 2 for a in axes_dims) or sum(axes_dims) != head_dim:
        raise ValueError(f"rope_axes_dims must be three positive even numbers summing to head_dim={head_dim}, "
                         f"got {axes_dims}")
    return axes_dims


def flowmo_positions(code_length: int, grid_h: int, grid_w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of code tokens (i, i, i) and image patches (0, row, col): shapes (S, 3) and (gh*gw, 3)."""
    index = torch.arange(code_length, device=device, dtype=torch.float32)
    code = torch.stack([index, index, index], dim=-1)
    rows, cols = torch.meshgrid(torch.arange(grid_h, device=device, dtype=torch.float32),
                                torch.arange(grid_w, device=device, dtype=torch.float32), indexing="ij")
    image = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1)
    return code, rearrange(image, "gh gw xyz -> (gh gw) xyz")


@dataclass
class RotaryAngles:
    """cos/sin of the rotation angles, each (L, head_dim/2), float32."""

    cos: torch.Tensor
    sin: torch.Tensor


class RotaryEmbedding(torch.nn.Module):
    """Turns (L, n_axes) positions into :class:`RotaryAngles`. Has no parameters."""

    def __init__(self, axes_dims: list[int], theta: float = 10_000.0):
        super().__init__()
        self.axes_dims = [int(a) for a in axes_dims]
        self.theta = float(theta)

    def forward(self, positions: torch.Tensor) -> RotaryAngles:
        if positions.ndim != 2 or positions.shape[-1] != len(self.axes_dims):
            raise ValueError(f"positions must have shape (L, {len(self.axes_dims)}), got {tuple(positions.shape)}")
        angles = []
        for axis, dim in enumerate(self.axes_dims):
            exponent = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim
            frequencies = self.theta ** (-exponent)
            angles.append(positions[:, axis, None].float() * frequencies)
        angle = torch.cat(angles, dim=-1)
        return RotaryAngles(cos=angle.cos(), sin=angle.sin())


def apply_rope(x: torch.Tensor, angles: RotaryAngles) -> torch.Tensor:
    """Rotate channel pairs of ``x`` (B, heads, L, head_dim) in float32; returns x's dtype."""
    pairs = rearrange(x.float(), "... (half two) -> ... half two", two=2)
    even, odd = pairs.unbind(-1)
    cos, sin = angles.cos, angles.sin
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rearrange(rotated, "... half two -> ... (half two)").to(x.dtype)
