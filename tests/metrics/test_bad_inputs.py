"""Wrong inputs fail at update() with messages that say what was wrong and how to fix it."""

import pytest
import torch

from tests.metrics.helpers import TinyRandomLPIPS
from tokenizer_zoo.metrics import LPIPS, PSNR, SSIM, TokenStatistics

GOOD = torch.zeros(2, 3, 16, 16)


def _image_metrics():
    return [PSNR(), SSIM(), LPIPS(network=TinyRandomLPIPS())]


@pytest.mark.parametrize(
    "images, references, message",
    [
        (GOOD, torch.zeros(2, 3, 16, 15), "same shape"),
        (GOOD[0], GOOD[0], r"batches \(B, C, H, W\)"),
        (GOOD.to(torch.uint8), GOOD, r"floating-point images.*127\.5"),
        (GOOD, GOOD.long(), "floating-point references"),
        (GOOD + 200, GOOD, r"images in \[-1, 1\].*clamp"),
        (GOOD, GOOD - 1.5, r"references in \[-1, 1\], got values in \[-1\.5, -1\.5\]"),
        (GOOD, GOOD * float("nan"), r"references in \[-1, 1\]"),
        (GOOD.numpy(), GOOD, "torch.Tensor images"),
    ],
    ids=["shape", "unbatched", "uint8", "int-references", "0-255", "below-range", "nan", "numpy"],
)
def test_image_metrics_reject(images, references, message):
    for metric in _image_metrics():
        with pytest.raises((TypeError, ValueError), match=message):
            metric.update(images, references)
        assert metric.images.item() == 0


def test_small_overshoot_is_tolerated():
    metric = PSNR()
    metric.update(GOOD + 1.0005, GOOD)
    assert metric.images.item() == 2


def test_ssim_needs_the_window_and_lpips_three_channels():
    with pytest.raises(ValueError, match="at least 11x11"):
        SSIM().update(torch.zeros(1, 3, 10, 30), torch.zeros(1, 3, 10, 30))
    with pytest.raises(ValueError, match="3 channels"):
        LPIPS(network=TinyRandomLPIPS()).update(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize("value_range", [(1, -1), (0, 0)])
def test_empty_value_range(value_range):
    with pytest.raises(ValueError, match="low < high"):
        PSNR(value_range=value_range)


@pytest.mark.parametrize(
    "indices, size, error, message",
    [
        (torch.zeros(2, 4), (8, 8), TypeError, "integer token ids"),
        (torch.zeros(2, 4, dtype=torch.bool), (8, 8), TypeError, "integer token ids"),
        (torch.zeros(8, dtype=torch.long), (8, 8), ValueError, r"\(B, S\) or \(B, S, G\)"),
        (torch.full((2, 4), 16), (8, 8), ValueError, r"ids in \[16, 16\].*\[0, 15\].*2\*\*bits_per_group"),
        (torch.full((2, 4), -1), (8, 8), ValueError, r"ids in \[-1, -1\]"),
        (torch.zeros(2, 4, dtype=torch.long), 64, TypeError, r"image_size=\(H, W\)"),
        (torch.zeros(2, 4, dtype=torch.long), (0, 8), ValueError, "positive image_size"),
    ],
    ids=["float", "bool", "1-d", "too-large", "negative", "int-size", "zero-size"],
)
def test_token_statistics_reject(indices, size, error, message):
    stats = TokenStatistics(16)
    with pytest.raises(error, match=message):
        stats.update(indices, size)
    assert stats.histogram.sum().item() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 0}, "positive integer"),
        ({"vocab_size": 2**30}, "max_vocab_size"),
        ({"vocab_size": 4, "bits_per_token": 0}, "bits_per_token > 0"),
    ],
)
def test_token_statistics_constructor_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenStatistics(**kwargs)
