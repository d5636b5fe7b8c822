"""What every vector-quantize-pytorch wrapper shares: the zoo's quantizer interface around ``self.vq``.

Axes: b batch, s tokens, d channels, p index positions per token (residual levels x groups).

A subclass builds ``self.vq`` (a vector_quantize_pytorch module) from its config and implements
``_quantize`` ((b, s, d) codes -> quantized, indices (b, s, p), weighted loss terms) and ``_decode``
((b, s, p) ids -> (b, s, d) codes). This class adds the zoo's conventions on top: input checks, int64
ids of shape (B, S) for one position and (B, S, P) for several (the grouped-index convention token
files, MaskGiT and BPP read), ``vocab_size`` = ids per position, ``bits_per_token`` = P log2(vocab_size),
a scalar ``aux_loss`` and detached ``losses``.

vector-quantize-pytorch reports its losses already weighted by its own weights (``commitment_weight``
...), so ``losses`` holds those weighted terms and ``aux_loss`` is their sum.
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin

from tokenizer_zoo.outputs import QuantizerOutput
from tokenizer_zoo.quantizers._checks import check_codes, check_indices


class VQTorchQuantizer(ModelMixin, ConfigMixin):
    """Base of the wrappers; subclasses set ``self.vq`` and the two methods below."""

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def positions(self) -> int:
        """Index positions per token: one per residual level (1 for a single codebook)."""
        return self.config.get("num_quantizers", 1)

    @property
    def vocab_size(self) -> int:
        """Distinct ids at each index position."""
        return self.config.codebook_size

    @property
    def bits_per_token(self) -> float:
        return self.positions * math.log2(self.vocab_size)

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _decode(self, indices: torch.Tensor) -> torch.Tensor:
        """(b, s, p) ids -> (b, s, d) codes; the residual modules' own lookup by default."""
        return self.vq.get_output_from_indices(indices)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_codes(z, self.dim, type(self).__name__)
        quantized, indices, losses = self._quantize(z)
        losses = {name: value.float().sum() for name, value in losses.items()}  # per-level terms summed
        aux = sum(losses.values(), z.new_zeros((), dtype=torch.float32))
        indices = indices.long().reshape(*z.shape[:2], self.positions)
        if self.positions == 1:
            indices = indices[..., 0]
        return QuantizerOutput(quantized.to(z.dtype), indices, aux, {n: v.detach() for n, v in losses.items()})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, S) or (B, S, P) int64 ids -> (B, S, d) codes (float32), what ``forward`` gives in eval mode."""
        trailing = () if self.positions == 1 else (self.positions,)
        check_indices(indices, trailing, self.vocab_size, type(self).__name__)
        positions = indices.reshape(*indices.shape[:2], self.positions)
        return self._decode(positions).float()
