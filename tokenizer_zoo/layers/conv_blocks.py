"""Convolutional blocks of the VQGAN family as the published releases build them (Open-MAGVIT2, MaskGiT-VQGAN).

Every GroupNorm has ``groups`` groups and eps 1e-6; every 3x3 conv pads 1 on each side (the TF "same"
padding of MaskGiT's ``Conv2dSame`` is the same thing at stride 1). Axes: b batch, c channels, h/w grid.

:class:`ResBlock` norm -> SiLU -> conv3x3 -> norm -> SiLU -> conv3x3 (both convs without bias) plus a
residual. ``shortcut`` records where the 1x1 channel-changing shortcut reads from: ``"input"``
(``x + nin(x_in)``, the usual form, Open-MAGVIT2) or ``"output"`` (MaskGiT-VQGAN's odd residual
``h + nin(h)``, with ``nin`` mapping out -> out channels).

:class:`ConvUpStack` is the decoder trunk both releases share: conv_in, ``num_res_blocks`` mid blocks,
then per level from coarse to fine an optional adaptive GroupNorm, ``num_res_blocks`` ResBlocks and
(except at the finest level) a x2 upsampler, then GroupNorm + SiLU + conv_out. ``upsampler`` records
the two upsamplings: ``"depth_to_space"`` (Open-MAGVIT2: conv3x3 C -> 4C, then depth-to-space in DCR
order, channel index split as (dy, dx, c)) and ``"nearest_conv"`` (MaskGiT: nearest x2, then conv3x3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

SHORTCUTS = ("input", "output")
UPSAMPLERS = ("depth_to_space", "nearest_conv")


def group_norm(channels: int, groups: int = 32, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=affine)


def conv3x3(in_channels: int, out_channels: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


class ResBlock(nn.Module):
    """Pre-activation residual block without conv biases; see the module docstring for ``shortcut``."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32, shortcut: str = "input"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"ResBlock shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        self.shortcut = shortcut
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = conv3x3(in_channels, out_channels, bias=False)
        self.norm2 = group_norm(out_channels, groups)
        self.conv2 = conv3x3(out_channels, out_channels, bias=False)
        shortcut_in = in_channels if shortcut == "input" else out_channels
        self.nin_shortcut = nn.Conv2d(shortcut_in, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        if self.nin_shortcut is None:
            return h + x
        return h + self.nin_shortcut(x if self.shortcut == "input" else h)


class AdaptiveGroupNorm(nn.Module):
    """Open-MAGVIT2's adaptive GroupNorm: ``GN(x) * gamma(std_hw(style)) + beta(mean_hw(style))``.

    ``style`` is the decoder's quantised input (b, style_channels, h, w); its per-channel standard
    deviation is ``sqrt(var + eps)`` with torch's unbiased variance over the h*w positions (as the
    release computes it), so the style grid needs at least two positions.
    """

    def __init__(self, style_channels: int, channels: int, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.norm = group_norm(channels, groups, affine=False)
        self.gamma = nn.Linear(style_channels, channels)
        self.beta = nn.Linear(style_channels, channels)
        self.eps = eps

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        flat = rearrange(style, "b c h w -> b c (h w)")
        scale = self.gamma((flat.var(dim=-1) + self.eps).sqrt())
        shift = self.beta(flat.mean(dim=-1))
        return self.norm(x) * scale[..., None, None] + shift[..., None, None]


class DepthToSpaceUpsampler(nn.Module):
    """conv3x3 C -> 4C, then depth-to-space x2 in DCR order (channels split as (dy, dx, c))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, 4 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.conv(x), "b (dy dx c) h w -> b c (h dy) (w dx)", dy=2, dx=2)


class NearestConvUpsampler(nn.Module):
    """Nearest-neighbour x2, then conv3x3 C -> C."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


_UPSAMPLER_CLASSES = {"depth_to_space": DepthToSpaceUpsampler, "nearest_conv": NearestConvUpsampler}


class ConvUpStack(nn.Module):
    """The VQGAN-family decoder trunk: latents (b, z_channels, h, w) -> images (b, out_channels, h*f, w*f).

    f = 2^(len(channel_mult) - 1); level i has ``channels * channel_mult[i]`` channels, level 0 the
    finest. ``adaptive_norm`` puts an :class:`AdaptiveGroupNorm`, styled by the input latents, before
    each level's blocks (Open-MAGVIT2).
    """

    def __init__(self, z_channels: int, channels: int, channel_mult: list[int], num_res_blocks: int,
                 out_channels: int = 3, groups: int = 32, shortcut: str = "input",
                 upsampler: str = "depth_to_space", adaptive_norm: bool = False):
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"ConvUpStack upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
        width = channels * channel_mult[-1]
        self.conv_in = conv3x3(z_channels, width)
        self.mid = nn.ModuleList(ResBlock(width, width, groups, shortcut) for _ in range(num_res_blocks))
        self.adaptive = nn.ModuleList() if adaptive_norm else None
        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):  # built coarse to fine, stored fine first
            if adaptive_norm:
                self.adaptive.insert(0, AdaptiveGroupNorm(z_channels, width, groups))
            out = channels * channel_mult[level]
            stage = nn.Module()
            stage.block = nn.ModuleList(ResBlock(width if k == 0 else out, out, groups, shortcut)
                                        for k in range(num_res_blocks))
            stage.upsample = _UPSAMPLER_CLASSES[upsampler](out) if level > 0 else None
            self.up.insert(0, stage)
            width = out
        self.norm_out = group_norm(width, groups)
        self.conv_out = conv3x3(width, out_channels)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(latents)
        for block in self.mid:
            h = block(h)
        for level in reversed(range(len(self.up))):
            if self.adaptive is not None:
                h = self.adaptive[level](h, latents)
            for block in self.up[level].block:
                h = block(h)
            if self.up[level].upsample is not None:
                h = self.up[level].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
