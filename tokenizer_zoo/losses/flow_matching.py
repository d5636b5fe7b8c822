"""FlowMo stage 1A loss: rectified flow matching + LPIPS on the one-step prediction (spec §3).

    x_t   = (1 - t) * x + t * z,        z ~ N(0, I), t ~ noise-level distribution (t = 1: pure noise)
    v     = decoder(codes, x_t, t, drop_code=mask)          (mask: classifier-free-guidance dropout)
    flow  = mean over all elements of (z - x - v)^2
    x_hat = x_t - t * v                                     (one-step prediction of x)
    perceptual = mean over the batch of LPIPS(x_hat, x)
    total = flow + perceptual_weight * perceptual

The quantizer's ``aux_loss`` (entropy + commitment) is NOT included: the caller adds
``quantizer_output.aux_loss`` to ``total``.

Two switches for small models, both off by default (then the loss is exactly the paper's):

* ``timestep_shift`` s maps every drawn t to s t / (1 + (s - 1) t) (SD3's resolution shift; s > 1
  puts more weight at high noise, where the decoder must rely on the code).
* ``t1_prob`` sets a sample's noise level to exactly t = 1 with this probability. There x_t = z,
  x_hat = z - v and the flow residual z - x - v equals x_hat - x, so those rows train the decoder
  as a one-pass decoder of the code: MSE + LPIPS on x_hat, the deterministic x0 loss, at no extra
  cost.
* ``x0_weight`` w adds that one-pass loss for every image, on top of its flow loss:
  w * (MSE(x_hat_1, x) + perceptual_weight * LPIPS(x_hat_1, x)) with x_hat_1 = z - v(code, z, 1),
  the t = 1 pass batched with the flow pass into one decoder call.

``x_hat`` is passed to LPIPS unclamped: clamping to [-1, 1] would zero the gradient of every
pixel that overshoots, which are exactly the pixels of the worst (high-t) predictions, and LPIPS
accepts values slightly outside [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from einops import rearrange
from torch import nn

from tokenizer_zoo.losses.perceptual import perceptual_scores, resolve_perceptual_bf16
from tokenizer_zoo.losses.timesteps import TIMESTEP_SAMPLERS, TimestepSampler, shift_timesteps
from tokenizer_zoo.random_draws import draw

Decoder = Callable[..., torch.Tensor]
"""``decoder(codes, x_t, t, drop_code=mask) -> v`` with v shaped like x_t."""


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return draw("normal", x.shape, generator, x.device, torch.float32).to(x)


def interpolate(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t z for a batch; t has shape (B,)."""
    t = rearrange(t, "b -> b 1 1 1").to(x.dtype)
    return (1.0 - t) * x + t * noise


def velocity_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v* = z - x."""
    return noise - x


def one_step_prediction(x_t: torch.Tensor, t: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """x_hat = x_t - t v: the clean image implied by one Euler step from t to 0."""
    return x_t - rearrange(t, "b -> b 1 1 1").to(x_t.dtype) * velocity


def sample_cfg_dropout(batch_size: int, probability: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Bool mask (B,): True where the decoder's whole [code, 1] input is zeroed (unconditional)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"cfg dropout must be a probability in [0, 1], got {probability}")
    return draw("uniform", batch_size, generator, device) < probability


class FlowNoise(NamedTuple):
    """The random part of a stage-1A step: t (B,), noise shaped like x, drop_code bool (B,)."""

    t: torch.Tensor
    noise: torch.Tensor
    drop_code: torch.Tensor

    def rows(self, start: int, stop: int) -> FlowNoise:
        """Samples ``start:stop`` (one process's share of a global batch)."""
        return FlowNoise(*(part[start:stop] for part in self))


@dataclass
class FlowMatchingOutput:
    """Losses (scalars) and the sampled quantities of one stage-1A step, for inspection."""

    total: torch.Tensor
    flow: torch.Tensor
    perceptual: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    x_t: torch.Tensor
    velocity: torch.Tensor
    x_hat: torch.Tensor
    drop_code: torch.Tensor
    x0: torch.Tensor  # the one-pass loss at t = 1 (zero when x0_weight is 0)


class FlowMatchingLoss(nn.Module):
    """Stage 1A loss (see module docstring).

    Args:
        perceptual_weight: weight of LPIPS(x_hat, x) (0.1 in FlowMo). 0 disables the term and the
            perceptual network is never built (the "no perceptual loss" ablation).
        perceptual_net: name in :data:`tokenizer_zoo.losses.PERCEPTUAL` ("lpips_vgg" in FlowMo).
        timestep_sampler: name in :data:`TIMESTEP_SAMPLERS` ("thick_tailed_logit_normal").
        cfg_dropout: probability per sample of dropping the code (0.1).
        perceptual: an already built perceptual module ``(x_hat, x) -> (B, ...)`` to use instead of
            building ``perceptual_net`` (e.g. a tiny random network in tests).
        timestep_shift: the resolution shift s of the drawn noise levels (1: none, the paper).
        t1_prob: probability per sample of the noise level t = 1 (0: none, the paper).
        x0_weight: weight of the one-pass loss of every image at t = 1 (0: none, the paper).
        perceptual_precision: "float32" (the paper), "bfloat16" or "auto" (bf16 on CPUs with native bf16):
            the precision of the perceptual network on the CPU (:func:`resolve_perceptual_bf16`).
    """

    def __init__(
        self,
        perceptual_weight: float = 0.1,
        perceptual_net: str = "lpips_vgg",
        timestep_sampler: str | TimestepSampler = "thick_tailed_logit_normal",
        cfg_dropout: float = 0.1,
        perceptual: nn.Module | None = None,
        timestep_shift: float = 1.0,
        t1_prob: float = 0.0,
        x0_weight: float = 0.0,
        perceptual_precision: str = "float32",
    ):
        super().__init__()
        if timestep_shift <= 0:
            raise ValueError(f"timestep_shift must be > 0, got {timestep_shift}")
        if not 0.0 <= t1_prob <= 1.0:
            raise ValueError(f"t1_prob must be a probability in [0, 1], got {t1_prob}")
        if x0_weight < 0:
            raise ValueError(f"x0_weight must be >= 0, got {x0_weight}")
        self.timestep_shift, self.t1_prob, self.x0_weight = float(timestep_shift), float(t1_prob), float(x0_weight)
        if perceptual_weight < 0:
            raise ValueError(f"perceptual_weight must be >= 0, got {perceptual_weight}")
        if not 0.0 <= cfg_dropout <= 1.0:
            raise ValueError(f"cfg_dropout must be a probability in [0, 1], got {cfg_dropout}")
        self.perceptual_weight = float(perceptual_weight)
        self.cfg_dropout = float(cfg_dropout)
        self.timestep_sampler = (
            TIMESTEP_SAMPLERS.build(timestep_sampler) if isinstance(timestep_sampler, str) else timestep_sampler
        )
        if self.perceptual_weight == 0:
            perceptual = None
        elif perceptual is None:
            from tokenizer_zoo.losses.perceptual import PERCEPTUAL

            perceptual = PERCEPTUAL.build(perceptual_net)
        self.perceptual = perceptual
        self.perceptual_bf16 = resolve_perceptual_bf16(perceptual_precision)

    def draw(self, x: torch.Tensor, generator: torch.Generator | None = None) -> FlowNoise:
        """The random quantities of one step for the batch ``x``: noise levels, noise, dropout mask."""
        batch = x.shape[0]
        t = shift_timesteps(self.timestep_sampler.sample(batch, generator=generator, device=x.device),
                            self.timestep_shift)
        if self.t1_prob > 0:  # drawn only when on, so the paper's loss keeps its random stream
            at_one = sample_cfg_dropout(batch, self.t1_prob, generator=generator, device=x.device)
            t = torch.where(at_one, torch.ones_like(t), t)
        noise = _randn_like(x, generator)
        drop_code = sample_cfg_dropout(batch, self.cfg_dropout, generator=generator, device=x.device)
        return FlowNoise(t, noise, drop_code)

    def forward(
        self,
        decoder: Decoder,
        x: torch.Tensor,
        codes: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: FlowNoise | None = None,
    ) -> FlowMatchingOutput:
        """The loss of one batch; ``noise`` (e.g. drawn for a global batch and sliced per process)
        replaces drawing from ``generator``."""
        t, z, drop_code = noise if noise is not None else self.draw(x, generator)
        x_t = interpolate(x, z, t)
        batch = x.shape[0]
        inputs = (codes, x_t, t, drop_code)
        if self.x0_weight > 0:  # the t = 1 pass of every image rides in the same decoder call
            inputs = tuple(torch.cat(pair) for pair in zip(inputs, (codes, z, torch.ones_like(t), torch.zeros_like(drop_code))))
        velocity = decoder(*inputs[:3], drop_code=inputs[3])
        if velocity.shape != inputs[1].shape:
            raise ValueError(f"the decoder returned a velocity of shape {tuple(velocity.shape)}; expected "
                             f"{tuple(inputs[1].shape)}")
        velocity, velocity_at_one = velocity[:batch], velocity[batch:]
        flow = (velocity_target(x, z) - velocity).float().square().mean()
        x_hat = one_step_prediction(x_t, t, velocity)
        predictions = x_hat if self.x0_weight == 0 else torch.cat([x_hat, z - velocity_at_one])
        if self.perceptual is None:
            scores = torch.zeros(len(predictions), device=x.device)
        else:
            scores = perceptual_scores(self.perceptual, predictions, x.repeat(len(predictions) // batch, 1, 1, 1),
                                       self.perceptual_bf16)
        perceptual = scores[:batch].mean()
        total = flow + self.perceptual_weight * perceptual
        x0 = torch.zeros((), device=x.device)
        if self.x0_weight > 0:
            x0 = (predictions[batch:] - x).float().square().mean() + self.perceptual_weight * scores[batch:].mean()
            total = total + self.x0_weight * x0
        return FlowMatchingOutput(total, flow, perceptual, t, z, x_t, velocity, x_hat, drop_code, x0)

    def extra_repr(self) -> str:
        return (
            f"perceptual_weight={self.perceptual_weight}, cfg_dropout={self.cfg_dropout}, "
            f"timestep_sampler={self.timestep_sampler!r}, timestep_shift={self.timestep_shift}, t1_prob={self.t1_prob}, "
            f"x0_weight={self.x0_weight}"
        )
