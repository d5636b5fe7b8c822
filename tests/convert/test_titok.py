"""The TiTok converter against the release's own outputs (tests/fixtures/titok_reference_tiny).

Tolerances from the fixture's README (float32): latents 1e-5, images 1e-4, tokens exact; run in float64
from the same weights, the port meets the release's float64 outputs to 1e-10. Images are compared after
the pipeline's [0, 1] mapping (the release's images are in [0, 1] already; the pipeline clamps).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tokenizer_zoo.convert import load_release
from tokenizer_zoo.convert import titok as fmt
from tokenizer_zoo.convert.keys import DroppedKeys, map_keys
from tokenizer_zoo.convert.reading import Checkpoint
from tokenizer_zoo.encoders.titok import TiTokEncoder
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.presets import build_tokenizer, get_preset

FIXTURE = Path(__file__).parents[1] / "fixtures" / "titok_reference_tiny"
FOLDER, TINY_CONFIG = FIXTURE / "checkpoint", FIXTURE / "tiny_config.json"
RELEASES = {"titok_l32_imagenet": "yucornetto/tokenizer_titok_l32_imagenet",
            "titok_b64_imagenet": "yucornetto/tokenizer_titok_b64_imagenet",
            "titok_s128_imagenet": "yucornetto/tokenizer_titok_s128_imagenet"}


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def pipe():
    return load_release(FOLDER, config=TINY_CONFIG)


def latents(release: torch.Tensor) -> torch.Tensor:
    """The release's (B, C, 1, N) latents as the zoo's (B, N, C) codes."""
    return release[:, :, 0].transpose(1, 2)


def test_detected_and_built_from_shapes_and_configs(pipe):
    assert pipe.info["release_format"] == "titok" and not pipe.info["dropped_keys"]
    encoder = pipe.encoder.config
    assert (encoder.width, encoder.num_layers, encoder.num_heads, encoder.patch_size) == (64, 2, 4, 8)
    assert encoder.legacy_reshape and encoder.input_range == "unit" and pipe.decoder.config.output_range == "unit"
    assert dict(pipe.decoder.config)["pixel_channel_mult"] == [1, 2, 2, 2] and pipe.image_size == 32


def test_tokens_latents_and_images(pipe, expected):
    images, tokens = expected["images"], expected["tokens"][:, 0]
    encoded = pipe.encode(images)
    assert torch.equal(encoded.indices, tokens)  # (batch, position)
    torch.testing.assert_close(pipe.encoder(images * 2 - 1), latents(expected["encoder_out"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(encoded.codes, latents(expected["quantized"]), atol=1e-5, rtol=0)
    codes = pipe.quantizer.indices_to_codes(tokens)
    torch.testing.assert_close(codes, latents(expected["quantized_from_tokens"]), atol=1e-5, rtol=0)
    with torch.no_grad():
        logits = pipe.decoder.logits(codes)
        torch.testing.assert_close(logits, expected["decoder_logits"], atol=1e-4, rtol=0)
        torch.testing.assert_close(pipe.decoder.pixel_codes(logits), expected["pixel_decoder_input"], atol=3e-5, rtol=0)
    for ids, release in ((tokens, "decoded"), (expected["extra_tokens"][:, 0], "extra_decoded")):
        decoded = pipe.decode(ids, output_type="pt").images
        torch.testing.assert_close(decoded, expected[release].clamp(0, 1), atol=1e-4, rtol=0)
    reconstructed = pipe(images, output_type="pt").images
    torch.testing.assert_close(reconstructed, expected["forward_reconstruction"].clamp(0, 1), atol=1e-4, rtol=0)


def test_float64_number_for_number(pipe, expected):
    """The strict proof: the port in float64 from the same float32 weights meets the release's float64 run."""
    encoder, quantizer, decoder = (part.to(torch.float64) for part in (pipe.encoder, pipe.quantizer, pipe.decoder))
    try:
        with torch.no_grad():
            images = expected["images"].double() * 2 - 1
            torch.testing.assert_close(encoder(images), latents(expected["encoder_out_f64"]), atol=1e-10, rtol=0)
            codes = quantizer.indices_to_codes(expected["tokens"][:, 0])
            torch.testing.assert_close(codes, latents(expected["quantized_from_tokens_f64"]), atol=1e-10, rtol=0)
            logits = decoder.logits(codes)
            torch.testing.assert_close(logits, expected["decoder_logits_f64"], atol=1e-10, rtol=0)
            torch.testing.assert_close(decoder.pixel_codes(logits), expected["pixel_decoder_input_f64"], atol=1e-10,
                                       rtol=0)
            torch.testing.assert_close((decoder(codes) + 1) / 2, expected["decoded_f64"], atol=1e-10, rtol=0)
            extra = quantizer.indices_to_codes(expected["extra_tokens"][:, 0])
            torch.testing.assert_close((decoder(extra) + 1) / 2, expected["extra_decoded_f64"], atol=1e-10, rtol=0)
    finally:
        for part in (encoder, quantizer, decoder):
            part.to(torch.float32)


def test_legacy_reshape_is_what_the_release_computes(pipe, expected):
    """The recorded switch matters: the natural permute layout gives other latents than the release."""
    natural = TiTokEncoder(**{**dict(pipe.encoder.config), "legacy_reshape": False}).eval()
    natural.load_state_dict(pipe.encoder.state_dict())
    with torch.no_grad():
        assert (natural(expected["images"] * 2 - 1) - latents(expected["encoder_out"])).abs().max() > 0.1


def test_unknown_keys_weights_and_stage1_are_one_line_errors(pipe):
    state = load_file(FOLDER / "model.safetensors")
    checkpoint = Checkpoint(path=FOLDER, name="edited", content={**state, "encoder.extra": torch.zeros(1)},
                            config=json.loads(TINY_CONFIG.read_text()))
    with pytest.raises(ConversionError, match="edited: 1 state-dict key"):
        fmt.load(checkpoint)
    with pytest.raises(ConversionError, match="one set of weights"):
        fmt.load(checkpoint, weights="raw")
    stage1 = {key: value for key, value in state.items() if not key.startswith("pixel_")}
    with pytest.raises(ConversionError, match="two-stage"):
        fmt.load(Checkpoint(path=FOLDER, name="stage1", content=stage1))


def public(config) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


@pytest.mark.parametrize("preset", sorted(RELEASES))
def test_released_layouts_map_completely_onto_the_presets(preset):
    """Every key of each released state dict maps onto the preset's component of the same shape; nothing is left."""
    shapes = json.loads((FIXTURE / "release_state_dict_shapes.json").read_text())[RELEASES[preset]]["state_dict"]
    state = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    dropped = DroppedKeys()
    parts = map_keys(state, fmt.RULES, {}, dropped, "release", "")
    spec = get_preset(preset)
    inferred = fmt.infer_config({key: tuple(shape) for key, shape in shapes.items()})
    with torch.device("meta"):
        tokenizer = build_tokenizer(spec)
        from_file = build_tokenizer(spec, **dict(zip(("encoder", "quantizer", "decoder"), inferred)))
    for part in ("encoder", "quantizer", "decoder"):
        assert public(getattr(from_file, part).config) == public(getattr(tokenizer, part).config)
        ours = {key: tuple(value.shape) for key, value in getattr(tokenizer, part).state_dict().items()}
        assert {key: tuple(value.shape) for key, value in parts[part].items()} == ours
    assert not dropped.entries


@pytest.mark.parametrize("preset, millions", [("titok_l32_imagenet", 641.05), ("titok_b64_imagenet", 204.81),
                                               ("titok_s128_imagenet", 83.67)])
def test_released_parameter_counts(preset, millions):
    """The presets' parameters equal the release's own layouts (the fixture's shapes file, built from the release's
    TiTok at its infer configs): 641.05 M, 204.81 M, 83.67 M including the MaskGiT-VQGAN pixel decoder."""
    shapes = json.loads((FIXTURE / "release_state_dict_shapes.json").read_text())[RELEASES[preset]]["state_dict"]
    with torch.device("meta"):
        tokenizer = build_tokenizer(preset)
    ours = sum(p.numel() for part in (tokenizer.encoder, tokenizer.quantizer, tokenizer.decoder)
               for p in part.parameters())
    assert ours == sum(math.prod(shape) for shape in shapes.values())
    assert ours / 1e6 == pytest.approx(millions, abs=0.005)


@pytest.mark.parametrize("preset", sorted(RELEASES))
def test_the_release_names_fetch_the_published_files(preset, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConversionError, match=f"cannot fetch model.safetensors from the Hub repo {RELEASES[preset]}"):
        load_release(preset, cache_dir=str(tmp_path))


def test_the_weights_file_alone_converts_given_the_heads(pipe, expected):
    """A release name fetches model.safetensors only: sizes come from the shapes, heads from the width (released
    sizes) or from a config; the tiny fixture's width is no released size, so it needs its JSON."""
    with pytest.raises(ConversionError, match="width 64 is none of the released sizes"):
        load_release(FOLDER / "model.safetensors")
    alone = load_release(FOLDER / "model.safetensors", config=TINY_CONFIG)
    assert torch.equal(alone.encode(expected["images"]).indices, expected["tokens"][:, 0])
