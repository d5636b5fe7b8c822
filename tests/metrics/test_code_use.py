import math

import pytest
import torch
from torch import nn

from tokenizer_zoo.metrics.code_use import code_use


class Identity(nn.Module):
    def forward(self, x):
        return x


class Quantizer(nn.Module):
    def forward(self, z):
        return type("Out", (), {"quantized": z})()


class KnownDecoder(nn.Module):
    """Predicts x_hat = ``guess`` with the code and x_hat = 0 without it, whatever the noise."""

    is_generative = True

    def __init__(self, guess):
        super().__init__()
        self.guess = guess
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, codes, x_t, t, drop_code=False):
        assert torch.all(t == 1)
        target = torch.zeros_like(x_t) if drop_code else self.guess
        return x_t - target  # so that x_hat = x_t - t v = target


def _psnr(a, b):
    return [10 * math.log10(4 / ((a[i] - b[i]) ** 2).mean().item()) for i in range(len(a))]


def test_code_gain_is_the_psnr_difference_of_the_two_one_step_predictions():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 8, 8, generator=generator) * 2 - 1
    guess = images + 0.1 * torch.randn(images.shape, generator=generator)
    use = code_use(Identity(), Quantizer(), KnownDecoder(guess), images)
    with_code = sum(_psnr(guess.double(), images.double())) / 5
    without = sum(_psnr(torch.zeros_like(images).double(), images.double())) / 5
    assert use.x0_psnr_code == pytest.approx(with_code, abs=1e-4)
    assert use.x0_psnr_null == pytest.approx(without, abs=1e-4)
    assert use.code_gain_db == pytest.approx(with_code - without, abs=1e-4) and use.code_gain_db > 10
    assert set(use.as_dict()) == {"x0_psnr_code", "x0_psnr_null", "code_gain_db"}


def test_one_pass_decoders_are_refused():
    with pytest.raises(TypeError, match="one-pass"):
        code_use(Identity(), Quantizer(), nn.Identity(), torch.zeros(1, 3, 4, 4))
