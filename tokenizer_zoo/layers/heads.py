"""Output heads: LayerNorm (optionally adaLN-modulated by the time embedding) then a linear readout."""

from __future__ import annotations

import torch
from torch import nn

from tokenizer_zoo.layers.mmdit import layer_norm
from tokenizer_zoo.layers.modulation import AdaLNModulation, ShiftScaleGate


class OutputHead(nn.Module):
    """x -> Linear(modulate(LN(x))). By default the LayerNorm is applied once.

    With ``modulated=True`` a Linear(H, 2H)(SiLU(vec)) gives (shift, scale); otherwise the head is a
    plain LayerNorm + Linear and takes ``vec=None``. ``norm_twice=True`` reproduces the reference
    release, which normalises again after modulating: Linear(LN(modulate(LN(x)))). The second
    LayerNorm removes the per-channel mean and overall scale of the modulated features, so the
    modulation's shift and scale act only through their variation across channels.
    """

    def __init__(self, hidden_size: int, out_features: int, modulated: bool = False, norm_twice: bool = False):
        super().__init__()
        self.norm_twice = norm_twice
        self.norm = layer_norm(hidden_size)
        self.modulation = AdaLNModulation(hidden_size, 2) if modulated else None
        self.linear = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor, vec: torch.Tensor | None = None) -> torch.Tensor:
        if (self.modulation is None) != (vec is None):
            raise ValueError("pass vec exactly when the head is modulated")
        mod = ShiftScaleGate() if self.modulation is None else ShiftScaleGate(*self.modulation(vec))
        x = mod.modulate(self.norm(x))
        return self.linear(self.norm(x) if self.norm_twice else x)
