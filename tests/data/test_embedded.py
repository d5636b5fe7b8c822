import hashlib

import pytest
import torch

from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.data.embedded import EVAL_PHOTOS, TRAIN_PHOTOS, load_photo


def _digest(tensor):
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


def test_train_and_eval_use_disjoint_photographs():
    train, evaluation = EmbeddedPhotos("train", 16, length=4), EmbeddedPhotos("eval", 16, length=4)
    assert not set(train.source_names) & set(evaluation.source_names)
    train_pixels = {_digest(load_photo(p)) for p in TRAIN_PHOTOS}
    eval_pixels = {_digest(load_photo(p)) for p in EVAL_PHOTOS}
    assert len(train_pixels) == len(TRAIN_PHOTOS) and len(eval_pixels) == len(EVAL_PHOTOS)
    assert not train_pixels & eval_pixels


def test_photos_are_real_colour_photographs():
    for photo in TRAIN_PHOTOS + EVAL_PHOTOS:
        image = load_photo(photo)
        assert image.shape[0] == 3 and min(image.shape[1:]) >= 256, photo.name
        assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05, photo.name


def test_eval_set_is_fixed_and_ignores_the_global_rng():
    torch.manual_seed(1)
    first = torch.stack([EmbeddedPhotos("eval", 24, length=6)[i]["pixel_values"] for i in range(6)])
    torch.manual_seed(2)
    torch.rand(100)
    second = torch.stack([EmbeddedPhotos("validation", 24, length=6)[i]["pixel_values"] for i in range(6)])
    assert torch.equal(first, second)
    assert len({_digest(x) for x in first}) == 6  # six different crops
    dataset = EmbeddedPhotos("eval", 24, length=6)
    assert [box.photo for box in dataset._fixed_boxes] == [0, 1, 2, 0, 1, 2]


def test_train_crops_are_random_but_seedable():
    unseeded = EmbeddedPhotos("train", 16, length=10)
    assert not torch.equal(unseeded[0]["pixel_values"], unseeded[0]["pixel_values"])
    seeded = EmbeddedPhotos("train", 16, length=10, seed=3)
    again = EmbeddedPhotos("train", 16, length=10, seed=3)
    assert torch.equal(seeded[7]["pixel_values"], again[7]["pixel_values"])
    before = seeded[7]["pixel_values"]
    seeded.set_epoch(1)
    assert not torch.equal(before, seeded[7]["pixel_values"])


def test_items_shape_range_and_length():
    dataset = EmbeddedPhotos("train", 32, length=12)
    assert len(dataset) == 12
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))["pixel_values"]
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    with pytest.raises(IndexError):
        dataset[12]
    with pytest.raises(ValueError, match="unknown split"):
        EmbeddedPhotos("holdout")


def test_train_crop_geometry_stays_inside_the_photo_and_above_native_resolution():
    dataset = EmbeddedPhotos("train", 64, length=1, max_zoom=4.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        photo = int(torch.randint(len(dataset.images), (1,), generator=generator))
        box = dataset._draw_box(photo, generator, True)
        height, width = dataset.images[photo].shape[-2:]
        assert 64 <= box.side <= min(height, width)
        assert box.side >= min(height, width) / 4.0 - 1
        assert 0 <= box.top <= height - box.side and 0 <= box.left <= width - box.side
