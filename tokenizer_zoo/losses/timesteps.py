"""Noise-level (timestep) distributions for rectified-flow training, t in [0, 1], t = 1 pure noise.

* ``"thick_tailed_logit_normal"`` (FlowMo's default): t = sigmoid(N(loc, scale^2)); each sample is
  replaced with probability ``uniform_prob`` (0.1) by U(0, 1). CDF: (1-p)*Phi((logit t - loc)/scale) + p*t.
* ``"logit_normal"``: the same without the uniform part (the paper's "plain logit-normal" ablation).
* ``"uniform"``: U(0, 1).

All take an optional ``torch.Generator``; samples are drawn on the generator's device and moved to
``device``, so a CPU generator reproduces the same draws on any device. Without one they are drawn
from the global RNG, also with a symbolic batch size under ``torch.compile``
(:func:`tokenizer_zoo.random_draws.draw`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenizer_zoo.random_draws import draw
from tokenizer_zoo.registry import Registry

TIMESTEP_SAMPLERS = Registry("timestep sampler", "tokenizer_zoo.timestep_samplers")


@dataclass
class TimestepDraw:
    """Sampled noise levels ``t`` (B,) and which of them came from the uniform part (B,) bool."""

    t: torch.Tensor
    from_uniform: torch.Tensor


class TimestepSampler:
    """Base class: subclasses implement :meth:`draw`; :meth:`sample` returns only ``t``."""

    def draw(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> TimestepDraw:
        raise NotImplementedError

    def sample(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return self.draw(batch_size, generator, device).t

    __call__ = sample


@TIMESTEP_SAMPLERS.register("uniform")
class UniformTimesteps(TimestepSampler):
    """t ~ U(0, 1)."""

    def draw(self, batch_size, generator=None, device=None) -> TimestepDraw:
        t = draw("uniform", batch_size, generator, device)
        return TimestepDraw(t, torch.ones_like(t, dtype=torch.bool))

    def __repr__(self) -> str:
        return "UniformTimesteps()"


@TIMESTEP_SAMPLERS.register("thick_tailed_logit_normal")
class ThickTailedLogitNormalTimesteps(TimestepSampler):
    """t = sigmoid(N(loc, scale^2)), each sample replaced with probability ``uniform_prob`` by U(0, 1)."""

    def __init__(self, loc: float = 0.0, scale: float = 1.0, uniform_prob: float = 0.1):
        if scale <= 0:
            raise ValueError(f"logit-normal scale must be > 0, got {scale}")
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"uniform_prob must be a probability in [0, 1], got {uniform_prob}")
        self.loc, self.scale, self.uniform_prob = float(loc), float(scale), float(uniform_prob)

    def draw(self, batch_size, generator=None, device=None) -> TimestepDraw:
        logit_normal = torch.sigmoid(self.loc + self.scale * draw("normal", batch_size, generator, device))
        uniform = draw("uniform", batch_size, generator, device)
        from_uniform = draw("uniform", batch_size, generator, device) < self.uniform_prob
        return TimestepDraw(torch.where(from_uniform, uniform, logit_normal), from_uniform)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(loc={self.loc}, scale={self.scale}, uniform_prob={self.uniform_prob})"


@TIMESTEP_SAMPLERS.register("logit_normal")
class LogitNormalTimesteps(ThickTailedLogitNormalTimesteps):
    """t = sigmoid(N(loc, scale^2)), no uniform part."""

    def __init__(self, loc: float = 0.0, scale: float = 1.0):
        super().__init__(loc, scale, uniform_prob=0.0)


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The resolution shift of SD3-style flow training: t -> s t / (1 + (s - 1) t).

    ``shift`` > 1 moves noise levels towards t = 1 (more noise), < 1 towards 0; 1 is the identity.
    It is monotone and keeps 0 and 1 fixed, so a sampler's CDF F becomes F(t / (s - (s - 1) t)).
    """
    if shift <= 0:
        raise ValueError(f"timestep shift must be > 0, got {shift}")
    if shift == 1.0:
        return t
    return shift * t / (1.0 + (shift - 1.0) * t)


def build_timestep_sampler(name: str, **kwargs) -> TimestepSampler:
    """``TIMESTEP_SAMPLERS.build`` with the names listed in this module."""
    return TIMESTEP_SAMPLERS.build(name, **kwargs)
