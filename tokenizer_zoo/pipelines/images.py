"""Image conversion at the pipeline boundary.

Inputs: PIL images, numpy arrays (HWC or BHWC; uint8, or float in [0, 1]) and tensors
((3,H,W) or (B,3,H,W) float in [-1, 1]), single or in a list. PIL and numpy inputs go through
the evaluation transform (Resize + CenterCrop) with the datasets' conversion rules; tensors must
already have the model's size.

Outputs (``output_type``): ``"pil"`` a list of PIL images, ``"np"`` float (B,H,W,3) in [0, 1]
as in diffusers, ``"pt"`` tensors (B,3,H,W) in [-1, 1], the model's own convention, so that a
reconstruction compares directly with its input.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tokenizer_zoo.data.images import to_rgb
from tokenizer_zoo.data.transforms import eval_transform
from tokenizer_zoo.validation import check_finite_input

OUTPUT_TYPES = ("pil", "np", "pt")


def _tensor_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    batch = images.unsqueeze(0) if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"image tensors must be (3,H,W) or (B,3,H,W), got {tuple(images.shape)}")
    if not batch.is_floating_point():
        raise TypeError(f"image tensors must be float in [-1, 1], got {batch.dtype}; use x.float() / 127.5 - 1 for uint8")
    if batch.shape[-2:] != (size, size):
        raise ValueError(f"image tensors must be {size}x{size} for this model, got {tuple(batch.shape[-2:])}; "
                         "pass PIL images or numpy arrays to have them resized and cropped")
    check_finite_input(batch, "image tensors", "replace or drop the NaN/inf pixels")
    if batch.min() < -1.001 or batch.max() > 1.001:
        raise ValueError("image tensors must be in [-1, 1]; map [0, 1] images with x * 2 - 1")
    return batch


def _numpy_to_pil(array: np.ndarray) -> list[Image.Image]:
    if array.ndim == 2:  # one greyscale image
        batch = array[None, ..., None]
    elif array.ndim == 3:  # one HWC image, or a batch of greyscale images
        batch = array[None] if array.shape[-1] in (1, 3, 4) else array[..., None]
    else:
        batch = array
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3, 4):
        raise ValueError(f"numpy images must be HWC or BHWC with 1, 3 or 4 channels, got shape {array.shape}")
    check_finite_input(torch.as_tensor(batch), "numpy images", "replace or drop the NaN/inf pixels")
    if batch.dtype != np.uint8:
        if not np.issubdtype(batch.dtype, np.floating) or batch.min() < 0 or batch.max() > 1:
            raise ValueError("numpy images must be uint8, or float in [0, 1]")
        batch = np.round(batch * 255).astype(np.uint8)
    return [Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image) for image in batch]


def to_model_input(images, size: int) -> torch.Tensor:
    """A float batch (B, 3, size, size) in [-1, 1] from any supported input."""
    if isinstance(images, torch.Tensor):
        return _tensor_batch(images, size)
    if isinstance(images, np.ndarray):
        images = _numpy_to_pil(images)
    if isinstance(images, Image.Image):
        images = [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise TypeError(f"expected PIL images, numpy arrays or tensors, got {type(images).__name__}")
    transform = eval_transform(size)
    parts = []
    for image in images:
        if isinstance(image, torch.Tensor):
            parts.append(_tensor_batch(image, size))
        elif isinstance(image, np.ndarray):
            parts.extend(transform(pil).unsqueeze(0) for pil in _numpy_to_pil(image))
        elif isinstance(image, Image.Image):
            parts.append(transform(to_rgb(image)).unsqueeze(0))
        else:
            raise TypeError(f"unsupported image type {type(image).__name__} in the list")
    return torch.cat(parts)


def from_model_output(images: torch.Tensor, output_type: str = "pil"):
    """Convert model images (B, 3, H, W) in [-1, 1] to ``output_type``."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    images = images.float().clamp(-1, 1)
    if output_type == "pt":
        return images
    array = ((images + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    return [Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in array]
