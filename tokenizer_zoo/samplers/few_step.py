"""The sampler of a few-step FlowMo student (recipes/flowmo_distill.py): Euler steps on a subset of
its teacher's schedule.

The teacher samples on the shifted schedule of ``teacher_steps`` steps (FlowMo: 25, rho = 4). A
student trained to take ``n`` steps covers the same path in ``n`` jumps whose ends are teacher
times: step j runs from teacher time index ``j * teacher_steps // n`` to ``(j + 1) * teacher_steps // n``,
so each student step stands for an equal share of the teacher's steps (as in progressive
distillation) and every student time is one the teacher's trajectory passes through. The student's
decoder is told the step it takes (``step_size`` = t - t_next, :attr:`FewStepScheduler.step_sizes`).

A student is only trained for some step counts (``trained_steps``); any other count raises, since
its jumps would end at times the student never learned to land on.
"""

from __future__ import annotations

import torch
from diffusers import SchedulerMixin  # noqa: F401  (diffusers looks base classes up in this module)
from diffusers.configuration_utils import register_to_config

from tokenizer_zoo.registry import SAMPLERS
from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler, shifted_schedule


def student_grid(num_steps: int, teacher_steps: int) -> list[int]:
    """Indices into the teacher's ``teacher_steps + 1`` times where the ``num_steps`` student steps start and end."""
    if not 1 <= num_steps <= teacher_steps:
        raise ValueError(f"a student takes between 1 and teacher_steps = {teacher_steps} steps, got {num_steps}")
    return [j * teacher_steps // num_steps for j in range(num_steps + 1)]


@SAMPLERS.register("few_step")
class FewStepScheduler(ShiftedEulerScheduler):
    """Euler steps between the teacher-schedule times of :func:`student_grid` (diffusers scheduler contract).

    Config: ``num_inference_steps`` (the default step count), ``trained_steps`` (the counts the student
    was trained for), ``teacher_steps`` and ``rho`` (the teacher's schedule), ``clip_sample``.
    """

    @register_to_config
    def __init__(self, num_inference_steps: int = 4, trained_steps: list[int] = (1, 2, 4, 8), teacher_steps: int = 25,
                 rho: float = 4.0, clip_sample: bool = True):
        trained = sorted({int(n) for n in trained_steps})
        if not trained or num_inference_steps not in trained:
            raise ValueError(f"num_inference_steps {num_inference_steps} must be one of trained_steps {trained}")
        for n in trained:
            student_grid(n, teacher_steps)
        super().__init__(num_inference_steps=num_inference_steps, rho=rho, clip_sample=clip_sample)

    def flow_times(self, num_inference_steps: int) -> torch.Tensor:
        trained = sorted(self.config.trained_steps)
        if num_inference_steps not in trained:
            raise ValueError(f"this few-step student was trained for num_inference_steps in {trained}, not "
                             f"{num_inference_steps}; pass one of those (or decode with its teacher)")
        teacher = shifted_schedule(self.config.teacher_steps, self.config.rho)
        return teacher[student_grid(num_inference_steps, self.config.teacher_steps)]

    @property
    def step_sizes(self) -> torch.Tensor:
        """t - t_next of each step of the current run, the student decoder's ``step_size`` input."""
        return self.sigmas[:-1] - self.sigmas[1:]
