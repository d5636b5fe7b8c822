"""How much a diffusion decoder uses its code: one-step reconstructions at t = 1 with and without it.

At t = 1 the decoder sees pure noise z, so its one-step prediction x_hat = z - v(code, z, 1) can only
know the image through the code. With the null code (the all-zero input of classifier-free guidance)
it can only predict what all images share. The difference of the two PSNRs, the *code gain*, is what
the code is worth to the decoder in dB; a one-pass decoder's PSNR is its natural yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenizer_zoo.metrics.psnr import psnr


@dataclass
class CodeUse:
    """Mean per-image PSNRs (dB) of the one-step prediction at t = 1 with the true and the null code."""

    x0_psnr_code: float
    x0_psnr_null: float

    @property
    def code_gain_db(self) -> float:
        return self.x0_psnr_code - self.x0_psnr_null

    def as_dict(self) -> dict[str, float]:
        return {"x0_psnr_code": self.x0_psnr_code, "x0_psnr_null": self.x0_psnr_null, "code_gain_db": self.code_gain_db}


@torch.no_grad()
def code_use(encoder, quantizer, decoder, images: torch.Tensor, seed: int = 0) -> CodeUse:
    """:class:`CodeUse` of a diffusion decoder on ``images`` (B, 3, H, W) in [-1, 1]; noise from ``seed``."""
    if not getattr(decoder, "is_generative", False):
        raise TypeError(f"{type(decoder).__name__} is a one-pass decoder: code use is measured on diffusion decoders")
    device, dtype = decoder.device, decoder.dtype
    images = images.to(device, dtype)
    codes = quantizer(encoder(images)).quantized
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    t = torch.ones(images.shape[0], device=device, dtype=dtype)
    scores = []
    for drop in (False, True):
        x_hat = noise - decoder(codes, noise, t, drop_code=drop)
        scores.append(psnr(x_hat.float().cpu(), images.float().cpu()).mean().item())
    return CodeUse(*scores)
