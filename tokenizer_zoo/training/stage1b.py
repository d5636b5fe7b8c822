"""Stage 1B of FlowMo: mode-seeking post-training of the decoder alone (FLOWMO_SPEC §4).

    loss = L_flow + sample_weight * d(chain(z, c, t_0..t_n), x)

``L_flow`` is the stage-1A flow-matching loss without its one-step perceptual term; ``chain`` is an
n-step Euler integration of the decoder from Gaussian noise with random per-sample times
(:func:`~tokenizer_zoo.samplers.random_schedule.euler_chain`, the inference sampler's
``euler_step``), no guidance, back-propagated end to end; ``d`` a perceptual network from
:data:`~tokenizer_zoo.losses.PERCEPTUAL` (``resnet50_logits`` in the paper). Encoder and
quantizer are frozen: no gradients, eval mode, their codes computed without a graph.

Post-training optimises a perceptual network's opinion of a few-step sample: trained too long or
with too large a weight, the decoder learns to please that network rather than to reconstruct
("reward hacking"). Hence :class:`EarlyStopping` on a held-out metric, keeping the best EMA weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from tokenizer_zoo.losses.flow_matching import FlowMatchingLoss, FlowNoise
from tokenizer_zoo.random_draws import draw
from tokenizer_zoo.samplers.random_schedule import euler_chain, random_schedule
from tokenizer_zoo.training.stage1a import Stage1AModel, Stage1AOutput

CHAIN_SEED_OFFSET = 1 << 40
"""Added to the per-micro-step seed of the chain's noise so it never reuses the flow loss's draw."""


class ChainNoise(NamedTuple):
    """The random part of the sample loss: the chain's start ``noise`` (like x) and ``times`` (B, n + 1)."""

    noise: torch.Tensor
    times: torch.Tensor

    def rows(self, start: int, stop: int) -> ChainNoise:
        return ChainNoise(self.noise[start:stop], self.times[start:stop])


def draw_chain(images: torch.Tensor, num_steps: int, generator: torch.Generator | None = None) -> ChainNoise:
    """Start noise and random schedules for a batch like ``images`` (float32 noise, float64 times)."""
    noise = draw("normal", images.shape, generator, images.device, torch.float32)
    times = random_schedule(images.shape[0], num_steps, generator=generator, device=images.device)
    return ChainNoise(noise.to(images), times)


def draw_chain_noise(images: torch.Tensor, process_index: int, num_processes: int, num_steps: int,
                     seed: int, micro_step: int) -> ChainNoise:
    """This process's rows of the chain noise of the global batch of ``micro_step`` (like
    :func:`~tokenizer_zoo.training.stage1a.draw_flow_noise`: independent of the process count)."""
    rows = images.shape[0]
    generator = torch.Generator().manual_seed(seed * 1_000_003 + micro_step + CHAIN_SEED_OFFSET)
    everyone = draw_chain(images.new_empty((rows * num_processes, *images.shape[1:]), device="cpu"), num_steps, generator)
    mine = everyone.rows(process_index * rows, (process_index + 1) * rows)
    return ChainNoise(mine.noise.to(images.device), mine.times.to(images.device))


@dataclass
class SampleLossOutput:
    distance: torch.Tensor  # scalar: mean perceptual distance
    sample: torch.Tensor  # the chain's final sample (unclipped)


class SampleLoss(nn.Module):
    """Perceptual distance between an n-step random-schedule Euler sample and the original.

    Args:
        perceptual: ``(prediction, target) -> distances (B, ...)`` on images in [-1, 1], e.g.
            ``PERCEPTUAL.build("resnet50_logits")``. Frozen by the caller's builder.
        num_steps: n, the chain's length (8 in FlowMo).
        checkpointing: recompute each decoder call in the backward pass (memory ~flat in n).
    """

    def __init__(self, perceptual: nn.Module, num_steps: int = 8, checkpointing: bool = True):
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.perceptual, self.num_steps, self.checkpointing = perceptual, num_steps, checkpointing

    def forward(self, decoder: nn.Module, images: torch.Tensor, codes: torch.Tensor,
                chain: ChainNoise | None = None, generator: torch.Generator | None = None) -> SampleLossOutput:
        chain = chain if chain is not None else draw_chain(images, self.num_steps, generator)
        if chain.times.shape[1] != self.num_steps + 1:
            raise ValueError(f"the chain has {chain.times.shape[1] - 1} steps; this loss uses {self.num_steps}")
        sample = euler_chain(decoder, codes, chain.noise, chain.times, checkpointing=self.checkpointing)
        return SampleLossOutput(self.perceptual(sample, images).float().mean(), sample)

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, checkpointing={self.checkpointing}"


class Stage1BModel(Stage1AModel):
    """Frozen encoder + quantizer; the decoder trained on ``flow + sample_weight * sample``."""

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module, loss: FlowMatchingLoss,
                 sample_loss: SampleLoss, sample_weight: float = 0.01):
        super().__init__(encoder, quantizer, decoder, loss)
        if loss.perceptual is not None:
            raise ValueError("stage 1B replaces the one-step perceptual term: build FlowMatchingLoss(perceptual_weight=0)")
        self.sample_loss, self.sample_weight = sample_loss, float(sample_weight)
        for frozen in (encoder, quantizer):
            frozen.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        self.quantizer.eval()
        return self

    def forward(self, images: torch.Tensor, noise: FlowNoise | None = None, chain: ChainNoise | None = None,
                generator: torch.Generator | None = None) -> Stage1AOutput:
        with torch.no_grad():
            codes = self.quantizer(self.encoder(images)).quantized
        flow = self.loss(self.decoder, images, codes, generator=generator, noise=noise)
        sample = self.sample_loss(self.decoder, images, codes, chain=chain, generator=generator)
        total = flow.flow + self.sample_weight * sample.distance
        logs = {"loss": total, "flow": flow.flow, "sample": sample.distance}
        return Stage1AOutput(loss=total, logs={k: v.detach().float() for k, v in logs.items()})


class EarlyStopping:
    """Best-so-far tracking of a held-out metric with patience, keeping a copy of the best weights.

    ``update(value, params)`` returns True when ``value`` is the new best (then ``params`` are
    copied). ``should_stop`` after ``patience`` updates in a row without improvement.
    ``state_dict``/``load_state_dict`` make it resumable (Accelerate ``register_for_checkpointing``).
    """

    def __init__(self, patience: int, higher_is_better: bool, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1 evaluation, got {patience}")
        self.patience, self.higher_is_better, self.min_delta = patience, higher_is_better, min_delta
        self.best = -math.inf if higher_is_better else math.inf
        self.best_step = -1
        self.bad_evaluations = 0
        self.best_weights: list[torch.Tensor] = []

    def improves(self, value: float) -> bool:
        gain = value - self.best if self.higher_is_better else self.best - value
        return gain > self.min_delta

    def update(self, value: float, params, step: int) -> bool:
        if not math.isfinite(value):
            value = -math.inf if self.higher_is_better else math.inf
        if self.improves(value):
            self.best, self.best_step, self.bad_evaluations = value, step, 0
            self.best_weights = [p.detach().to("cpu", copy=True) for p in params]
            return True
        self.bad_evaluations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_evaluations >= self.patience

    @torch.no_grad()
    def copy_best_to(self, params) -> None:
        params = list(params)
        if len(params) != len(self.best_weights):
            raise RuntimeError("no best weights recorded for these parameters: evaluate before copying")
        for param, best in zip(params, self.best_weights):
            param.copy_(best.to(param.device, param.dtype))

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad_evaluations": self.bad_evaluations,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.bad_evaluations, self.best_weights = state["bad_evaluations"], list(state["best_weights"])
