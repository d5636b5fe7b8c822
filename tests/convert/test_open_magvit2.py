"""The Open-MAGVIT2 converter against the release's own outputs (tests/fixtures/open_magvit2_reference_tiny).

Tolerances from the fixture's README: latents 1e-5, images 1e-4 (the reference's own float noise is
~1e-5 there), indices exact. Images are compared after the pipeline's [0, 1] mapping.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from tokenizer_zoo.convert import load_release
from tokenizer_zoo.convert import open_magvit2 as fmt
from tokenizer_zoo.convert.keys import DroppedKeys, map_keys
from tokenizer_zoo.convert.reading import Checkpoint
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.presets import build_tokenizer, get_preset
from tokenizer_zoo.quantizers.lfq import factorize_indices, merge_factorized

FIXTURE = Path(__file__).parents[1] / "fixtures" / "open_magvit2_reference_tiny"
CKPT, CONFIG = FIXTURE / "open_magvit2_tiny.ckpt", FIXTURE / "config.yaml"
LATENT_ATOL, IMAGE_ATOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def pipes():
    return {weights: load_release(CKPT, config=CONFIG, weights=weights) for weights in ("ema", "raw")}


def unit(signed: torch.Tensor) -> torch.Tensor:
    """The release's [-1, 1] images as the pipeline returns them: [0, 1], clamped."""
    return ((signed + 1) / 2).clamp(0, 1)


def grid(codes: torch.Tensor, height: int) -> torch.Tensor:
    return rearrange(codes, "b (h w) d -> b d h w", h=height)


def test_detected_and_built_from_shapes_and_yaml(pipes):
    pipe = pipes["ema"]
    assert pipe.info["release_format"] == "open-magvit2" and pipe.info["weights"] == "ema"
    assert dict(pipe.encoder.config)["channel_mult"] == [1, 1, 1, 1, 2] and pipe.encoder.config.num_res_blocks == 1
    assert pipe.image_size == 32 and pipe.quantizer.config.bit_order == "lsb_first"  # from the yaml
    assert load_release(CKPT).image_size == 16 * 16  # without it: the released 16x16 token grid


def test_ema_tokens_latents_and_images(pipes, expected):
    pipe, images = pipes["ema"], unit(expected["images"])
    tokens = pipe.encode(images)
    assert torch.equal(tokens.indices.flatten(), expected["indices"])  # (b, h, w) row-major, as the release
    torch.testing.assert_close(pipe.encoder.latents(images * 2 - 1), expected["latent_pre"], atol=LATENT_ATOL, rtol=0)
    torch.testing.assert_close(grid(tokens.codes, 2), expected["latent_quantized"], atol=0, rtol=0)
    decoded = pipe.decode(expected["indices"].view(3, 4, 1), output_type="pt").images
    torch.testing.assert_close(decoded, unit(expected["decoded_from_indices"]), atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(pipe(images, output_type="pt").images, unit(expected["reconstruction"]),
                               atol=IMAGE_ATOL, rtol=0)


def test_non_square_and_larger_grids(pipes, expected):
    """h/w order on a 32x64 image, and a 4x4 token grid decoded to 64 px (component API: any grid size)."""
    pipe = pipes["ema"]
    with torch.no_grad():
        latents = pipe.encoder.latents(expected["images_wide"])
        torch.testing.assert_close(latents, expected["latent_pre_wide"], atol=LATENT_ATOL, rtol=0)
        quantized = pipe.quantizer(rearrange(latents, "b d h w -> b (h w) d"))
        assert torch.equal(quantized.indices.flatten(), expected["indices_wide"])
        torch.testing.assert_close(pipe.decoder.render(grid(quantized.quantized, 2)),
                                   expected["decoded_from_indices_wide"], atol=IMAGE_ATOL, rtol=0)
        codes = pipe.quantizer.indices_to_codes(expected["random_indices"][..., None])
        torch.testing.assert_close(pipe.decoder.render(grid(codes, 4)), expected["decoded_random_indices"],
                                   atol=IMAGE_ATOL, rtol=0)


def test_raw_weights_and_factorised_ids(pipes, expected):
    pipe, images = pipes["raw"], unit(expected["images"])
    torch.testing.assert_close(pipe.encoder.latents(images * 2 - 1), expected["raw_latent_pre"], atol=LATENT_ATOL,
                               rtol=0)
    ids = pipe.encode(images).indices.flatten()
    assert torch.equal(ids, expected["raw_indices"])
    pre, post = factorize_indices(ids, [4, 6])  # the AR stage's factorized_bits of the fixture
    assert torch.equal(pre, expected["ar_indices_pre"]) and torch.equal(post, expected["ar_indices_post"])
    merged = merge_factorized((expected["ar_indices_pre"], expected["ar_indices_post"]), [4, 6])
    decoded = pipe.decode(merged.view(3, 4, 1), output_type="pt").images
    torch.testing.assert_close(decoded, unit(expected["ar_decoded"]), atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(pipe(images, output_type="pt").images, unit(expected["raw_reconstruction"]),
                               atol=IMAGE_ATOL, rtol=0)


def test_dropped_keys_are_accounted(pipes):
    counts = {reason: entry["tensors"] for reason, entry in pipes["ema"].info["dropped_keys"].items()}
    assert counts == {"raw weights (--weights raw converts these)": 121, "LPIPS and discriminator (training loss)": 33,
                      "discriminator EMA": 13, "EMA counters": 2}
    assert pipes["raw"].info["dropped_keys"]["EMA weights (the default)"]["tensors"] == 121


def _checkpoint(state: dict) -> Checkpoint:
    return Checkpoint(path=CKPT, name="edited.ckpt", content={"state_dict": state})


def test_unknown_key_and_missing_ema_are_one_line_errors():
    state = torch.load(CKPT, map_location="cpu", weights_only=True)["state_dict"]
    with pytest.raises(ConversionError, match="edited.ckpt: 1 state-dict key"):
        fmt.load(_checkpoint({**state, "encoder_extra.weight": torch.zeros(1)}))
    no_ema = {key: value for key, value in state.items() if not key.startswith("model_ema.")}
    with pytest.raises(ConversionError, match="--weights raw"):
        fmt.load(_checkpoint(no_ema))
    assert fmt.load(_checkpoint(no_ema), weights="raw").info["dropped_keys"]["LPIPS and discriminator (training loss)"]


def test_released_256_layout_maps_completely_onto_the_preset():
    """Every key of the released imagenet_256_L state dict is mapped (shape equal to the preset's) or dropped."""
    shapes = json.loads((FIXTURE / "release_256_state_dict_shapes.json").read_text())["shapes"]
    state = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    dropped = DroppedKeys()
    parts = map_keys(fmt.choose_weights(state, "ema", dropped, "release"), fmt.RULES, fmt.DROP, dropped, "release", "")
    preset = get_preset("open_magvit2_256")
    kwargs = fmt.infer_config({key: tuple(shape) for key, shape in shapes.items()})  # 16x16 tokens: 256 px
    assert kwargs == {k: v for k, v in preset.encoder.kwargs.items() if k != "code_length"}
    with torch.device("meta"):
        tokenizer = build_tokenizer(preset)
    for part in ("encoder", "decoder"):
        ours = {key: tuple(value.shape) for key, value in getattr(tokenizer, part).state_dict().items()}
        assert {key: tuple(value.shape) for key, value in parts[part].items()} == ours
    assert len(dropped.entries) == len(shapes) - len(parts["encoder"]) - len(parts["decoder"])


def test_released_256_parameter_count():
    """115,127,829 encoder + decoder parameters: the count of the release's own layout (the fixture's shapes file,
    built from VQModel at the released config) and what the 921 MB public file holds twice (raw + EMA, fp32)."""
    shapes = json.loads((FIXTURE / "release_256_state_dict_shapes.json").read_text())["shapes"]
    release = sum(math.prod(shape) for key, shape in shapes.items() if key.startswith(("encoder.", "decoder.")))
    with torch.device("meta"):
        tokenizer = build_tokenizer("open_magvit2_256")
    ours = sum(p.numel() for part in (tokenizer.encoder, tokenizer.quantizer, tokenizer.decoder)
               for p in part.parameters())
    assert ours == release == 115_127_829
    assert get_preset("open_magvit2_256").bpp == pytest.approx(256 * 18 / 256**2)


def test_the_release_name_fetches_the_published_file(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConversionError, match="cannot fetch imagenet_256_L.ckpt from the Hub repo "
                                              "TencentARC/Open-MAGVIT2-Tokenizer-256-resolution"):
        load_release("open_magvit2_256", cache_dir=str(tmp_path))


def test_the_released_ar_split_covers_the_18_bits():
    from tokenizer_zoo.release_presets.open_magvit2 import AR_FACTORIZED_BITS

    ids = torch.tensor([0, 1, 63, 64, 2**18 - 1, 123_456])
    pre, post = factorize_indices(ids, AR_FACTORIZED_BITS)
    assert sum(AR_FACTORIZED_BITS) == get_preset("open_magvit2_256").quantizer.kwargs["dim"]
    assert torch.equal(pre, ids % 64) and torch.equal(post, ids // 64)  # pre: the 6 low bits (channels 0-5)
    assert torch.equal(merge_factorized((pre, post), AR_FACTORIZED_BITS), ids)
