"""TokenizerPipeline.from_diffusers: diffusers' own AutoencoderKL and VQModel equal themselves as zoo tokenizers.

Tiny randomly initialised diffusers models (no published weights are needed to show the wrapping is exact):
the pipeline's codes, token ids and decoded images are compared with what the diffusers model computes itself.
"""

from __future__ import annotations

import diffusers
import pytest
import torch

from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.pipelines import TokenizerPipeline, load_pipeline
from tokenizer_zoo.pipelines.hub import model_card

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, sample_size=16,
            layers_per_block=1)


@pytest.fixture(scope="module")
def kl():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(**TINY).eval()


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(1)
    model = diffusers.VQModel(**TINY, num_vq_embeddings=32, vq_embed_dim=3).eval()
    with torch.no_grad():
        model.quantize.embedding.weight.normal_()  # diffusers' initial codebook is nearly constant
    return model


def _images(count: int = 3) -> torch.Tensor:
    return torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def _flat(latents: torch.Tensor) -> torch.Tensor:
    return latents.flatten(2).transpose(1, 2)  # (b, c, h, w) -> (b, h * w, c), row-major


@torch.no_grad()
def test_autoencoder_kl_encodes_and_decodes_as_diffusers(kl):
    pipe = TokenizerPipeline.from_diffusers(kl)
    images = _images()
    latents = kl.encode(unit_to_signed(images)).latent_dist.mode()
    encoded = pipe.encode(images)
    assert encoded.indices is None
    torch.testing.assert_close(encoded.codes, _flat(latents), rtol=0, atol=1e-6)
    decoded = pipe.decode(encoded.codes, output_type="pt").images
    torch.testing.assert_close(decoded, signed_to_unit(kl.decode(latents).sample.clamp(-1, 1)), rtol=0, atol=1e-6)
    assert pipe.bpp_label == "continuous (256 floats)"  # 8 x 8 latents x 4 channels
    assert "| bits per pixel (BPP) | continuous (256 floats) |" in model_card(pipe, "someone/tiny-kl")


@torch.no_grad()
def test_vqmodel_token_ids_and_decodes_equal_diffusers(vq):
    pipe = TokenizerPipeline.from_diffusers(vq)
    images = _images()
    latents = vq.encode(unit_to_signed(images)).latents
    quantized, _, (_, _, indices) = vq.quantize(latents)
    encoded = pipe.encode(images)
    assert torch.equal(encoded.indices, indices.view(3, 64))  # (batch, row, column)
    torch.testing.assert_close(encoded.codes, _flat(quantized), rtol=0, atol=1e-6)
    decoded = pipe.decode(encoded.indices, output_type="pt").images
    torch.testing.assert_close(decoded, signed_to_unit(vq.decode(latents).sample.clamp(-1, 1)), rtol=0, atol=1e-5)
    assert pipe.bits_per_pixel == 64 * 5 / 16**2


@pytest.mark.parametrize("which", ["kl", "vq"])
def test_folders_and_the_save_load_round_trip(which, kl, vq, tmp_path):
    model = {"kl": kl, "vq": vq}[which]
    model.save_pretrained(tmp_path / "release" / "vae")
    pipe = TokenizerPipeline.from_diffusers(tmp_path / "release", subfolder="vae")
    pipe.save_pretrained(tmp_path / "zoo")
    loaded = load_pipeline(tmp_path / "zoo")
    images = _images(2)
    with torch.no_grad():
        first, again = pipe(images, output_type="pt").images, loaded(images, output_type="pt").images
    assert torch.equal(first, again) and loaded.info["release_format"] == "diffusers"


def test_other_models_and_folders_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConversionError, match="from_diffusers wraps AutoencoderKL, VQModel, not UNet2DModel"):
        TokenizerPipeline.from_diffusers(diffusers.UNet2DModel(
            block_out_channels=(8, 8), down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
            norm_num_groups=4, sample_size=8, layers_per_block=1))
    with pytest.raises(ConversionError, match="no diffusers model config there") as raised:
        TokenizerPipeline.from_diffusers(tmp_path)
    assert "\n" not in str(raised.value)
