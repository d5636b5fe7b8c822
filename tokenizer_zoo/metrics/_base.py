"""What the image-pair metrics share: input checks, rescaling, and the streaming mean over images."""

from __future__ import annotations

import torch
from torchmetrics import Metric

ValueRange = tuple[float, float]

# reconstructions that leave the value range by less than this fraction of it are accepted as they are
RANGE_TOLERANCE = 1e-3


def check_value_range(value_range: ValueRange, who: str) -> tuple[float, float]:
    """``(low, high)`` as floats, rejecting empty or inverted ranges."""
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"{who}: value_range must be (low, high) with low < high, got {tuple(value_range)}.")
    return low, high


def check_image_pair(
    images: torch.Tensor,
    references: torch.Tensor,
    value_range: ValueRange,
    who: str,
    min_size: int = 1,
    channels: int | None = None,
) -> None:
    """Raise a clear error unless both are float (B, C, H, W) batches of one shape inside ``value_range``."""
    for name, tensor in (("images", images), ("references", references)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{who}.update expects torch.Tensor {name}, got {type(tensor).__name__}.")
        if not tensor.is_floating_point():
            raise TypeError(
                f"{who}.update expects floating-point {name} in {list(value_range)}, got dtype {tensor.dtype}; "
                f"convert uint8 images with images.float() / 127.5 - 1 (for the default range [-1, 1])."
            )
    if images.shape != references.shape:
        raise ValueError(
            f"{who}.update needs images and references of the same shape, got {tuple(images.shape)} and "
            f"{tuple(references.shape)}."
        )
    if images.ndim != 4:
        raise ValueError(
            f"{who}.update expects batches (B, C, H, W), got shape {tuple(images.shape)}; add a batch axis with x[None]."
        )
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{who}.update expects {channels} channels (B, {channels}, H, W), got shape {tuple(images.shape)}.")
    if min(images.shape[-2:]) < min_size:
        raise ValueError(f"{who}.update needs images of at least {min_size}x{min_size} pixels, got {tuple(images.shape[-2:])}.")
    low, high = value_range
    slack = RANGE_TOLERANCE * (high - low)
    for name, tensor in (("images", images), ("references", references)):
        if tensor.numel() == 0:
            continue
        smallest, largest = float(tensor.min()), float(tensor.max())
        if not (low - slack <= smallest and largest <= high + slack):
            raise ValueError(
                f"{who}.update expects {name} in [{low:g}, {high:g}], got values in [{smallest:g}, {largest:g}]; "
                f"clamp reconstructions with x.clamp({low:g}, {high:g}), or pass value_range=(low, high) if your "
                f"images use another range (e.g. value_range=(0, 1))."
            )


def to_unit_range(images: torch.Tensor, value_range: ValueRange) -> torch.Tensor:
    """Map ``value_range`` linearly onto [0, 1]."""
    low, high = value_range
    return (images - low) / (high - low)


class PerImageMean(Metric):
    """Mean over all images (of all processes) of a per-image value of (images, references) pairs.

    Subclasses implement :meth:`per_image`, returning B values for float (B, C, H, W) batches in
    ``value_range``, and may set ``min_size`` / ``channels`` for the input check. The states are
    a float64 sum and an image count, both summed across processes, so batches and processes
    may hold any number of images. ``compute()`` returns a 0-dim float64 tensor.
    """

    is_differentiable = False
    full_state_update = False
    min_size = 1
    channels: int | None = None

    def __init__(self, value_range: ValueRange = (-1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.value_range = check_value_range(value_range, type(self).__name__)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def per_image(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, images: torch.Tensor, references: torch.Tensor) -> None:
        who = type(self).__name__
        check_image_pair(images, references, self.value_range, who, min_size=self.min_size, channels=self.channels)
        values = self.per_image(images, references).reshape(-1)
        if values.numel() != images.shape[0]:
            raise ValueError(
                f"{who}: got {values.numel()} values for {images.shape[0]} images; the per-image function "
                "(for LPIPS: the network) must return one value per image, e.g. shape (B, 1, 1, 1)."
            )
        self.total += values.detach().double().sum().to(self.total.device)
        self.images += values.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.images
