"""Peak signal-to-noise ratio, per image (then averaged over images by the caller)."""

from __future__ import annotations

import torch
from einops import reduce


def psnr(images: torch.Tensor, references: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB of each image (B,) for batches (B, C, H, W); [-1, 1] images have data_range 2.

    The FlowMo reference release averages the squared error over a whole batch before taking the
    logarithm; here every image gets its own PSNR, as the literature reports it.
    """
    if images.shape != references.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(images.shape)} and {tuple(references.shape)}")
    mse = reduce((images.double() - references.double()) ** 2, "b ... -> b", "mean")
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))
