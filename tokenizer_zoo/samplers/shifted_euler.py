"""Euler sampling of a rectified flow on FlowMo's shifted schedule (FLOWMO_SPEC §5).

Time runs from t = 1 (pure noise) to t = 0 (data); the decoder predicts v ~ z - x, so one Euler
step from t_i to t_{i+1} is ``x <- x - (t_i - t_{i+1}) * v``. The shifted schedule

    t_i = ((n - i + 1) / n) ** rho,  i = 1..n,   t_{n+1} = 0

puts most steps at low noise for rho > 1 (rho = 1 is the uniform schedule). The final sample is
clipped to [-1, 1]. This is diffusers' ``FlowMatchEulerDiscreteScheduler`` with these times as custom
sigmas, so :class:`ShiftedEulerScheduler` subclasses it. Classifier-free guidance and its interval
live in the pipeline loop.
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SchedulerMixin  # noqa: F401  (diffusers looks base classes up here)
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteSchedulerOutput

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
class ShiftedEulerScheduler(FlowMatchEulerDiscreteScheduler):
    """diffusers' ``FlowMatchEulerDiscreteScheduler`` on the shifted schedule, with its defaults in the config.

    ``num_inference_steps`` and ``rho`` are the sampling defaults of a FlowMo pipeline; ``timesteps``
    are flow times in (0, 1] (``num_train_timesteps`` = 1), the values the FlowMo decoder takes as ``t``.
    The parent's settings stay in the config (its methods read them); declaring the parent compatible
    lets ``from_config`` pass over them without warning, and lets each scheduler load the other's config.
    """

    _compatibles = ["FlowMatchEulerDiscreteScheduler"]

    @register_to_config
    def __init__(self, num_inference_steps: int = 25, rho: float = 4.0, clip_sample: bool = True):
        super().__init__(num_train_timesteps=1, shift=1.0)
        self.set_timesteps(num_inference_steps)

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, **diffusers_kwargs) -> None:
        """The shifted schedule of ``num_inference_steps`` (default: the config's) and the config's ``rho``;
        ``diffusers_kwargs`` (custom ``sigmas``, ``mu``, ...) are refused: this scheduler's sigmas are fixed."""
        if diffusers_kwargs:
            raise TypeError(f"{type(self).__name__}.set_timesteps takes num_inference_steps and device only, "
                            f"not {', '.join(diffusers_kwargs)}; use FlowMatchEulerDiscreteScheduler for custom sigmas")
        n = num_inference_steps or self.config.num_inference_steps
        super().set_timesteps(sigmas=self.flow_times(n)[:-1].tolist(), device=device)

    def flow_times(self, num_inference_steps: int) -> torch.Tensor:
        """The n + 1 flow times, 1 down to 0, of sampling in ``num_inference_steps`` steps (float64)."""
        return shifted_schedule(num_inference_steps, self.config.rho)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True, **kwargs):
        if self.step_index is not None and self.step_index >= self.num_inference_steps:
            raise RuntimeError("all steps are done: call set_timesteps() before sampling again")
        prev = super().step(model_output, timestep, sample, return_dict=False, **kwargs)[0]
        if self.config.clip_sample and self.step_index == self.num_inference_steps:
            prev = prev.clamp(-1.0, 1.0)
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def __len__(self) -> int:
        return self.num_inference_steps
