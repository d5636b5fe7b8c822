"""Bad input to the published tokenizers' components is one clear error (their numbers: tests/convert)."""

from __future__ import annotations

import pytest
import torch

from tokenizer_zoo.decoders.open_magvit2 import OpenMagvit2Decoder
from tokenizer_zoo.decoders.titok import TiTokDecoder
from tokenizer_zoo.encoders.open_magvit2 import OpenMagvit2Encoder
from tokenizer_zoo.encoders.titok import TiTokEncoder
from tokenizer_zoo.layers.conv_blocks import ConvUpStack, ResBlock

CNN = dict(image_size=32, channels=32, channel_mult=[1, 2], num_res_blocks=1, code_dim=4)
VIT = dict(image_size=32, patch_size=8, width=32, num_layers=1, num_heads=2, code_length=4, code_dim=4)


def test_open_magvit2_shapes_and_errors():
    encoder, decoder = OpenMagvit2Encoder(**CNN), OpenMagvit2Decoder(**CNN)
    assert encoder.config.code_length == 256 and decoder(encoder(torch.zeros(1, 3, 32, 32))).shape == (1, 3, 32, 32)
    assert encoder(torch.zeros(1, 3, 16, 48)).shape == (1, 8 * 24, 4)  # fully convolutional
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        encoder(torch.zeros(1, 3, 31, 32))
    with pytest.raises(ValueError, match="at least 2 positions"):
        decoder.render(torch.zeros(1, 4, 1, 1))
    with pytest.raises(ValueError, match="code_length the 16x16 grid's 256 tokens"):
        OpenMagvit2Encoder(**CNN, code_length=64)


def test_titok_shapes_and_errors():
    encoder = TiTokEncoder(**VIT)
    decoder = TiTokDecoder(**VIT, pixel_channels=32, pixel_channel_mult=[1, 1, 1, 1], pixel_code_dim=8,
                           pixel_codebook_size=16)
    assert decoder(encoder(torch.zeros(2, 3, 32, 32))).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="built for 32x32 images"):
        encoder(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="upsampling of the 32/8 grid must give image_size 32"):
        TiTokDecoder(**VIT, pixel_channel_mult=[1, 1])
    with pytest.raises(ValueError, match="codes of shape"):
        decoder(torch.zeros(2, 5, 4))


def test_recorded_switches_are_checked():
    with pytest.raises(ValueError, match="shortcut must be one of"):
        ResBlock(32, 64, shortcut="skip")
    with pytest.raises(ValueError, match="upsampler must be one of"):
        ConvUpStack(4, 32, [1, 1], 1, upsampler="bilinear")
    with pytest.raises(ValueError, match="input_range"):
        TiTokEncoder(**VIT, input_range="byte")
