"""What recipes show people: held-out reconstructions and samples as PNG grids; mixed-precision choice."""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torchvision.utils import save_image


def resolve_mixed_precision(setting: str) -> str:
    """``auto`` -> ``bf16`` on CUDA devices that support it, else ``no`` (fp32 on CPU)."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def save_comparison_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path, per_row: int = 8) -> Path:
    """PNG of originals (odd rows) above their reconstructions (even rows); inputs in [-1, 1]."""
    count = originals.shape[0]
    per_row = min(per_row, count)
    pad = (-count) % per_row
    pairs = torch.stack([originals, reconstructions]).float().cpu()
    if pad:
        pairs = torch.cat([pairs, torch.full((2, pad, *pairs.shape[2:]), -1.0)], dim=1)
    tiles = rearrange(pairs, "two (rows cols) c h w -> (rows two cols) c h w", cols=per_row)
    return save_image_grid(tiles, path, per_row)


def save_image_grid(images: torch.Tensor, path: Path, per_row: int = 8) -> Path:
    """PNG of ``images`` (B, 3, H, W) in [-1, 1], ``per_row`` to a row (e.g. one row per class)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((images.float().cpu().clamp(-1, 1) + 1) / 2, path, nrow=per_row, padding=2, pad_value=1.0)
    return path
