"""Heun (2nd-order) sampling of a rectified flow on FlowMo's shifted schedule (FLOWMO_SPEC §5).

Same schedule t_1 = 1 > ... > t_n > t_{n+1} = 0 as :class:`ShiftedEulerScheduler`. Each interval
[t_{i+1}, t_i] but the last is one Heun step (explicit trapezoid):

    x' = x - (t_i - t_{i+1}) v(x, t_i)                          (Euler predictor)
    x  <- x - (t_i - t_{i+1}) (v(x, t_i) + v(x', t_{i+1})) / 2  (corrector)

and the last interval, down to t = 0, is a plain Euler step (no model call at t = 0), as in
diffusers' HeunDiscreteScheduler. Like there, ``order = 2`` and the timesteps are repeated,

    timesteps = [t_1, t_2, t_2, t_3, t_3, ..., t_n, t_n]      (2n - 1 model calls),

so the usual loop ``for t in scheduler.timesteps: x = scheduler.step(model(x, t), t, x).prev_sample``
evaluates the model where the method needs it: after the predictor step the loop gets x' back
and the next call (at t_{i+1}) is the corrector's evaluation.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, SchedulerMixin  # noqa: F401  (diffusers looks base classes up in this module)
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from tokenizer_zoo.registry import SAMPLERS
from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler, euler_step


@SAMPLERS.register("shifted_heun")
class ShiftedHeunScheduler(ShiftedEulerScheduler):
    """2nd-order Heun scheduler; the config (num_inference_steps, rho, clip_sample) is Euler's.

    ``len(scheduler)`` and ``num_inference_steps`` count intervals; ``len(timesteps)`` (model
    calls) is ``2 * num_inference_steps - 1``.
    """

    order = 2

    def set_timesteps(self, num_inference_steps: int | None = None, device=None) -> None:
        super().set_timesteps(num_inference_steps, device)
        self.timesteps = torch.cat([self.sigmas[:1], self.sigmas[1:-1].repeat_interleave(2)])
        self._step_index = self._interval = 0
        self._first_velocity: torch.Tensor | None = None  # v(x, t_i) while waiting for the corrector
        self._interval_start: torch.Tensor | None = None  # x at t_i while waiting for the corrector

    @property
    def state_in_first_order(self) -> bool:
        """True when the next ``step`` starts an interval (predictor), False for a corrector."""
        return self._first_velocity is None

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        if self._step_index >= len(self.timesteps):
            raise RuntimeError("all steps are done: call set_timesteps() before sampling again")
        i = self._interval
        t, t_next = self.sigmas[i], self.sigmas[i + 1]
        if not self.state_in_first_order:  # corrector: model_output = v(x', t_{i+1})
            prev = euler_step(self._interval_start, 0.5 * (self._first_velocity + model_output), t, t_next)
            self._first_velocity = self._interval_start = None
            self._interval += 1
        elif i == self.num_inference_steps - 1:  # the last interval, down to t = 0: Euler
            prev = euler_step(sample, model_output, t, t_next)
            self._interval += 1
        else:  # predictor
            self._first_velocity, self._interval_start = model_output, sample
            prev = euler_step(sample, model_output, t, t_next)
        self._step_index += 1
        if self.config.clip_sample and self._interval == self.num_inference_steps:
            prev = prev.clamp(-1.0, 1.0)
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)
