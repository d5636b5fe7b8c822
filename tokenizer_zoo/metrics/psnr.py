"""Peak signal-to-noise ratio, per image (then averaged over images by the caller or by :class:`PSNR`)."""

from __future__ import annotations

import torch
from einops import reduce

from tokenizer_zoo.metrics._base import PerImageMean


def psnr(images: torch.Tensor, references: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB of each image (B,) for batches (B, C, H, W); [-1, 1] images have data_range 2.

    The FlowMo reference release averages the squared error over a whole batch before taking the
    logarithm; here every image gets its own PSNR, as the literature reports it.
    """
    if images.shape != references.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(images.shape)} and {tuple(references.shape)}")
    mse = reduce((images.double() - references.double()) ** 2, "b ... -> b", "mean")
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


class PSNR(PerImageMean):
    """Mean over images of the per-image PSNR in dB, accumulated batch by batch.

    Each image's squared error is averaged over its pixels and channels, turned into
    ``10 log10(range^2 / mse)`` with ``range = high - low`` of ``value_range`` (2 for the default
    [-1, 1]), and the metric reports the mean of these over every image seen (by all processes).
    The FlowMo reference computes one PSNR from the mean squared error of a whole batch instead,
    which depends on the batch size and weights good images less; we do not.
    Identical images count as ``10 log10(range^2 / 1e-20)`` dB (the squared error is floored at 1e-20).

    ``update(images, references)``: float (B, C, H, W) in ``value_range``. ``compute()``: 0-dim float64.
    """

    higher_is_better = True

    def per_image(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        return psnr(images, references, data_range=self.value_range[1] - self.value_range[0])
