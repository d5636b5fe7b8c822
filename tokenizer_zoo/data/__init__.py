"""Data: image conversion rules, transforms, dataset loading by name and the embedded photos."""

from tokenizer_zoo.data.digits import EmbeddedDigits
from tokenizer_zoo.data.embedded import EmbeddedPhotos
from tokenizer_zoo.data.images import (
    MIN_IMAGE_SIDE,
    ImageTooSmallError,
    InvalidImageError,
    image_to_tensor,
    open_image,
    to_rgb,
)
from tokenizer_zoo.data.loading import (
    DatasetLoadError,
    HFImageDataset,
    evaluation_split,
    find_image_column,
    load_image_dataset,
)
from tokenizer_zoo.data.transforms import ImageTransform, eval_transform, train_transform

__all__ = [
    "MIN_IMAGE_SIDE",
    "DatasetLoadError",
    "EmbeddedDigits",
    "EmbeddedPhotos",
    "HFImageDataset",
    "ImageTooSmallError",
    "ImageTransform",
    "InvalidImageError",
    "eval_transform",
    "evaluation_split",
    "find_image_column",
    "image_to_tensor",
    "load_image_dataset",
    "open_image",
    "to_rgb",
    "train_transform",
]
