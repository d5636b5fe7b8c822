"""Patchify / unpatchify images into token sequences (row-major patches, channels last)."""

from __future__ import annotations

import torch
from einops import rearrange


def check_images(images: torch.Tensor, patch_size: int, channels: int, name: str = "images") -> tuple[int, int]:
    """Validate a (B, C, H, W) float batch whose sides are multiples of ``patch_size``.

    Returns the patch grid ``(grid_h, grid_w)``; raises ``TypeError``/``ValueError`` saying what to fix.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {channels}, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor in [-1, 1], got dtype {images.dtype}; "
                        f"convert with images.float() / 127.5 - 1 for uint8 pixels")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(f"{name} size {height}x{width} is not divisible by the patch size {patch_size}; "
                         f"resize or crop to a multiple of {patch_size}")
    return patch_grid(images, patch_size)


def patch_grid(images: torch.Tensor, patch_size: int) -> tuple[int, int]:
    """``(H // patch_size, W // patch_size)`` of a (B, C, H, W) batch, without checks (see :func:`check_images`)."""
    return images.shape[-2] // patch_size, images.shape[-1] // patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, gh*gw, ph*pw*C), patches in row-major order."""
    return rearrange(images, "b c (gh ph) (gw pw) -> b (gh gw) (ph pw c)", ph=patch_size, pw=patch_size)


def unpatchify(tokens: torch.Tensor, patch_size: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, gh*gw, ph*pw*C) -> (B, C, gh*ph, gw*pw)."""
    return rearrange(tokens, "b (gh gw) (ph pw c) -> b c (gh ph) (gw pw)",
                     gh=grid_h, gw=grid_w, ph=patch_size, pw=patch_size)
