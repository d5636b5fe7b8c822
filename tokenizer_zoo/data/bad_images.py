"""Training on folders with a few unreadable files: a bad image is replaced by the next readable one.

:class:`SkipBadImages` wraps a map-style image dataset. Reading item ``i`` tries ``i``, ``i + 1``, ...
until an image decodes, so every batch stays full (data-parallel processes never wait on a short one)
and the batches are a function of the indices alone (resume stays exact). Each item carries the files
it skipped under :data:`SKIPPED_KEY` as ``(name, reason)`` pairs; :func:`collate_skipping` gathers them
into a list per batch, which the trainer logs and counts
(:class:`tokenizer_zoo.training.bad_images.BadImageLog`). With ``strict=True`` the first bad image
raises, as without the wrapper.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset, default_collate

from tokenizer_zoo.data.images import InvalidImageError
from tokenizer_zoo.data.loading import DatasetLoadError
from tokenizer_zoo.errors import one_line

SKIPPED_KEY = "skipped_images"
MAX_BAD_IN_A_ROW = 100
"""A read that meets this many unreadable files in a row stops: the folder is wrong, not a few files."""

BAD_IMAGE_ERRORS = (InvalidImageError, DatasetLoadError)


class TooManyBadImagesError(RuntimeError):
    """So many images are unreadable that the dataset is probably not the one meant."""


def image_name(dataset: Any, index: int) -> str:
    """``dataset``'s name for item ``index``: its file (datasets with ``file_name``) or "item N"."""
    file_name = getattr(dataset, "file_name", None)
    return file_name(index) if file_name is not None else f"item {index}"


class SkipBadImages(Dataset):
    """``dataset`` whose unreadable items are replaced by the next readable one (see the module docstring)."""

    def __init__(self, dataset: Dataset, strict: bool = False):
        self.dataset = dataset
        self.strict = strict

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[tuple[str, str]] = []
        for attempt in range(min(len(self.dataset), MAX_BAD_IN_A_ROW)):
            current = (int(index) + attempt) % len(self.dataset)
            try:
                item = self.dataset[current]
            except BAD_IMAGE_ERRORS as error:
                if self.strict:
                    raise
                skipped.append((image_name(self.dataset, current), one_line(error)))
                continue
            return {**item, SKIPPED_KEY: skipped}
        raise TooManyBadImagesError(
            f"{len(skipped)} images in a row are unreadable (the last: {skipped[-1][1]}); check that the dataset "
            "is the folder of images you meant")

    def __repr__(self) -> str:
        return f"SkipBadImages({self.dataset!r}, strict={self.strict})"


def collate_skipping(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` of the items, with the files they skipped as one list under :data:`SKIPPED_KEY`."""
    skipped = [entry for item in items for entry in item.get(SKIPPED_KEY, [])]
    batch = default_collate([{k: v for k, v in item.items() if k != SKIPPED_KEY} for item in items])
    batch[SKIPPED_KEY] = skipped
    return batch
