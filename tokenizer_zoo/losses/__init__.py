"""Losses: stage-1A flow matching, noise-level distributions, perceptual networks (LPIPS, ResNet-50 logits)."""

from tokenizer_zoo.losses.flow_matching import (
    FlowMatchingLoss,
    FlowMatchingOutput,
    FlowNoise,
    interpolate,
    one_step_prediction,
    sample_cfg_dropout,
    velocity_target,
)
from tokenizer_zoo.losses.perceptual import PERCEPTUAL, LPIPSWeightsMissingError, build_lpips
from tokenizer_zoo.losses.resnet import LogitsDistance, ResNetWeightsMissingError, build_resnet50_logits
from tokenizer_zoo.losses.timesteps import (
    TIMESTEP_SAMPLERS,
    LogitNormalTimesteps,
    ThickTailedLogitNormalTimesteps,
    TimestepDraw,
    TimestepSampler,
    UniformTimesteps,
    build_timestep_sampler,
)
from tokenizer_zoo.losses.weights import IMPORT_COMMAND, import_lpips_backbones

__all__ = [
    "IMPORT_COMMAND",
    "PERCEPTUAL",
    "TIMESTEP_SAMPLERS",
    "FlowMatchingLoss",
    "FlowMatchingOutput",
    "FlowNoise",
    "LPIPSWeightsMissingError",
    "LogitsDistance",
    "LogitNormalTimesteps",
    "ThickTailedLogitNormalTimesteps",
    "TimestepDraw",
    "TimestepSampler",
    "ResNetWeightsMissingError",
    "UniformTimesteps",
    "build_lpips",
    "build_resnet50_logits",
    "build_timestep_sampler",
    "import_lpips_backbones",
    "interpolate",
    "one_step_prediction",
    "sample_cfg_dropout",
    "velocity_target",
]
