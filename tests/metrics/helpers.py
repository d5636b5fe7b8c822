"""Shared test data for the metric tests: real photographs, noisy copies and a tiny random LPIPS."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data


def photo_crops(size: int = 48) -> torch.Tensor:
    """Six real RGB crops (astronaut, chelsea, coffee) as float64 (6, 3, size, size) in [-1, 1]."""
    crops = []
    for image in (data.astronaut(), data.chelsea(), data.coffee()):
        for top, left in ((40, 60), (150, 200)):
            crops.append(image[top : top + size, left : left + size])
    array = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float64) / 127.5 - 1
    return torch.from_numpy(array)


def noisy(images: torch.Tensor, level: float, seed: int = 1) -> torch.Tensor:
    """``images`` plus Gaussian noise of std ``level``, clamped to [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + level * noise).clamp(-1, 1)


class TinyRandomLPIPS(torch.nn.Module):
    """NOT real LPIPS: a tiny randomly initialised network of LPIPS's form, for tests without weights.

    Two convolution stages; at each, features are unit-normalised over channels and the squared
    differences summed over channels and averaged over space; the stages are added. Distances
    (B, 1, 1, 1), exactly zero for identical inputs and exactly symmetric.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.stages = torch.nn.ModuleList([torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)])
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))

    def forward(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        x, y, total = images.float(), references.float(), 0.0
        for stage in self.stages:
            x, y = F.relu(stage(x)), F.relu(stage(y))
            unit_x = x / (x.norm(dim=1, keepdim=True) + 1e-10)
            unit_y = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (unit_x - unit_y).pow(2).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        return total


def stream(metric, batches):
    """Update ``metric`` with every (images, references) or (indices, size) pair and compute it."""
    for batch in batches:
        metric.update(*batch)
    return metric.compute()
