"""Training and evaluation transforms (FlowMo spec §3 "Data").

training:   Resize(size) + RandomCrop(size)
evaluation: Resize(size) + CenterCrop(size)

Resize makes the short side equal to ``size`` (bicubic, antialiased), so images smaller than the
crop are upscaled; images with a side below :data:`~tokenizer_zoo.data.images.MIN_IMAGE_SIDE` are
rejected by :func:`~tokenizer_zoo.data.images.image_to_tensor`. The output is a float32 tensor
(3, size, size) with values in [-1, 1].
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tokenizer_zoo.data.images import ImageLike, image_to_tensor, split_images


def unit_to_signed(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return image * 2.0 - 1.0


def signed_to_unit(image: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (image + 1.0) / 2.0


def resize_short_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> short side ``size``, bicubic + antialias, clipped back to [0, 1]."""
    resized = TF.resize(image, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return resized.clamp(0.0, 1.0)


class ImageTransform:
    """Callable image -> tensor (3, size, size) in [-1, 1].

    Args:
        size: output side in pixels.
        train: random crop (training) if True, centre crop (evaluation) otherwise.
        generator: optional ``torch.Generator`` for the random crop offsets; the global torch RNG
            is used otherwise (DataLoader workers seed it per worker).
    """

    def __init__(self, size: int, train: bool, generator: torch.Generator | None = None):
        if size < 1:
            raise ValueError(f"image size must be a positive number of pixels, got {size}")
        self.size = int(size)
        self.train = bool(train)
        self.generator = generator

    def __call__(self, image: ImageLike, name: str | None = None) -> torch.Tensor:
        resized = resize_short_side(image_to_tensor(image, name), self.size)
        height, width = resized.shape[-2:]
        if self.train:
            top = int(torch.randint(0, height - self.size + 1, (1,), generator=self.generator))
            left = int(torch.randint(0, width - self.size + 1, (1,), generator=self.generator))
            cropped = resized[:, top : top + self.size, left : left + self.size]
        else:
            cropped = TF.center_crop(resized, [self.size, self.size])
        return unit_to_signed(cropped).contiguous()

    def __repr__(self) -> str:
        crop = "RandomCrop" if self.train else "CenterCrop"
        return f"ImageTransform(Resize({self.size}) + {crop}({self.size}) -> [-1, 1])"


def train_transform(size: int, generator: torch.Generator | None = None) -> ImageTransform:
    """Resize(size) + RandomCrop(size) -> [-1, 1]."""
    return ImageTransform(size, train=True, generator=generator)


def eval_transform(size: int) -> ImageTransform:
    """Resize(size) + CenterCrop(size) -> [-1, 1]."""
    return ImageTransform(size, train=False)


def to_model_input(images, size: int) -> torch.Tensor:
    """The model's batch (B, 3, size, size) in [-1, 1] of one image or a batch of any supported kind
    (:func:`~tokenizer_zoo.data.images.split_images`), each through :func:`eval_transform`; images
    already ``size`` x ``size`` are not resampled."""
    transform = eval_transform(size)
    return torch.stack([transform(image) for image in split_images(images)])
