import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_zoo.data import ImageTooSmallError, eval_transform, train_transform


def _gradient(height, width):
    """uint8 image whose pixels are all distinct enough to locate a crop."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([ys * 255 // max(height - 1, 1), xs * 255 // max(width - 1, 1), (ys + xs) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(40, 60), (60, 40), (32, 32), (9, 200)])
def test_output_shape_dtype_and_range(train, shape):
    transform = train_transform(32) if train else eval_transform(32)
    out = transform(Image.fromarray(_gradient(*shape)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out.max() - out.min() > 0.5  # not collapsed


def test_eval_is_center_crop_when_no_resize_is_needed():
    image = _gradient(32, 48)  # short side already 32: Resize is the identity
    out = eval_transform(32)(image)
    expected = torch.from_numpy(image[:, 8:40].copy()).permute(2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_train_crop_is_a_window_of_the_image_and_random():
    image = _gradient(32, 64)
    reference = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0
    offsets = set()
    for seed in range(8):
        out = train_transform(32, generator=torch.Generator().manual_seed(seed))(image)
        matches = [left for left in range(33) if torch.allclose(out, reference[:, :, left : left + 32], atol=1e-5)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1


def test_small_images_are_upscaled_and_tiny_ones_rejected():
    out = eval_transform(32)(Image.fromarray(_gradient(10, 10)))
    assert out.shape == (3, 32, 32)
    with pytest.raises(ImageTooSmallError):
        eval_transform(32)(Image.fromarray(_gradient(4, 100)))
