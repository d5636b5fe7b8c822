"""Checkpoints under the plain module's parameter names, whatever wraps the model during training.

``accelerator.save_state`` writes the state dict of the *prepared* model: under ``torch.compile``
(``accelerate launch --dynamo_backend inductor``) every key starts with ``_orig_mod.``, under DDP with
``module.``, so a checkpoint of a compiled run would not load into an eager one. With these hooks the
checkpoint holds the unwrapped module's state and is loaded into the unwrapped module (which shares its
parameters with the wrappers): checkpoints move between eager, compiled and multi-process runs.
"""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel


def save_unwrapped(models: list, weights: list, output_dir) -> None:
    """Accelerate save-state pre-hook: replace each model's state dict by its unwrapped module's."""
    if len(weights) != len(models):  # FSDP and DeepSpeed save their models themselves
        return
    for i, model in enumerate(models):
        weights[i] = extract_model_from_parallel(model, keep_torch_compile=False).state_dict()


def load_unwrapped(models: list, input_dir) -> None:
    """Accelerate load-state pre-hook: load each saved state into the unwrapped module."""
    for i, model in enumerate(models):
        models[i] = extract_model_from_parallel(model, keep_torch_compile=False)


def register_unwrapped_checkpoints(accelerator: Accelerator) -> None:
    """Make ``accelerator.save_state`` / ``load_state`` use the unwrapped modules' parameter names."""
    accelerator.register_save_state_pre_hook(save_unwrapped)
    accelerator.register_load_state_pre_hook(load_unwrapped)
