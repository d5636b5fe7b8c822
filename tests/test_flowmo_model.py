import pytest
import torch

from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
from tokenizer_zoo.encoders.flowmo import FlowMoEncoder
from tokenizer_zoo.registry import DECODERS, ENCODERS

TINY = dict(image_size=16, patch_size=4, code_length=5, code_dim=6, num_heads=2)


@pytest.fixture
def encoder():
    return FlowMoEncoder(hidden_size=64, depth=2, **TINY)


@pytest.fixture
def decoder():
    return FlowMoDecoder(hidden_size=64, depth=2, **TINY)


def randomise(module):  # leave the zero-initialised gates behind so every path is live
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)
    return module


def test_registered_under_flowmo():
    assert ENCODERS.get("flowmo") is FlowMoEncoder and DECODERS.get("flowmo") is FlowMoDecoder
    assert FlowMoDecoder.is_generative is True


def test_shapes(encoder, decoder):
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    codes = encoder(images)
    assert codes.shape == (3, 5, 6)
    assert decoder(codes, images, torch.rand(3)).shape == (3, 3, 16, 16)
    assert decoder(codes, images, 0.5).shape == (3, 3, 16, 16)  # scalar t broadcasts
    assert encoder(torch.zeros(1, 3, 8, 20)).shape == (1, 5, 6)  # any multiple of the patch size


def test_encoder_has_no_modulation_or_time_parameters(encoder):
    names = [n for n, _ in encoder.named_parameters()]
    assert not any("modulation" in n or "time" in n for n in names)
    assert not any(isinstance(m, torch.nn.SiLU) for m in encoder.modules())


def test_code_tokens_differ_only_through_rope(encoder):
    # Linear(d, H) on zeros is its bias: the code stream starts from one learned vector for every token
    assert [name for name, _ in encoder.code_in.named_parameters()] == ["bias"]
    assert encoder.code_in.bias.shape == (64,) and encoder.code_in.bias.abs().max() <= 1 / 6**0.5
    codes = randomise(encoder)(torch.randn(1, 3, 16, 16))
    assert not torch.allclose(codes[0, 0], codes[0, 1])


def test_every_trainable_parameter_gets_a_non_zero_gradient_in_one_training_step():
    """The stage-1A loss (encoder -> LFQ -> flow matching) of the tiny preset, the decoder's zero-initialised
    gates left behind: a parameter whose gradient is exactly zero (e.g. a weight that multiplies zeros) fails."""
    from tokenizer_zoo.losses import FlowMatchingLoss
    from tokenizer_zoo.presets import build_tokenizer
    from tokenizer_zoo.training.stage1a import Stage1AModel

    torch.manual_seed(0)
    parts = build_tokenizer("flowmo_tiny")
    with torch.no_grad():
        for p in parts.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model = Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, FlowMatchingLoss(perceptual_weight=0))
    model(torch.rand(4, 3, 32, 32) * 2 - 1, generator=torch.Generator().manual_seed(0)).loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) > 100
    assert [n for n, p in trainable if p.grad is None or not p.grad.abs().max() > 0] == []


def test_dropped_code_is_ignored(decoder):
    decoder = randomise(decoder)
    x_t, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    codes_a, codes_b = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    dropped = torch.tensor([True, True])
    torch.testing.assert_close(decoder(codes_a, x_t, t, drop_code=dropped), decoder(codes_b, x_t, t, drop_code=True))
    assert not torch.allclose(decoder(codes_a, x_t, t), decoder(codes_b, x_t, t))
    # per-sample: only the first sample is unconditional
    mixed = decoder(codes_a, x_t, t, drop_code=torch.tensor([True, False]))
    torch.testing.assert_close(mixed[0], decoder(codes_b, x_t, t, drop_code=True)[0])
    torch.testing.assert_close(mixed[1], decoder(codes_a, x_t, t)[1])
    # dropping is the all-zero input, flag included: distinct from a zero code with the flag on
    assert not torch.allclose(decoder(torch.zeros(2, 5, 6), x_t, t), mixed[[0, 0]])


def test_decoder_depends_on_time(decoder):
    decoder = randomise(decoder)
    x_t, codes = torch.randn(1, 3, 16, 16), torch.randn(1, 5, 6)
    assert not torch.allclose(decoder(codes, x_t, torch.tensor([0.1])), decoder(codes, x_t, torch.tensor([0.9])))


def test_input_errors(encoder, decoder):
    with pytest.raises(ValueError, match="divisible"):
        encoder(torch.zeros(1, 3, 18, 16))
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.zeros(3, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        encoder(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    x_t = torch.zeros(2, 3, 16, 16)
    with pytest.raises(ValueError, match="code_dim"):
        decoder(torch.zeros(2, 5, 7), x_t, torch.rand(2))
    with pytest.raises(ValueError, match="code_length"):
        decoder(torch.zeros(2, 4, 6), x_t, torch.rand(2))
    with pytest.raises(TypeError, match="floating"):
        decoder(torch.zeros(2, 5, 6, dtype=torch.long), x_t, torch.rand(2))
    with pytest.raises(ValueError, match="x_t"):
        decoder(torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match="t"):
        decoder(torch.zeros(2, 5, 6), x_t)
    with pytest.raises(ValueError, match="shape"):
        decoder(torch.zeros(2, 5, 6), x_t, torch.rand(3))
    with pytest.raises(TypeError, match="floating"):
        decoder(torch.zeros(2, 5, 6), x_t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="drop_code"):
        decoder(torch.zeros(2, 5, 6), x_t, torch.rand(2), drop_code=torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="divisible"):
        FlowMoEncoder(image_size=30, patch_size=4)


def test_save_and_load_round_trip(tmp_path, encoder, decoder):
    images = torch.randn(1, 3, 16, 16)
    for model, call in ((encoder, lambda m: m(images)), (decoder, lambda m: m(torch.ones(1, 5, 6), images, 0.3))):
        randomise(model).save_pretrained(tmp_path / type(model).__name__)
        loaded = type(model).from_pretrained(tmp_path / type(model).__name__)
        assert loaded.config.code_dim == 6
        torch.testing.assert_close(call(loaded), call(model))


def test_gradient_checkpointing_matches(decoder):
    decoder = randomise(decoder)
    codes, x_t, t = torch.randn(2, 5, 6), torch.randn(2, 3, 16, 16), torch.rand(2)
    plain = decoder(codes, x_t, t)
    decoder.enable_gradient_checkpointing()
    torch.testing.assert_close(decoder(codes, x_t, t), plain)


# --- parameter counts against the paper ------------------------------------------------------------
def linear(fan_in, fan_out):
    return fan_in * fan_out + fan_out


def reference_only_parameters(enc: dict, dec: dict) -> dict[str, int]:
    """Parameters the reference release allocates but never uses, so we do not allocate them.

    All other parameters (blocks, RoPE-free embedders, heads) are laid out exactly as in the release.
    """
    channels = 3 * enc["patch_size"] ** 2
    h, depth = enc["hidden_size"], enc["depth"]
    mlp = int(h * enc["mlp_ratio"])
    eh = dec["hidden_size"]
    dmlp = int(eh * dec["mlp_ratio"])
    return {
        # encoder: the code input is Linear(d, H) on zeros; its weight multiplies zeros, never gets a
        # gradient and is not allocated (the bias is)
        "encoder code-input weight": enc["code_dim"] * h,
        # encoder: no time input, so no modulation (2 streams x Linear(H, 6H) per block) ...
        "encoder block modulation": 2 * depth * linear(h, 6 * h),
        # ... no time embedder Linear(256, H) -> Linear(H, H), no adaLN Linear(H, 2H) in the code head
        "encoder time embedder": linear(256, h) + linear(h, h),
        "encoder code-head adaLN": linear(h, 2 * h),
        # the encoder's image output is discarded: no image head, and in the last block the image
        # stream keeps only keys/values (no query rows of qkv, query norm, proj, MLP)
        "encoder image head": linear(h, 2 * h) + linear(h, channels),
        "encoder last-block image outputs": h * h + h + h // enc["num_heads"] + linear(h, h)
        + linear(h, mlp) + linear(mlp, h),
        # the decoder's code output is discarded: no code head (adaLN + Linear(H, d + 1)), and in the
        # last block the code stream has no query / proj / MLP and only shift1/scale1 modulation rows
        "decoder code head": linear(eh, 2 * eh) + linear(eh, dec["code_dim"] + 1),
        "decoder last-block code outputs": eh * eh + eh + eh // dec["num_heads"] + linear(eh, eh)
        + linear(eh, dmlp) + linear(dmlp, eh) + 4 * eh * eh + 4 * eh,
    }


# paper counts in millions and the precision they are stated to
PAPER = {"flowmo_lo": (945.37, 0.005), "flowmo_hi": (945.52, 0.005), "flowmo_small": (517.1, 0.05)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_count_matches_paper_minus_unused_reference_parameters(name):
    from tokenizer_zoo.presets import get_preset

    preset = get_preset(name)
    with torch.device("meta"):
        encoder = FlowMoEncoder(**preset.encoder.kwargs)
        decoder = FlowMoDecoder(**preset.decoder.kwargs)
    ours = sum(p.numel() for m in (encoder, decoder) for p in m.parameters())
    dropped = reference_only_parameters(preset.encoder.kwargs, preset.decoder.kwargs)
    paper, precision = PAPER[name]
    assert abs((ours + sum(dropped.values())) / 1e6 - paper) < precision
    # the encoder modulation alone is by far the largest part, but not enough on its own
    assert abs((ours + dropped["encoder block modulation"]) / 1e6 - paper) > 1.0
