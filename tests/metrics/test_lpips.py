"""LPIPS metric: properties with a tiny random network, real values when the weights are imported."""

import pytest
import torch

from tests.metrics.helpers import TinyRandomLPIPS, noisy, photo_crops, stream
from tokenizer_zoo.losses import IMPORT_COMMAND, LPIPSWeightsMissingError, build_lpips
from tokenizer_zoo.metrics import LPIPS

NOISE_LEVELS = (0.03, 0.1, 0.3, 0.6)


def _lpips(network, images, references, **kwargs):
    metric = LPIPS(network=network, **kwargs)
    metric.update(images, references)
    return metric.compute().item()


def _check_properties(network):
    references = photo_crops().float()
    distorted = noisy(references, 0.2)
    assert _lpips(network, references, references) == 0.0
    assert _lpips(network, distorted, references) == _lpips(network, references, distorted)
    distances = [_lpips(network, noisy(references, level), references) for level in NOISE_LEVELS]
    assert distances == sorted(distances) and distances[0] > 0, distances


def test_tiny_random_network_properties():
    _check_properties(TinyRandomLPIPS())


def test_streaming_equals_the_mean_of_per_image_distances():
    network = TinyRandomLPIPS()
    references = photo_crops().float()
    images = noisy(references, 0.2)
    expected = network(images, references).double().mean().item()
    batches = [(images[:1], references[:1]), (images[1:4], references[1:4]), (images[4:], references[4:])]
    assert stream(LPIPS(network=network), batches).item() == pytest.approx(expected, rel=1e-6)


def test_value_range_is_mapped_to_minus_one_one():
    network = TinyRandomLPIPS()
    references = photo_crops().float()
    images = noisy(references, 0.2)
    unit = _lpips(network, (images + 1) / 2, (references + 1) / 2, value_range=(0, 1))
    assert unit == pytest.approx(_lpips(network, images, references), rel=1e-5)


def test_metric_and_network_stay_in_eval_mode():
    metric = LPIPS(network=torch.nn.Sequential(torch.nn.Dropout()))
    metric.train()
    assert not metric.training and not metric.network.training
    assert not any(parameter.requires_grad for parameter in LPIPS(network=TinyRandomLPIPS()).parameters())


class PixelDifference(torch.nn.Module):
    """Returns a distance per pixel instead of per image: a wrong network for LPIPS."""

    def forward(self, images, references):
        return (images - references).abs()


def test_network_must_return_one_distance_per_image():
    metric = LPIPS(network=PixelDifference())
    with pytest.raises(ValueError, match="one value per image"):
        metric.update(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))


@pytest.fixture(scope="module", params=["vgg", "alex"])
def real_network(request):
    try:
        return build_lpips(request.param)
    except LPIPSWeightsMissingError:
        pytest.skip(f"LPIPS {request.param} weights are not on this machine; import them with `{IMPORT_COMMAND}`")


def test_real_weights_properties_and_values(real_network):
    _check_properties(real_network)
    references = photo_crops().float()
    images = noisy(references, 0.15)
    with torch.no_grad():
        expected = real_network(images, references).double().mean().item()
    batches = [(images[:2], references[:2]), (images[2:], references[2:])]
    assert stream(LPIPS(network=real_network), batches).item() == pytest.approx(expected, rel=1e-6)


def test_builds_the_real_network_by_name_or_reports_the_import_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_ZOO_CACHE", str(tmp_path / "zoo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(LPIPSWeightsMissingError, match="import_weights lpips"):
        LPIPS("alex")
