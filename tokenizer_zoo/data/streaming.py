"""Streamed training data: Hub datasets and image folders read as they train, never downloaded whole.

    accelerate launch recipes/flowmo_1a.py --config recipes/configs/lo.yaml dataset=imagenet-1k dataset_streaming=true

:func:`load_streamed_images` opens ``datasets.load_dataset(..., streaming=True)``, gives each process
its part with ``datasets.distributed.split_dataset_by_node`` (whole shards when their number divides
by the number of processes, else every n-th example), shuffles with a buffer
(``IterableDataset.shuffle(seed, buffer_size)``; the shard order changes with the epoch) and decodes
each row by the rules of :func:`tokenizer_zoo.data.loading.read_image_record`. Unreadable images are
skipped and reported with the next item, as :class:`~tokenizer_zoo.data.bad_images.SkipBadImages` does.

:class:`StreamedImages` is a torch ``IterableDataset`` that never ends: after the last example of its
part it starts the next epoch, so processes with parts of different lengths never wait for each other.
Its ``state_dict`` (the epoch and the stream's own ``state_dict``) is saved per process with every
checkpoint, so a resumed run continues each stream where it stopped. What the shuffle buffer held at
the checkpoint is not part of that state (``datasets`` does not save it): those examples are skipped
for the rest of that epoch, so a resumed streamed run sees the same images as far as the checkpoint,
and different ones after it.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from tokenizer_zoo.data.bad_images import BAD_IMAGE_ERRORS, SKIPPED_KEY
from tokenizer_zoo.data.loading import (DatasetLoadError, _hf_source, _load_hf, _relative_name, find_image_column,
                                        read_image_record)
from tokenizer_zoo.data.transforms import ImageTransform
from tokenizer_zoo.errors import one_line


class StreamedImages(torch.utils.data.IterableDataset):
    """``{"pixel_values", SKIPPED_KEY}`` items of one process's part of a streamed dataset, epoch after epoch."""

    def __init__(self, stream: Any, column: str, transform: ImageTransform, description: str, root: str | None,
                 strict: bool = False):
        self.stream, self.column, self.transform = stream, column, transform
        self.description, self.root, self.strict = description, root, strict
        self.epoch = 0
        self._epoch_start = stream.state_dict()  # a loaded state holds for every later pass: reset it each epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        skipped: list[tuple[str, str]] = []
        while True:
            self.stream.set_epoch(self.epoch)
            for row in self.stream:
                name = _relative_name((row[self.column] or {}).get("path"), self.root) or "a streamed row"
                try:
                    pixels = read_image_record(row, self.column, self.transform, self.description, self.root, name)
                except BAD_IMAGE_ERRORS as error:
                    if self.strict:
                        raise
                    skipped.append((name, one_line(error)))
                    continue
                yield {"pixel_values": pixels, SKIPPED_KEY: skipped}
                skipped = []
            self.epoch += 1
            self.stream.load_state_dict(self._epoch_start)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "stream": self.stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.stream.set_epoch(self.epoch)
        self.stream.load_state_dict(state["stream"])

    def __repr__(self) -> str:
        return f"StreamedImages({self.description}, column={self.column!r}, {self.transform})"


def load_streamed_images(name: str, split: str, image_size: int, train: bool = True, image_column: str | None = None,
                         seed: int = 0, shuffle_buffer: int = 1000, rank: int = 0, world_size: int = 1,
                         strict: bool = False, **load_kwargs: Any) -> StreamedImages:
    """Process ``rank``'s part of a streamed Hub dataset or ``imagefolder:PATH`` (see the module docstring)."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    if name in ("embedded", "digits"):
        raise DatasetLoadError(f"dataset_streaming=true reads Hub datasets and image folders; {name!r} is bundled "
                               "with tokenizer-zoo and read from memory: set dataset_streaming=false")
    name, data_dir = _hf_source(name, None)
    description = (f"imagefolder {data_dir} [{split}] (streamed)" if name == "imagefolder"
                   else f"Hugging Face dataset {name!r} [{split}] (streamed)")
    stream = _load_hf(name, split, data_dir, description, {**load_kwargs, "streaming": True})
    column = find_image_column(stream.features, image_column, description)
    stream = stream.cast_column(column, datasets.Image(decode=False))
    stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
    if train:
        stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer)
    return StreamedImages(stream, column, ImageTransform(image_size, train=train), description,
                          data_dir if name == "imagefolder" else None, strict)
