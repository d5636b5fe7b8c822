"""LlamaGen's VQ release: the converted pipeline against the release's own outputs, number for number.

``tests/fixtures/llamagen_vq_reference_tiny`` holds a checkpoint written by LlamaGen's own ``VQModel``
(commit ce98ec4) at a tiny size with perturbed weights, and its outputs on three fixed images; its
README states the conventions and the tolerance (indices exact, floats 1e-5 in fp32 on CPU).
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from tests.convert.fixtures import FIXTURES
from tokenizer_zoo.convert import llamagen, load_release
from tokenizer_zoo.convert.keys import dropped_of
from tokenizer_zoo.convert.reading import Checkpoint
from tokenizer_zoo.data.transforms import signed_to_unit
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.presets import build_tokenizer

FIXTURE = FIXTURES / "llamagen_vq_reference_tiny"
CHECKPOINT, CONFIG = FIXTURE / "vq_ds8_c2i_tiny.pt", FIXTURE / "config.json"
ATOL = 1e-5  # the fixture README's tolerance
CODEBOOK_USED = 65536  # the release's usage ring buffer, dropped


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def pipe():
    return load_release(CHECKPOINT, config=CONFIG)


def _unit_images(expected):
    """The release's [-1, 1] inputs as the [0, 1] images the pipeline takes."""
    return signed_to_unit(expected["images"])


def test_token_ids_equal_the_releases_in_batch_position_order(pipe, expected):
    indices = pipe.encode(_unit_images(expected)).indices
    assert indices.shape == (3, 16) and indices.dtype == torch.int64
    assert torch.equal(indices, expected["indices"].view(3, 16))  # the release's flat (b, row, col) order


def test_latents_match_the_release(pipe, expected):
    with torch.no_grad():
        latents = pipe.encoder(expected["images"])
    pre_quant = rearrange(expected["pre_quant"], "b c h w -> b (h w) c")
    torch.testing.assert_close(latents, pre_quant, rtol=0, atol=ATOL)
    codes = pipe.encode(_unit_images(expected)).codes
    torch.testing.assert_close(codes, rearrange(expected["quant_from_codes"], "b c h w -> b (h w) c"), rtol=0,
                               atol=ATOL)


def test_decoding_the_releases_ids_matches_its_decode_code(pipe, expected):
    images = pipe.decode(expected["indices"].view(3, 16), output_type="pt").images
    reference = signed_to_unit(expected["decoded_from_codes"].clamp(-1, 1))  # the pipeline's [0, 1] mapping
    torch.testing.assert_close(images, reference, rtol=0, atol=ATOL)
    torch.testing.assert_close(pipe(_unit_images(expected), output_type="pt").images, reference, rtol=0, atol=ATOL)


def test_the_architecture_is_read_from_the_shapes(pipe):
    config = json.loads(CONFIG.read_text())
    args, sizes = config["model_args"], config["encoder_decoder_kwargs"]
    encoder = pipe.encoder.config
    assert list(encoder.block_out_channels) == [sizes["ch"] * m for m in args["encoder_ch_mult"]]
    assert (encoder.latent_channels, encoder.code_dim, encoder.layers_per_block) == (
        args["z_channels"], args["codebook_embed_dim"], sizes["num_res_blocks"])
    assert (pipe.quantizer.config.codebook_size, pipe.quantizer.config.distance) == (args["codebook_size"], "cosine")
    assert pipe.image_size == config["image_size"] and pipe.info["preset"] is None
    parameters = sum(p.numel() for part in (pipe.encoder, pipe.quantizer, pipe.decoder) for p in part.parameters())
    assert parameters == config["num_parameters"]
    tensors = [t for part in (pipe.encoder, pipe.quantizer, pipe.decoder) for t in [*part.parameters(), *part.buffers()]]
    assert not any(t.is_meta for t in tensors)
    assert load_release(CHECKPOINT, config=CONFIG).quantizer.usage_counts.sum() == 0  # a fresh counter, not garbage
    assert dropped_of(pipe).entries == [("quantize.codebook_used", CODEBOOK_USED,
                                         "training-only codebook usage ring buffer")]


def _meta_checkpoint(shapes: dict[str, list[int]], name: str) -> Checkpoint:
    state = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    return Checkpoint(FIXTURE / name, name, {"model": state})


def test_the_released_vq8_layout_maps_completely_onto_the_llamagen_vq8_preset():
    """Every key of the full-size vq_ds8_c2i.pt layout is mapped (or is the dropped buffer), with the preset's shapes."""
    shapes = json.loads((FIXTURE / "release_vq8_state_dict_shapes.json").read_text())
    converted = llamagen.load(_meta_checkpoint(shapes, "vq_ds8_c2i.pt"))  # strict loads check every shape
    assert converted.info["preset"] == "llamagen_vq8"
    assert converted.bits_per_pixel == 32 * 32 * 14 / 256**2
    kept = sum(p.numel() for part in (converted.encoder, converted.quantizer, converted.decoder)
               for p in part.parameters())
    total = sum(torch.Size(shape).numel() for shape in shapes.values())
    assert kept + dropped_of(converted).values == total and dropped_of(converted).values == CODEBOOK_USED


@pytest.mark.parametrize("preset, published", [("llamagen_vq16", 72e6), ("llamagen_vq8", 70e6)])
def test_full_size_parameter_counts_match_the_published_figures(preset, published):
    """LlamaGen's README ("Image tokenizers" table, commit ce98ec4): vq_ds16_c2i 72M, vq_ds8_c2i 70M parameters."""
    with torch.device("meta"):
        parts = build_tokenizer(preset)
    count = sum(p.numel() for part in (parts.encoder, parts.quantizer, parts.decoder) for p in part.parameters())
    assert round(count / 1e6) == published / 1e6


def test_an_argparse_namespace_under_args_is_admitted_and_ema_weights_are_preferred(tmp_path, expected):
    content = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    ema = {key: value.clone() for key, value in content["model"].items()}
    ema["decoder.conv_out.bias"] += 0.5  # the "ema" weights decode brighter
    training_file = tmp_path / "vq_train_checkpoint.pt"
    torch.save({"model": content["model"], "ema": ema, "steps": 10, "args": argparse.Namespace(vq_model="VQ-8")},
               training_file)
    raw = load_release(training_file, config=CONFIG, weights="raw")
    averaged = load_release(training_file, config=CONFIG)
    assert (raw.info["weights"], averaged.info["weights"]) == ("model", "ema")
    torch.testing.assert_close(averaged.decoder.decoder.conv_out.bias, raw.decoder.decoder.conv_out.bias + 0.5)


def test_a_layout_the_release_never_wrote_is_refused_in_one_line(tmp_path):
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["model"]
    state["encoder.conv_blocks.0.attn.0.q.weight"] = torch.zeros(32, 32, 1, 1)  # attention at full resolution
    torch.save({"model": state}, tmp_path / "modified.pt")
    with pytest.raises(ConversionError, match=r"modified\.pt: not a LlamaGen VQ checkpoint of the released layout: "
                                              r"not true that self-attention sits at the deepest level only"):
        load_release(tmp_path / "modified.pt", config=CONFIG)
    del state["encoder.conv_blocks.0.attn.0.q.weight"]
    state["quantize.extra_buffer"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "extra.pt")
    with pytest.raises(ConversionError, match=r"extra\.pt: 1 state-dict key\(s\) that a LlamaGen VQ checkpoint does "
                                              r"not have \(quantize\.extra_buffer\)"):
        load_release(tmp_path / "extra.pt", config=CONFIG)
