"""Rectified-flow samplers (diffusers scheduler contract), registered in ``SAMPLERS``, and likelihoods."""

from tokenizer_zoo.samplers.few_step import FewStepScheduler, student_grid
from tokenizer_zoo.samplers.heun import ShiftedHeunScheduler
from tokenizer_zoo.samplers.likelihood import (LikelihoodOutput, bits_per_dim, conditional_velocity,
                                               flow_log_likelihood)
from tokenizer_zoo.samplers.random_schedule import euler_chain, random_schedule
from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler, euler_step, shifted_schedule

__all__ = ["FewStepScheduler", "LikelihoodOutput", "ShiftedEulerScheduler", "ShiftedHeunScheduler", "bits_per_dim",
           "conditional_velocity", "euler_chain", "euler_step", "flow_log_likelihood", "random_schedule",
           "shifted_schedule", "student_grid"]
