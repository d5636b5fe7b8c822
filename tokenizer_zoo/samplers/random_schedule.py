"""Random per-sample Euler schedules and the differentiable Euler chain of stage 1B (FLOWMO_SPEC §4).

Stage 1B samples with a short chain whose times are drawn afresh for every image:

    u ~ U(0, 1]^(n + 1),  s = cumsum(u) - s_0,  s = s / s_n,  t = flip(s)     (t_0 = 1 > ... > t_n = 0)

and integrates the decoder's flow with the same :func:`~tokenizer_zoo.samplers.shifted_euler.euler_step`
the inference scheduler uses, so that training optimises exactly what sampling computes. Each
decoder call can be wrapped in activation checkpointing: the chain then keeps only its n
intermediate samples for the backward pass and recomputes one decoder call at a time, so memory
stays nearly flat in n while time grows by one extra forward per step.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

from tokenizer_zoo.random_draws import draw
from tokenizer_zoo.samplers.shifted_euler import euler_step


def random_schedule(batch_size: int, num_steps: int, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """(batch_size, num_steps + 1) float64 times per row, strictly decreasing from exactly 1 to exactly 0.

    ``u`` is drawn from (0, 1] (``1 - U[0, 1)``) so that no two times coincide; float64 keeps the
    gaps representable (the chain casts to the sample's dtype when it uses them).
    """
    if num_steps < 1:
        raise ValueError(f"the chain needs num_steps >= 1, got {num_steps}")
    u = 1.0 - draw("uniform", (batch_size, num_steps + 1), generator, device, torch.float64)
    s = u.cumsum(dim=1)
    s = s - s[:, :1]
    s = s / s[:, -1:]
    return s.flip(dims=(1,))


Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``decoder(codes, x_t, t) -> v``: the conditional velocity, no guidance."""


def euler_chain(decoder: Velocity, codes: torch.Tensor, noise: torch.Tensor, times: torch.Tensor,
                checkpointing: bool = True, step_conditioned: bool = False, **decoder_kwargs) -> torch.Tensor:
    """Integrate dx/dt = decoder(codes, x, t) from ``noise`` at ``times[:, 0]`` to ``times[:, -1]``.

    ``times``: (B, n + 1) per-sample schedules (or (n + 1,) shared). Differentiable; with
    ``checkpointing`` each decoder call is recomputed in the backward pass
    (``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``). The result is not clipped:
    clipping would zero the gradient of every overshooting pixel. ``step_conditioned``: also pass
    ``step_size`` = t - t_next (a few-step student's decoder); ``decoder_kwargs`` go to every call.
    """
    times = times.to(device=noise.device, dtype=noise.dtype)
    if times.ndim == 1:
        times = times.expand(noise.shape[0], -1)
    if times.shape[0] != noise.shape[0] or times.shape[1] < 2:
        raise ValueError(f"times must be (batch, steps + 1) with batch {noise.shape[0]} and steps >= 1, "
                         f"got {tuple(times.shape)}")
    sample = noise
    for index in range(times.shape[1] - 1):
        t, t_next = times[:, index], times[:, index + 1]
        kwargs = {**decoder_kwargs, "step_size": t - t_next} if step_conditioned else decoder_kwargs
        if checkpointing:
            velocity = checkpoint(decoder, codes, sample, t, use_reentrant=False, **kwargs)
        else:
            velocity = decoder(codes, sample, t, **kwargs)
        sample = euler_step(sample, velocity, t, t_next)
    return sample
