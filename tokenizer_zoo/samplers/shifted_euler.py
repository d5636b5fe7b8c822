"""Euler sampling of a rectified flow on FlowMo's shifted schedule (FLOWMO_SPEC §5).

Time runs from t = 1 (pure noise) to t = 0 (data); the decoder predicts v ~ z - x, so one Euler
step from t_i to t_{i+1} is ``x <- x - (t_i - t_{i+1}) * v``. The shifted schedule

    t_i = ((n - i + 1) / n) ** rho,  i = 1..n,   t_{n+1} = 0

puts most steps at low noise for rho > 1 (rho = 1 is the uniform schedule). The final sample is
clipped to [-1, 1]. Classifier-free guidance and its interval live in the pipeline loop.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from tokenizer_zoo.registry import SAMPLERS


def shifted_schedule(num_steps: int, rho: float = 4.0) -> torch.Tensor:
    """The n + 1 times t_1 = 1 > t_2 > ... > t_n > t_{n+1} = 0 of the shifted schedule, float64."""
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    if rho <= 0:
        raise ValueError(f"rho must be > 0 (1 is uniform, 4 is FlowMo's default), got {rho}")
    i = torch.arange(1, num_steps + 1, dtype=torch.float64)
    return torch.cat([((num_steps - i + 1) / num_steps) ** rho, torch.zeros(1, dtype=torch.float64)])


def euler_step(sample: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of dx/dt = v from t to t_next (< t). ``t``/``t_next`` are scalars or (B,)."""
    dt = (torch.as_tensor(t, dtype=sample.dtype, device=sample.device) - t_next).to(sample.dtype)
    return sample - dt.reshape(-1, *([1] * (sample.ndim - 1))) * velocity


@SAMPLERS.register("shifted_euler")
class ShiftedEulerScheduler(SchedulerMixin, ConfigMixin):
    """diffusers-style scheduler: ``set_timesteps`` then ``step`` once per timestep.

    ``timesteps`` are flow times in (0, 1], the values the FlowMo decoder takes as ``t``.
    """

    order = 1

    @register_to_config
    def __init__(self, num_inference_steps: int = 25, rho: float = 4.0, clip_sample: bool = True):
        self.set_timesteps(num_inference_steps, rho)

    def set_timesteps(self, num_inference_steps: int | None = None, rho: float | None = None, device=None) -> None:
        n = num_inference_steps or self.config.num_inference_steps
        self.rho = self.config.rho if rho is None else rho
        self.num_inference_steps = n
        self.sigmas = shifted_schedule(n, self.rho).to(device=device, dtype=torch.float32)
        self.timesteps = self.sigmas[:-1]
        self._step_index = 0

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        if self._step_index >= self.num_inference_steps:
            raise RuntimeError("all steps are done: call set_timesteps() before sampling again")
        t, t_next = self.sigmas[self._step_index], self.sigmas[self._step_index + 1]
        prev = euler_step(sample, model_output, t, t_next)
        self._step_index += 1
        if self.config.clip_sample and self._step_index == self.num_inference_steps:
            prev = prev.clamp(-1.0, 1.0)
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def __len__(self) -> int:
        return self.num_inference_steps
