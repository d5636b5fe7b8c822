"""The embedded default dataset: real photographs that ship inside installed packages.

No network is needed: every photograph below is a file inside the wheel of its package (the
scikit-image ones were checked to load with the network blocked; images of ``skimage.data``
that need a pooch download, such as ``eagle`` or ``lily``, are deliberately not used).

Training photographs (random crops):
    scikit-image ``astronaut`` (Eileen Collins, NASA), ``rocket`` (SpaceX launch, public domain),
    ``hubble_deep_field`` (NASA/ESA), ``immunohistochemistry`` (micrograph), ``retina`` (fundus
    photograph), ``stereo_motorcycle`` (left view, Middlebury stereo set);
    scikit-learn ``load_sample_images`` ``china.jpg`` (a Chinese temple) and ``flower.jpg``.
Evaluation photographs (a FIXED set of deterministic crops; no source photograph is shared with
training):
    scikit-image ``chelsea`` (a cat) and ``coffee`` (a cup of coffee);
    matplotlib sample data ``grace_hopper.jpg`` (portrait of Grace Hopper).

Training draws, per item: a photograph uniformly at random, a zoom ``s`` log-uniform in
``[1, max_zoom]`` so that the crop covers ``1/s`` of the photograph's short side (never finer than
the native resolution), a uniformly placed square crop resized (bicubic, antialiased) to
``image_size``, and a horizontal flip with probability 1/2. An "epoch" is ``length`` crops.
Evaluation cycles through the evaluation photographs with zooms and positions drawn once from a
fixed seed, without flips, so the set is identical on every machine and every call.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tokenizer_zoo.data.images import image_to_tensor
from tokenizer_zoo.data.transforms import unit_to_signed

EVAL_SEED = 20250314
"""Seed of the fixed evaluation crops (changing it changes the published evaluation set)."""


@dataclass(frozen=True)
class Photo:
    """One bundled photograph: its name, the package that ships it and how to read it."""

    name: str
    package: str
    load: Callable[[], np.ndarray]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle -> left view

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data(filename) as stream:
            return np.asarray(Image.open(stream).convert("RGB"))

    return load


TRAIN_PHOTOS = (
    Photo("astronaut", "scikit-image", _skimage("astronaut")),
    Photo("rocket", "scikit-image", _skimage("rocket")),
    Photo("hubble_deep_field", "scikit-image", _skimage("hubble_deep_field")),
    Photo("immunohistochemistry", "scikit-image", _skimage("immunohistochemistry")),
    Photo("retina", "scikit-image", _skimage("retina")),
    Photo("stereo_motorcycle", "scikit-image", _skimage("stereo_motorcycle")),
    Photo("china", "scikit-learn", _sklearn("china.jpg")),
    Photo("flower", "scikit-learn", _sklearn("flower.jpg")),
)
EVAL_PHOTOS = (
    Photo("chelsea", "scikit-image", _skimage("chelsea")),
    Photo("coffee", "scikit-image", _skimage("coffee")),
    Photo("grace_hopper", "matplotlib", _matplotlib("grace_hopper.jpg")),
)
SPLITS = {"train": TRAIN_PHOTOS, "eval": EVAL_PHOTOS}
SPLIT_ALIASES = {"train": "train", "eval": "eval", "validation": "eval", "val": "eval", "test": "eval"}


@functools.lru_cache(maxsize=None)
def load_photo(photo: Photo) -> torch.Tensor:
    """The photograph as float32 (3, H, W) in [0, 1], read once per process."""
    try:
        array = photo.load()
    except ImportError as error:
        raise ImportError(
            f"the embedded photograph {photo.name!r} ships with the package {photo.package!r}, which is "
            f"not installed: pip install {photo.package}"
        ) from error
    return image_to_tensor(array, name=f"embedded:{photo.name}")


@dataclass(frozen=True)
class CropBox:
    """A square crop of photograph ``photo`` (index into the split), in source pixels."""

    photo: int
    top: int
    left: int
    side: int
    flip: bool


class EmbeddedPhotos(Dataset):
    """Crops of bundled photographs; items are ``{"pixel_values": (3, S, S) in [-1, 1]}``.

    Args:
        split: "train" or "eval" ("validation", "val" and "test" mean "eval").
        image_size: side ``S`` of the crops.
        length: number of crops in one epoch (train) or in the fixed set (eval).
        random_crops: random crops (default for "train") or the fixed deterministic crops
            (default for "eval").
        max_zoom: largest zoom factor of training crops (1 = the whole short side).
        seed: for random crops, make item ``i`` a function of (seed, epoch, i); ``None`` uses the
            global torch RNG (DataLoader workers seed it per worker).
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 32,
        length: int | None = None,
        random_crops: bool | None = None,
        max_zoom: float = 4.0,
        seed: int | None = None,
    ):
        if split not in SPLIT_ALIASES:
            raise ValueError(f"unknown split {split!r} of the embedded photos; use one of {sorted(SPLIT_ALIASES)}")
        if max_zoom < 1:
            raise ValueError(f"max_zoom must be >= 1, got {max_zoom}")
        self.split = SPLIT_ALIASES[split]
        self.photos = SPLITS[self.split]
        self.image_size = int(image_size)
        self.length = int(length if length is not None else (1000 if self.split == "train" else 64))
        self.random_crops = self.split == "train" if random_crops is None else bool(random_crops)
        self.max_zoom = float(max_zoom)
        self.seed = seed
        self.epoch = 0
        self.images = [load_photo(photo) for photo in self.photos]
        self._fixed_boxes = None if self.random_crops else self._draw_fixed_boxes()

    @property
    def source_names(self) -> list[str]:
        """Names of the photographs this split is cut from."""
        return [photo.name for photo in self.photos]

    def set_epoch(self, epoch: int) -> None:
        """With a ``seed``, give a different (still reproducible) set of random crops per epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} embedded crops")
        if self._fixed_boxes is not None:
            box = self._fixed_boxes[index]
        else:
            generator = None
            if self.seed is not None:
                state = np.random.SeedSequence((self.seed, self.epoch, index)).generate_state(1, dtype=np.uint64)[0]
                generator = torch.Generator().manual_seed(int(state) >> 1)
            box = self._draw_box(int(torch.randint(len(self.images), (1,), generator=generator)), generator, True)
        return {"pixel_values": self.crop(box)}

    def crop(self, box: CropBox) -> torch.Tensor:
        """Cut ``box`` out of its photograph and resize it to ``image_size`` -> [-1, 1]."""
        size = [self.image_size, self.image_size]
        image = TF.resized_crop(
            self.images[box.photo], box.top, box.left, box.side, box.side, size,
            interpolation=InterpolationMode.BICUBIC, antialias=True,
        ).clamp(0.0, 1.0)
        if box.flip:
            image = TF.horizontal_flip(image)
        return unit_to_signed(image).contiguous()

    def _draw_box(self, photo: int, generator: torch.Generator | None, allow_flip: bool) -> CropBox:
        height, width = self.images[photo].shape[-2:]
        short = min(height, width)
        # zoom s: the crop spans short / s source pixels, never fewer than image_size (native resolution)
        most_zoom = max(1.0, min(self.max_zoom, short / self.image_size))
        zoom = math.exp(float(torch.rand((), generator=generator)) * math.log(most_zoom))
        side = max(1, min(short, round(short / zoom)))
        top = int(torch.randint(height - side + 1, (1,), generator=generator))
        left = int(torch.randint(width - side + 1, (1,), generator=generator))
        flip = allow_flip and bool(torch.rand((), generator=generator) < 0.5)
        return CropBox(photo, top, left, side, flip)

    def _draw_fixed_boxes(self) -> list[CropBox]:
        generator = torch.Generator().manual_seed(EVAL_SEED)
        return [self._draw_box(i % len(self.images), generator, False) for i in range(self.length)]

    def __repr__(self) -> str:
        kind = "random" if self.random_crops else "fixed"
        return (
            f"EmbeddedPhotos(split={self.split!r}, image_size={self.image_size}, length={self.length}, "
            f"{kind} crops of {', '.join(self.source_names)})"
        )
