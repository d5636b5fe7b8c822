"""Vector quantisation (VQ-VAE): each token becomes its nearest codebook vector.

Axes: b batch, s tokens, d channels, n flattened tokens of the batch, c codebook entries.

distance="l2": nearest in Euclidean distance. distance="cosine": tokens and codebook vectors are
l2-normalised first (ViT-VQGAN), so codes lie on the unit sphere and the nearest code has the
largest cosine similarity.
Training: loss = ||sg[z] - q||^2 (codebook) + beta * ||z - sg[q]||^2 (commitment), or, with
ema_decay set, the codebook follows exponential moving averages of the assigned tokens (with
Laplace smoothing of the counts, summed over processes under torch.distributed) and only the
commitment term remains. Usage: ``losses["codebook_usage"]`` is the fraction of codes used by the
batch; ``codebook_usage()`` the fraction used since the last ``reset_usage()``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.outputs import QuantizerOutput
from tokenizer_zoo.quantizers._checks import check_codes, check_indices
from tokenizer_zoo.registry import QUANTIZERS

DISTANCES = ("l2", "cosine")


@QUANTIZERS.register("vq")
class VectorQuantizer(ModelMixin, ConfigMixin):
    """A learned codebook of ``codebook_size`` vectors of ``dim`` channels; indices (B, S)."""

    @register_to_config
    def __init__(
        self,
        dim: int,
        codebook_size: int,
        distance: str = "l2",
        beta: float = 0.25,
        ema_decay: float | None = None,
        ema_epsilon: float = 1e-5,
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {DISTANCES}.")
        if dim <= 0 or codebook_size < 2:
            raise ValueError(f"VectorQuantizer needs dim >= 1 and codebook_size >= 2, got {dim}, {codebook_size}.")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None (gradient-trained codebook), got {ema_decay}.")
        init = torch.randn(codebook_size, dim)
        if ema_decay is None:
            self.codebook = torch.nn.Parameter(init)
        else:  # updated by moving averages, not by the optimiser
            self.register_buffer("codebook", init)
            self.register_buffer("ema_counts", torch.ones(codebook_size))
            self.register_buffer("ema_sums", init.clone())
        self.register_buffer("usage_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.config.codebook_size)

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.config.distance == "cosine" else x

    def prequantize(self, z: torch.Tensor) -> torch.Tensor:
        """The differentiable map before the lookup: identity (l2) or l2-normalisation (cosine)."""
        return self._normalise(z)

    def codes(self) -> torch.Tensor:
        """(c, d) the codebook as the decoder sees it (normalised for the cosine distance)."""
        return self._normalise(self.codebook)

    def nearest(self, pre: torch.Tensor) -> torch.Tensor:
        """(n, d) prequantized tokens -> (n,) index of the nearest code."""
        book = self.codes().to(pre.dtype)
        if self.config.distance == "cosine":
            return (pre @ book.T).argmax(-1)
        return (book.pow(2).sum(-1) - 2 * pre @ book.T).argmin(-1)  # ||pre||^2 is constant per row

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_codes(z, self.dim, type(self).__name__)
        pre = self.prequantize(z)
        flat = rearrange(pre, "b s d -> (b s) d")
        with torch.no_grad():
            index = self.nearest(flat)
        codes = self.codes().to(z.dtype)[index]  # a copy: the codes before any EMA update below
        if self.training and self.config.ema_decay is not None:
            self._ema_update(flat.detach(), index)
        commitment = (flat - codes.detach()).pow(2).mean()
        losses = {"commitment": commitment}
        aux = self.config.beta * commitment
        if self.config.ema_decay is None:
            losses["codebook"] = (flat.detach() - codes).pow(2).mean()
            aux = aux + losses["codebook"]
        quantized = rearrange(codes.detach() + (flat - flat.detach()), "(b s) d -> b s d", b=z.shape[0])
        with torch.no_grad():
            counts = torch.bincount(index, minlength=self.vocab_size)
            self.usage_counts += counts
        losses = {name: value.detach() for name, value in losses.items()}
        losses["codebook_usage"] = (counts > 0).float().mean()
        return QuantizerOutput(quantized, rearrange(index, "(b s) -> b s", b=z.shape[0]), aux, losses)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, index: torch.Tensor) -> None:
        decay, eps, size = self.config.ema_decay, self.config.ema_epsilon, self.vocab_size
        counts = torch.bincount(index, minlength=size).to(self.ema_counts.dtype)
        sums = torch.zeros_like(self.ema_sums).index_add_(0, index, flat.to(self.ema_sums.dtype))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_counts.lerp_(counts, 1 - decay)
        self.ema_sums.lerp_(sums, 1 - decay)
        total = self.ema_counts.sum()
        smoothed = (self.ema_counts + eps) / (total + size * eps) * total  # Laplace smoothing: no empty code
        self.codebook.copy_(self.ema_sums / smoothed[:, None])

    def codebook_usage(self) -> float:
        """Fraction of codes chosen at least once since construction or the last :meth:`reset_usage`."""
        return float((self.usage_counts > 0).float().mean())

    def reset_usage(self) -> None:
        self.usage_counts.zero_()

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, S) int64 -> (B, S, d) codebook vectors (normalised for the cosine distance)."""
        check_indices(indices, (), self.vocab_size, type(self).__name__)
        return self.codes()[indices]
