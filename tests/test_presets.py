import pytest
import torch

from tokenizer_zoo.presets import (PRESETS, Tokenizer, TokenizerPreset, build_tokenizer, get_preset, list_presets,
                                   register_preset)
from tokenizer_zoo.registry import RegistryError

BPP = {"flowmo_lo": 0.0703, "flowmo_hi": 0.2188, "flowmo_small": 0.0703, "flowmo_small_patch16": 0.0703,
       "flowmo_tiny": 0.2812, "flowmo_tiny_fsq": 0.2812}


def test_presets_are_listed():
    assert set(BPP) <= set(list_presets())


@pytest.mark.parametrize("name", sorted(BPP))
def test_bpp(name):
    preset = get_preset(name)
    assert isinstance(preset, TokenizerPreset) and preset.name == name
    assert round(preset.bpp, 4) == BPP[name]


def test_paper_configurations():
    lo, hi, small = get_preset("flowmo_lo"), get_preset("flowmo_hi"), get_preset("flowmo_small")
    assert (lo.encoder.kwargs["hidden_size"], lo.encoder.kwargs["depth"]) == (768, 8)
    assert (lo.decoder.kwargs["hidden_size"], lo.decoder.kwargs["depth"]) == (1152, 16)
    assert lo.quantizer.kwargs == {"dim": 18, "bits_per_group": 9}
    assert hi.quantizer.kwargs == {"dim": 56, "bits_per_group": 14} and hi.decoder.kwargs["code_dim"] == 56
    assert small.decoder.kwargs["hidden_size"] == 768 and small.encoder.kwargs["patch_size"] == 8
    for preset in (lo, hi, small):
        for spec in (preset.encoder, preset.decoder):
            assert spec.kwargs["num_heads"] == 12 and spec.kwargs["mlp_ratio"] == 4.0
    assert get_preset("flowmo_small_patch16").decoder.kwargs["patch_size"] == 16


def test_overrides():
    preset = get_preset("flowmo_lo", patch_size=8, code_dim=27, decoder={"depth": 4})
    assert preset.encoder.kwargs["patch_size"] == preset.decoder.kwargs["patch_size"] == 8
    assert preset.quantizer.kwargs["dim"] == 27 and preset.decoder.kwargs["depth"] == 4
    assert preset.encoder.kwargs["depth"] == 8
    assert get_preset("flowmo_lo").encoder.kwargs["patch_size"] == 4  # the original is untouched
    swapped = get_preset("flowmo_tiny", quantizer_name="fsq", quantizer={"levels": [8, 8, 8]}, code_dim=3)
    assert swapped.quantizer.name == "fsq" and swapped.quantizer.kwargs == {"levels": [8, 8, 8]}
    assert swapped.bpp == pytest.approx(16 * 9 / 32**2)
    with pytest.raises(ValueError, match="unknown preset override"):
        get_preset("flowmo_lo", depth=3)
    with pytest.raises(RegistryError, match="flowmo_lo"):
        get_preset("flowmo_loo")


def test_build_tiny_and_round_trip_shapes():
    tokenizer = build_tokenizer("flowmo_tiny")
    assert isinstance(tokenizer, Tokenizer) and tokenizer.preset.name == "flowmo_tiny"
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    quantized = tokenizer.quantizer(tokenizer.encoder(images)).quantized
    assert quantized.shape == (2, 16, 18)
    assert tokenizer.decoder(quantized, images, torch.rand(2)).shape == images.shape


def test_build_with_overrides_on_meta_device():
    with torch.device("meta"):
        tokenizer = build_tokenizer(get_preset("flowmo_small"), patch_size=16)
    assert tokenizer.decoder.image_in.in_features == 3 * 16 * 16
    assert tokenizer.encoder.image_in.weight.is_meta


def test_register_preset_adds_a_name():
    @register_preset
    def _test_only_preset():
        return get_preset("flowmo_tiny", name="_test_only_preset")

    try:
        assert get_preset("_test_only_preset", image_size=64).encoder.kwargs["image_size"] == 64
    finally:
        PRESETS._entries.pop("_test_only_preset")
