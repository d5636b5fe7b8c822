"""resnet50_logits mechanics with a tiny randomly initialised torchvision ResNet standing in for the
ImageNet ResNet-50 (whose weights cannot be downloaded here); the real loading path with a random
full-size ResNet-50 state dict; and the missing-weights error."""

import pytest
import torch
from torchvision.models.resnet import BasicBlock, ResNet, resnet50

from tokenizer_zoo.losses import PERCEPTUAL, LogitsDistance, ResNetWeightsMissingError, build_resnet50_logits
from tokenizer_zoo.losses.resnet import IMAGENET_MEAN, IMAGENET_STD


def _tiny_resnet():
    torch.manual_seed(0)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=1000)  # random weights, a test stand-in


def test_registered_and_built_with_an_injected_network():
    distance = PERCEPTUAL.build("resnet50_logits", network=_tiny_resnet(), resolution=64)
    assert isinstance(distance, LogitsDistance)
    assert not any(p.requires_grad for p in distance.parameters())
    distance.train()
    assert not distance.training and not distance.network.training  # batch norm keeps ImageNet statistics


def test_preprocessing_maps_to_imagenet_normalised_224_pixels():
    distance = LogitsDistance(_tiny_resnet())
    images = torch.full((2, 3, 32, 32), -1.0)
    images[:, 1] = 1.0
    pre = distance.preprocess(images)
    assert pre.shape == (2, 3, 224, 224)
    expected = [(0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (1 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]]
    torch.testing.assert_close(pre[:, 0].mean(), torch.tensor(expected[0]))
    torch.testing.assert_close(pre[:, 1].mean(), torch.tensor(expected[1]))


def test_distance_is_the_mse_of_logits_and_trains_only_the_prediction():
    distance = LogitsDistance(_tiny_resnet(), resolution=64)
    target = torch.rand(3, 3, 32, 32) * 2 - 1
    prediction = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    target.requires_grad_(True)
    values = distance(prediction, target)
    assert values.shape == (3,)
    expected = (distance.logits(prediction) - distance.logits(target)).square().mean(dim=1)
    torch.testing.assert_close(values, expected)
    assert distance(target, target).abs().max() == 0
    values.sum().backward()
    assert prediction.grad.abs().sum() > 0 and target.grad is None


def test_missing_weights_raise_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ResNetWeightsMissingError, match=r"resnet50-0676ba61\.pth.*weights_path="):
        build_resnet50_logits(download=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResNetWeightsMissingError, match="downloads are off"):
        PERCEPTUAL.build("resnet50_logits")
    with pytest.raises(ResNetWeightsMissingError, match="does not exist"):
        build_resnet50_logits(weights_path=tmp_path / "nothing.safetensors")


def test_weights_from_a_local_file_are_loaded_exactly(tmp_path):
    from safetensors.torch import save_file

    state = resnet50().state_dict()  # random: only the loading is under test
    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    distance = build_resnet50_logits(weights_path=path)
    assert distance.network.weights_source == str(path)
    for name, value in distance.network.state_dict().items():
        assert torch.equal(value, state[name]), name
