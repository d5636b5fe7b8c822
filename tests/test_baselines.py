"""Baseline tokenizers (CNN + LFQ/FSQ, TiTok-style one-pass MMDiT): build, train a little, save/load, BPP.

Only the 32-px presets are built with real weights; the 256-px ones are built on the meta device.
"""

import pytest
import torch
import torch.nn.functional as F

from tokenizer_zoo.decoders import CNNDecoder, RegressionDecoder
from tokenizer_zoo.encoders import CNNEncoder
from tokenizer_zoo.pipelines import TokenizerPipeline
from tokenizer_zoo.presets import BASELINE_PRESETS, build_tokenizer, get_preset, list_presets
from tokenizer_zoo.registry import DECODERS, ENCODERS

TINY = sorted(name for name in BASELINE_PRESETS if get_preset(name).image_size == 32)
LARGE = sorted(set(BASELINE_PRESETS) - set(TINY))
# Parameters in millions (encoder, decoder) of the 256-px presets, as in the presets docstring table.
# millions of encoder / decoder parameters (TiTok's FlowMo encoders allocate no code-input weight)
LARGE_PARAMS = {"cnn_lfq_lo": (26.1, 38.2), "cnn_lfq_hi": (26.3, 38.4), "cnn_fsq_lo": (26.0, 38.1),
                "cnn_fsq_hi": (26.1, 38.2), "titok_lo": (107.5, 501.5), "titok_hi": (107.5, 501.5)}
STEPS, LR, FACTOR = 90, 5e-4, 10  # the overfit test: MSE must fall FACTOR-fold in STEPS Adam steps
FLOWMO_BPP = {"flowmo_lo": 0.0703, "flowmo_hi": 0.2188, "flowmo_tiny": 0.2812}


def _millions(module):
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 1)


def _images(n=4, size=32, seed=0):
    """Smooth images in [-1, 1] (bilinearly upsampled 4x4 noise) that a tiny model can learn."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _public(config):
    return {key: value for key, value in config.items() if not key.startswith("_")}


def _reconstruct(tokenizer, images):
    quantized = tokenizer.quantizer(tokenizer.encoder(images))
    return tokenizer.decoder(quantized.quantized), quantized.aux_loss


def test_baselines_are_registered():
    assert set(BASELINE_PRESETS) <= set(list_presets())
    assert set(BASELINE_PRESETS.values()) == set(FLOWMO_BPP)
    assert {"cnn"} <= set(ENCODERS.names()) and {"cnn", "regression"} <= set(DECODERS.names())
    assert TINY == ["cnn_fsq_tiny", "cnn_lfq_tiny", "titok_tiny"] and set(LARGE) == set(LARGE_PARAMS)


@pytest.mark.parametrize("name", sorted(BASELINE_PRESETS))
def test_bpp_equals_the_flowmo_counterpart(name):
    counterpart = BASELINE_PRESETS[name]
    assert get_preset(name).bpp == get_preset(counterpart).bpp
    assert round(get_preset(name).bpp, 4) == FLOWMO_BPP[counterpart]


def test_titok_mirrors_flowmo():
    for size in ("lo", "hi", "tiny"):
        titok, flowmo = get_preset(f"titok_{size}"), get_preset(f"flowmo_{size}")
        assert titok.encoder == flowmo.encoder and titok.quantizer == flowmo.quantizer
        assert titok.decoder.name == "regression" and titok.decoder.kwargs == flowmo.decoder.kwargs


@pytest.mark.parametrize("name", LARGE)
def test_256px_presets_on_meta(name):
    preset = get_preset(name)
    with torch.device("meta"):
        tokenizer = build_tokenizer(name)
        codes = tokenizer.encoder(torch.empty(2, 3, 256, 256))
        images = tokenizer.decoder(codes)
    assert tokenizer.encoder.config.image_size == tokenizer.decoder.config.image_size == 256
    assert codes.shape == (2, preset.code_length, tokenizer.quantizer.dim) and codes.shape[1] == 256
    assert images.shape == (2, 3, 256, 256)
    assert (_millions(tokenizer.encoder), _millions(tokenizer.decoder)) == LARGE_PARAMS[name]
    assert tokenizer.decoder.is_generative is False


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    tokenizer = build_tokenizer(name)
    images = _images(2)
    recon, aux = _reconstruct(tokenizer, images)
    assert recon.shape == images.shape and recon.dtype == images.dtype
    (F.mse_loss(recon, images) + aux).backward()
    for part in (tokenizer.encoder, tokenizer.decoder):
        missing = [n for n, p in part.named_parameters() if p.grad is None]
        assert not missing, f"parameters outside the graph (DDP would need find_unused_parameters): {missing[:5]}"


@pytest.mark.parametrize("name", TINY)
def test_tiny_overfits_four_images(name):
    torch.manual_seed(0)
    tokenizer = build_tokenizer(name)
    images = _images(4)
    params = [*tokenizer.encoder.parameters(), *tokenizer.quantizer.parameters(), *tokenizer.decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR)
    losses = []
    for _ in range(STEPS):
        recon, aux = _reconstruct(tokenizer, images)
        mse = F.mse_loss(recon, images)
        optimizer.zero_grad()
        (mse + aux).backward()
        optimizer.step()
        losses.append(mse.item())
    print(f"{name}: MSE {losses[0]:.4f} -> {losses[-1]:.4f} ({losses[0] / losses[-1]:.1f}x) in {STEPS} Adam steps")
    assert losses[-1] < losses[0] / FACTOR


@pytest.mark.parametrize("name", TINY)
def test_tiny_pipeline_round_trip(name, tmp_path):
    torch.manual_seed(0)
    tokenizer = build_tokenizer(name)
    pipe = TokenizerPipeline(tokenizer.encoder, tokenizer.quantizer, tokenizer.decoder)
    for part in (pipe.encoder, pipe.quantizer, pipe.decoder):  # from_pretrained returns eval-mode modules; in
        part.eval()  # train mode diffusers' VAE decoder differs by ~5e-6 on CPU
    images = (_images(2) + 1) / 2  # pipelines take and give [0, 1]
    out = pipe(images, output_type="pt").images
    assert out.shape == images.shape
    pipe.save_pretrained(tmp_path)
    loaded = TokenizerPipeline.from_pretrained(tmp_path)
    assert type(loaded.decoder) is type(tokenizer.decoder) and _public(loaded.decoder.config) == _public(pipe.decoder.config)
    torch.testing.assert_close(loaded(images, output_type="pt").images, out, rtol=0, atol=0)


def test_cnn_takes_any_quantizer():
    tokenizer = build_tokenizer("cnn_lfq_tiny", quantizer_name="vq", quantizer={"dim": 18, "codebook_size": 64})
    assert tokenizer.preset.bpp == 16 * 6 / 32**2
    recon, aux = _reconstruct(tokenizer, _images(2))
    assert recon.shape == (2, 3, 32, 32) and aux.ndim == 0


@pytest.mark.parametrize("name", TINY)
def test_bad_inputs(name):
    tokenizer = build_tokenizer(name)
    codes = tokenizer.quantizer(tokenizer.encoder(_images(1))).quantized
    with pytest.raises(ValueError, match="image|divisible"):
        tokenizer.encoder(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tokenizer.encoder(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="code_length, code_dim"):
        tokenizer.decoder(codes[:, :-1])
    with pytest.raises(ValueError, match="code_length, code_dim"):
        tokenizer.decoder(codes[..., :-1])
    with pytest.raises(TypeError, match="indices_to_codes"):
        tokenizer.decoder(codes.long())
    with pytest.raises(ValueError, match="one pass"):
        tokenizer.decoder(codes, torch.zeros(1, 3, 32, 32), torch.rand(1))


def test_cnn_config_errors():
    with pytest.raises(ValueError, match="CNNEncoder was built for 32x32"):
        CNNEncoder(image_size=32, block_out_channels=[8, 8], norm_num_groups=4)(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="pass code_length=64"):
        CNNDecoder(image_size=32, block_out_channels=[8, 8, 8], norm_num_groups=4, code_length=16)
    with pytest.raises(ValueError, match="not divisible by the downsampling factor 8"):
        CNNEncoder(image_size=36, block_out_channels=[8, 8, 8, 8], norm_num_groups=4)
    with pytest.raises(ValueError, match="code_length=64"):  # a changed image size needs a matching code length
        build_tokenizer("cnn_lfq_tiny", image_size=64)
    assert build_tokenizer("cnn_lfq_tiny", image_size=64, code_length=64).encoder.config.code_length == 64
    assert CNNEncoder(image_size=32, block_out_channels=[8, 8], norm_num_groups=4).config.code_length == 256
    with pytest.raises(ValueError, match="divisible by patch_size"):
        RegressionDecoder(image_size=30, patch_size=4, hidden_size=32, depth=1, num_heads=2)
