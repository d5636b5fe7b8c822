"""PSNR and SSIM against scikit-image, on random and real images, one batch or streamed."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.metrics.helpers import noisy, photo_crops, stream
from tokenizer_zoo.metrics import PSNR, SSIM, psnr, ssim


def _skimage_ssim(images: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """scikit-image's SSIM of each pair of [-1, 1] images, mapped to [0, 1] first."""
    values = []
    for image, reference in zip(images.double().numpy(), references.double().numpy()):
        values.append(
            structural_similarity(
                (image.transpose(1, 2, 0) + 1) / 2,
                (reference.transpose(1, 2, 0) + 1) / 2,
                channel_axis=-1,
                data_range=1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
        )
    return np.array(values)


def _skimage_psnr(images: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    pairs = zip(images.double().numpy(), references.double().numpy())
    return np.array([peak_signal_noise_ratio(reference, image, data_range=2) for image, reference in pairs])


def _random_pairs(seed: int, shape=(5, 3, 23, 31)):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    return images, noisy(images, 0.2, seed)


def _real_pairs():
    references = photo_crops()
    blurred = torch.nn.functional.avg_pool2d(references, 3, stride=1, padding=1, count_include_pad=False)
    return torch.cat([noisy(references, 0.1), blurred]), torch.cat([references, references])


@pytest.mark.parametrize(
    "pairs", [_random_pairs(0), _random_pairs(1, (3, 1, 11, 16)), _real_pairs()], ids=["random", "gray-11px", "real"]
)
def test_per_image_values_match_skimage(pairs):
    images, references = pairs
    ours = ssim((images + 1) / 2, (references + 1) / 2).numpy()
    np.testing.assert_allclose(ours, _skimage_ssim(images, references), atol=1e-10)
    np.testing.assert_allclose(psnr(images, references).numpy(), _skimage_psnr(images, references), rtol=1e-12)


def test_float32_inputs_agree_with_skimage_to_1e_5():
    images, references = (tensor.float() for tensor in _real_pairs())
    metric = SSIM()
    metric.update(images, references)
    assert metric.compute().item() == pytest.approx(_skimage_ssim(images, references).mean(), abs=1e-5)


@pytest.mark.parametrize("metric_class, reference", [(PSNR, _skimage_psnr), (SSIM, _skimage_ssim)])
def test_streaming_over_uneven_batches_equals_mean_over_images(metric_class, reference):
    images, references = _real_pairs()
    expected = reference(images, references).mean()
    one_shot = metric_class()
    one_shot.update(images, references)
    cuts = [0, 1, 5, 12]  # batches of 1, 4 and 7 images: a per-batch average would differ
    streamed = stream(metric_class(), [(images[a:b], references[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert one_shot.compute().item() == pytest.approx(expected, rel=1e-12)
    assert streamed.item() == pytest.approx(expected, rel=1e-12)
    assert streamed.dtype == torch.float64


def test_psnr_is_per_image_not_per_batch():
    references = torch.zeros(2, 3, 4, 4)
    images = references.clone()
    images[0] += 0.1  # mse 0.01 -> 26.02 dB; image 1 has mse 1e-4 -> 46.02 dB
    images[1] += 0.01
    metric = PSNR()
    metric.update(images, references)
    per_batch = 10 * np.log10(4 / ((0.01 + 1e-4) / 2))
    assert metric.compute().item() == pytest.approx(10 * np.log10(4 / 0.01) / 2 + 10 * np.log10(4 / 1e-4) / 2, rel=1e-6)
    assert abs(metric.compute().item() - per_batch) > 1


@pytest.mark.parametrize("metric_class", [PSNR, SSIM])
def test_value_range_maps_onto_the_default(metric_class):
    images, references = _random_pairs(3)
    default, unit = metric_class(), metric_class(value_range=(0, 1))
    default.update(images, references)
    unit.update((images + 1) / 2, (references + 1) / 2)
    assert unit.compute().item() == pytest.approx(default.compute().item(), rel=1e-12)


def test_identical_images_reach_the_maxima():
    images, _ = _random_pairs(4)
    psnr_metric, ssim_metric = PSNR(), SSIM()
    psnr_metric.update(images, images)
    ssim_metric.update(images, images)
    assert psnr_metric.compute().item() == pytest.approx(10 * np.log10(4 / 1e-20))
    assert ssim_metric.compute().item() == pytest.approx(1.0, abs=1e-12)


def test_reset_forgets_the_images():
    images, references = _random_pairs(5)
    metric = PSNR()
    metric.update(images, images)
    metric.reset()
    metric.update(images, references)
    assert metric.compute().item() == pytest.approx(_skimage_psnr(images, references).mean(), rel=1e-12)
