"""Structural similarity (SSIM) exactly as scikit-image computes it, in torch, per image.

:func:`ssim` reproduces ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` for images in
[0, 1] (the setting of the SSIM numbers in the FlowMo paper and most tokenizer papers):

* local statistics come from a Gaussian window of sigma 1.5 truncated at 3.5 sigma, i.e.
  radius ``int(3.5 * 1.5 + 0.5) = 5`` and 11 taps, normalised to sum 1 (scipy's gaussian_filter);
* ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = 1``, population (not sample) covariances;
* the SSIM map is averaged over the image after cropping ``(11 - 1) // 2 = 5`` pixels at each
  border. The kept pixels are exactly those whose window lies inside the image, so a *valid*
  convolution gives the cropped map directly and the border mode of the filter never matters;
* the per-channel means are averaged over channels (equal to the mean over all kept values).

Computation is in float64, so values agree with scikit-image to about 1e-12.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from einops import reduce

from tokenizer_zoo.metrics._base import PerImageMean, to_unit_range

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)
WINDOW = 2 * RADIUS + 1
K1, K2 = 0.01, 0.03


def gaussian_taps(sigma: float = SIGMA, radius: int = RADIUS, dtype=torch.float64, device=None) -> torch.Tensor:
    """The 1-D Gaussian of scipy.ndimage.gaussian_filter: ``2 radius + 1`` taps summing to 1."""
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _valid_blur(maps: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian of every channel of (N, C, H, W), keeping only fully covered pixels."""
    channels = maps.shape[1]
    rows = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return F.conv2d(F.conv2d(maps, rows, groups=channels), cols, groups=channels)


def ssim(images: torch.Tensor, references: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image pair (B,) for float batches (B, C, H, W) whose values span ``data_range``.

    Images in [0, 1] need data_range 1 (scikit-image's convention above); H and W must be >= 11.
    """
    if images.shape != references.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(images.shape)} and {tuple(references.shape)}")
    if images.ndim != 4 or min(images.shape[-2:]) < WINDOW:
        raise ValueError(f"ssim needs batches (B, C, H, W) with H, W >= {WINDOW}, got shape {tuple(images.shape)}")
    x, y = images.double(), references.double()
    batch = x.shape[0]
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=0)  # (5B, C, H, W)
    mu_x, mu_y, xx, yy, xy = _valid_blur(stacked, gaussian_taps(device=x.device)).split(batch)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return reduce(numerator / denominator, "b c h w -> b", "mean")


class SSIM(PerImageMean):
    """Mean over images of :func:`ssim` (scikit-image's Gaussian SSIM on [0, 1] images), streaming.

    ``update(images, references)``: float (B, C, H, W) in ``value_range`` (default [-1, 1]; mapped
    linearly onto [0, 1] before SSIM, so the result equals scikit-image on ``(x + 1) / 2`` with
    ``data_range=1``), H and W >= 11. ``compute()``: 0-dim float64.
    """

    higher_is_better = True
    min_size = WINDOW

    def per_image(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        unit = [to_unit_range(tensor.double(), self.value_range) for tensor in (images, references)]
        return ssim(*unit)
