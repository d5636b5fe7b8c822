"""Rectified-flow samplers (diffusers scheduler contract), registered in ``SAMPLERS``."""

from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler, euler_step, shifted_schedule

__all__ = ["ShiftedEulerScheduler", "euler_step", "shifted_schedule"]
