"""Training module of tokenizers with a one-pass decoder (the baselines): one ``nn.Module`` whose
forward is the whole loss, for DDP.

    loss = MSE(decoder(q(encoder(x))), x) + perceptual_weight * perceptual(x_rec, x) + quantizer.aux_loss
"""

from __future__ import annotations

import torch
from torch import nn

from tokenizer_zoo.losses.perceptual import perceptual_scores, resolve_perceptual_bf16
from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline
from tokenizer_zoo.training.stage1a import Stage1AOutput


class RegressionModel(nn.Module):
    """Encoder -> quantizer -> one-pass decoder, trained with MSE plus a perceptual loss (no adversarial loss)."""

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module,
                 perceptual: nn.Module | None = None, perceptual_weight: float = 0.1, perceptual_precision: str = "float32"):
        super().__init__()
        if getattr(decoder, "is_generative", False):
            raise TypeError(f"{type(decoder).__name__} is a diffusion decoder: train it with Stage1AModel")
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual network (e.g. PERCEPTUAL.build('lpips_vgg'))")
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.perceptual = perceptual if perceptual_weight > 0 else None
        self.perceptual_weight = float(perceptual_weight)
        self.perceptual_bf16 = resolve_perceptual_bf16(perceptual_precision)

    def forward(self, images: torch.Tensor) -> Stage1AOutput:
        quantized = self.quantizer(self.encoder(images))
        recon = self.decoder(quantized.quantized)
        mse = (recon.float() - images.float()).square().mean()
        perceptual = (perceptual_scores(self.perceptual, recon, images, self.perceptual_bf16).mean() if self.perceptual is not None
                      else torch.zeros((), device=images.device))
        total = mse + self.perceptual_weight * perceptual + quantized.aux_loss
        logs = {"loss": total, "mse": mse, "perceptual": perceptual, "quantizer": quantized.aux_loss}
        logs.update({f"quantizer/{k}": v for k, v in quantized.losses.items()})
        return Stage1AOutput(loss=total, logs={k: v.detach().float() for k, v in logs.items()})

    def to_pipeline(self) -> TokenizerPipeline:
        """A pipeline sharing this model's encoder, quantizer and decoder (not copies)."""
        return TokenizerPipeline(self.encoder, self.quantizer, self.decoder)
