"""Time embedding and adaLN modulation (shift / scale / gate)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int = 256, time_factor: float = 1000.0,
                         max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) times -> (B, dim) features [cos(f_k * s), sin(f_k * s)] with s = time_factor * t."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angle = (time_factor * t.float())[:, None] * frequencies[None]
    embedding = torch.cat([angle.cos(), angle.sin()], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """vec = Linear(H, H)(SiLU(Linear(freq_dim, H)(sinusoidal(time_factor * t))))."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256, time_factor: float = 1000.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.time_factor = time_factor
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = sinusoidal_embedding(t, self.frequency_dim, self.time_factor)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


@dataclass
class ShiftScaleGate:
    """Modulation of one sub-layer; ``None`` fields mean identity (shift 0, scale 0, gate 1)."""

    shift: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    gate: torch.Tensor | None = None

    def modulate(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = x * (1 + self.scale)
        if self.shift is not None:
            x = x + self.shift
        return x

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.gate is None else x * self.gate


IDENTITY = ShiftScaleGate()


class AdaLNModulation(nn.Module):
    """Linear(H, n*H)(SiLU(vec)) split into n chunks of (B, 1, H).

    ``zero_chunks`` lists the chunk indices whose weight rows and bias are zero-initialised
    (FlowMo zeroes both gates, chunks 2 and 5 of [shift1, scale1, gate1, shift2, scale2, gate2],
    so every residual branch starts switched off).
    """

    def __init__(self, hidden_size: int, num_chunks: int, zero_chunks: tuple[int, ...] = ()):
        super().__init__()
        self.num_chunks = num_chunks
        self.linear = nn.Linear(hidden_size, num_chunks * hidden_size)
        with torch.no_grad():
            for chunk in zero_chunks:
                rows = slice(chunk * hidden_size, (chunk + 1) * hidden_size)
                self.linear.weight[rows].zero_()
                self.linear.bias[rows].zero_()

    def forward(self, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(nn.functional.silu(vec))[:, None, :].chunk(self.num_chunks, dim=-1)
