"""Named outputs of components and pipelines (pipelines give tuples only with ``return_dict=False``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.utils import BaseOutput


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns.

    quantized: (B, S, d) codes passed to the decoder, with straight-through gradients.
    indices:   (B, S) or (B, S, G) int64 token ids, or ``None`` for unquantised codes.
    aux_loss:  scalar, the weighted sum of the quantizer's losses (add it to the training loss).
    losses:    the unweighted parts of ``aux_loss`` (and diagnostics), detached, for logging.
    """

    quantized: torch.Tensor
    indices: torch.Tensor | None
    aux_loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class EncodeOutput(BaseOutput):
    """Tokens of a batch of images: ``indices`` (int64, or None when continuous) and ``codes`` (B, S, d).

    ``encode(..., return_dict=False)`` returns the tuple ``(indices, codes)``, ``indices`` None included.
    """

    indices: torch.Tensor | None
    codes: torch.Tensor
