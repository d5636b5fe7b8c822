"""Reference codecs (issue 23): the thumbnail preset against a hand-computed thumbnail, JPEG and WebP
against Pillow's own files, and all three through recipes/evaluate.py."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from tests.recipes import run_recipe
from tokenizer_zoo.data import load_image_dataset
from tokenizer_zoo.pipelines import TokenizerPipeline, load_pipeline
from tokenizer_zoo.pipelines.codecs import FORMATS, CodecTokens, codec_pipeline
from tokenizer_zoo.presets import build_tokenizer, get_preset, thumbnail_preset


def _keys_upsampling(size_in: int, size_out: int, a: float = -0.75) -> np.ndarray:
    """(size_out, size_in) matrix of Keys' cubic interpolation, half-pixel centres, edge samples repeated."""
    def kernel(d):
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0

    matrix = np.zeros((size_out, size_in))
    for i in range(size_out):
        x = (i + 0.5) * size_in / size_out - 0.5
        for j in range(int(np.floor(x)) - 1, int(np.floor(x)) + 3):
            matrix[i, min(max(j, 0), size_in - 1)] += kernel(x - j)
    return matrix


def _photos(count: int) -> torch.Tensor:
    data = load_image_dataset("embedded", "eval", 32, train=False)
    return torch.stack([data[i]["pixel_values"] for i in range(count)])


def test_thumbnail_is_a_hand_computed_thumbnail():
    pipe = codec_pipeline("thumbnail_tiny")
    images = _photos(3)
    tokens = pipe.encode((images + 1) / 2)
    cells = images.double().numpy().reshape(3, 3, 4, 8, 4, 8).mean(axis=(3, 5))  # (B, C, 4, 4) cell means
    levels = np.round((cells + 1) / 2 * 63).astype(np.int64)  # 6 bits a colour, 0..63
    index = levels[:, 0] + 64 * levels[:, 1] + 64**2 * levels[:, 2]  # FSQ: first channel least significant
    np.testing.assert_array_equal(tokens.indices.numpy(), index.reshape(3, 16))
    upsample = _keys_upsampling(4, 32)
    want = np.clip(upsample @ (2 * levels / 63 - 1) @ upsample.T, -1, 1)
    got = pipe.decode(tokens, output_type="pt").images.double().numpy() * 2 - 1
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the same from integer token ids, and the bits of the compared model
    np.testing.assert_allclose(pipe.decode(tokens.indices, output_type="pt").images.numpy(), (got + 1) / 2, atol=1e-6)
    assert pipe.bits_per_pixel == get_preset("flowmo_tiny").bpp == 16 * 18 / 32**2


def test_thumbnail_saves_and_loads_as_a_pipeline_folder(tmp_path):
    pipe = codec_pipeline("thumbnail_tiny")
    pipe.save_pretrained(tmp_path)
    loaded = load_pipeline(tmp_path)
    images = torch.rand(2, 3, 32, 32)
    assert type(loaded) is TokenizerPipeline and loaded.info["preset"] == "thumbnail_tiny"
    torch.testing.assert_close(loaded(images, output_type="pt").images, pipe(images, output_type="pt").images,
                               rtol=0, atol=0)


@pytest.mark.parametrize("bits", [3, 20, 22])
def test_thumbnail_spends_exactly_the_bits_it_is_given(bits):
    preset = thumbnail_preset("t", image_size=32, code_length=64, bits_per_token=bits)
    assert preset.bits_per_token == bits and preset.bpp == 64 * bits / 32**2
    parts = build_tokenizer(preset)
    pipe = TokenizerPipeline(parts.encoder, parts.quantizer, parts.decoder)
    assert pipe.encode(torch.rand(1, 3, 32, 32)).indices.shape == (1, 64)


@pytest.mark.parametrize("name", ["jpeg_tiny", "webp_tiny"])
def test_file_codecs_write_pillows_closest_file(name):
    pipe = codec_pipeline(name)
    images = _photos(2)
    tokens = pipe.encode((images + 1) / 2)
    pil_name, qualities, settings = FORMATS[pipe.format]
    target = 16 * 18
    for k, (file, quality) in enumerate(zip(tokens.files, tokens.qualities)):
        image = Image.fromarray(np.round((images[k].permute(1, 2, 0).numpy() + 1) / 2 * 255).astype(np.uint8))
        sizes = {}
        for q in qualities:  # Pillow's own file at every quality; the codec must have chosen the closest
            buffer = io.BytesIO()
            image.save(buffer, format=pil_name, quality=q, **settings)
            sizes[q] = buffer.getvalue()
        assert file == sizes[quality]
        assert abs(8 * len(file) - target) == min(abs(8 * len(f) - target) for f in sizes.values())
        decoded = np.asarray(Image.open(io.BytesIO(file)).convert("RGB"), dtype=np.float64) / 255
        got = pipe.decode(CodecTokens([file], [quality]), output_type="np").images[0]
        np.testing.assert_allclose(got, decoded, atol=1e-6)
    with pytest.raises(TypeError, match="CodecTokens"):
        pipe.decode(torch.zeros(1, 16, dtype=torch.long))


def test_evaluate_recipe_reports_the_codecs(tmp_path):
    images = _photos(4)
    fast = ["--num-images", "4", "--batch-size", "2", "--no-fid", "--lpips"]
    thumbnail = run_recipe("evaluate", ["--model", "codec:thumbnail_tiny", "--output-dir", str(tmp_path / "t"), *fast])
    recon = codec_pipeline("thumbnail_tiny")((images + 1) / 2, output_type="pt").images.double().numpy() * 2 - 1
    scores = [peak_signal_noise_ratio(a, b, data_range=2) for a, b in zip(images.double().numpy(), recon)]
    assert abs(thumbnail["metrics"]["psnr"] - np.mean(scores)) < 1e-4
    assert thumbnail["metrics"]["bpp"] == 16 * 18 / 32**2
    jpeg = run_recipe("evaluate", ["--model", "codec:jpeg_tiny", "--output-dir", str(tmp_path / "j"), *fast])
    tokens = codec_pipeline("jpeg_tiny").encode((images + 1) / 2)
    assert jpeg["metrics"]["bpp"] == pytest.approx(sum(tokens.file_bits) / (4 * 32 * 32))
    assert jpeg["metrics"]["mean_quality"] == pytest.approx(np.mean(tokens.qualities))
    assert json.loads((tmp_path / "j" / "metrics.json").read_text())["skipped_metrics"]["tokens"].startswith("a file")
    with pytest.raises(SystemExit, match="unknown reference codec"):
        run_recipe("evaluate", ["--model", "codec:png_tiny", *fast])
