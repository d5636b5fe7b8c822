"""Continuous codes (FlowMo's comparison with DiTo): no quantisation, a LayerNorm on the code.

Axes: b batch, s tokens, d channels.

The code is LayerNorm(z) over channels (no affine parameters, eps 1e-6), which fixes its scale.
Noise synchronisation (DiTo): during training only, each sample is, with probability
``noise_sync_prob``, replaced by (1 - s) * code + s * eps with eps ~ N(0, I) and
s ~ U(0, noise_sync_max) drawn per sample, i.e. moved part of the way along the same
rectified-flow path the diffusion decoder denoises, so the decoder learns to tolerate noisy codes.
In eval mode the code is returned untouched. There are no token ids and no bit rate.
``layer_norm=False`` passes the encoder's latents through as they are: the switch for published
continuous autoencoders (diffusers' AutoencoderKL: the SD, SDXL, SD3, FLUX VAEs), whose decoders take
the raw latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from tokenizer_zoo.outputs import QuantizerOutput
from tokenizer_zoo.quantizers._checks import NoBitRateError, add_save_marker, check_codes
from tokenizer_zoo.registry import QUANTIZERS


@QUANTIZERS.register("continuous")
class ContinuousQuantizer(ModelMixin, ConfigMixin):
    """LayerNorm'd continuous codes of ``dim`` channels with optional noise synchronisation."""

    @register_to_config
    def __init__(self, dim: int, noise_sync_prob: float = 0.0, noise_sync_max: float = 1.0, layer_norm: bool = True):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"ContinuousQuantizer needs dim >= 1, got {dim}.")
        if not 0.0 <= noise_sync_prob <= 1.0:
            raise ValueError(f"noise_sync_prob is a probability in [0, 1], got {noise_sync_prob}.")
        if not 0.0 <= noise_sync_max <= 1.0:
            raise ValueError(f"noise_sync_max is the largest noise level s in [0, 1], got {noise_sync_max}.")
        add_save_marker(self)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def bits_per_token(self) -> float:
        raise NoBitRateError(
            "continuous codes have no bit rate (bits per token / BPP are undefined); report BPP only for "
            "discrete quantizers (lfq, fsq, vq, ...)."
        )

    @property
    def vocab_size(self) -> int:
        raise NoBitRateError("continuous codes have no vocabulary; use a discrete quantizer for token ids.")

    def prequantize(self, z: torch.Tensor) -> torch.Tensor:
        """The LayerNorm, or ``z`` itself without ``layer_norm`` (what ``forward`` returns in eval mode)."""
        return F.layer_norm(z, (z.shape[-1],), eps=1e-6) if self.config.layer_norm else z

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_codes(z, self.dim, type(self).__name__)
        code = self.prequantize(z)
        p, s_max = self.config.noise_sync_prob, self.config.noise_sync_max
        if self.training and p > 0:
            batch = code.shape[0]
            chosen = torch.rand(batch, 1, 1, device=z.device) < p
            s = torch.rand(batch, 1, 1, device=z.device) * s_max * chosen
            code = (1 - s).to(code.dtype) * code + s.to(code.dtype) * torch.randn_like(code)
        return QuantizerOutput(code, None, z.new_zeros(()), {})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        raise NoBitRateError(
            "ContinuousQuantizer has no token ids (its forward returns indices=None); keep the codes "
            "themselves (QuantizerOutput.quantized) and pass them to the decoder."
        )
