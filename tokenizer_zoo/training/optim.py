"""The recipes' Adam: torch's fused implementation (one kernel over all parameters) wherever it applies.

On CPU the default ``torch.optim.Adam`` updates parameter by parameter from Python (foreach is CUDA-only
by default): 5.5 ms a step for the 115 tensors of ``flowmo_tiny`` against 1.6 ms fused on one thread
(``benchmarks/reference_speed.py`` times it inside the training step). The update is the same Adam;
state dicts are interchangeable, so checkpoints of either resume in the other.
"""

from __future__ import annotations

import torch

FUSED_DEVICES = ("cpu", "cuda")


def fused_supported(params) -> bool:
    """Whether torch's fused Adam takes every tensor of ``params`` (floating point, on CPU or CUDA, plain)."""
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(tensors) and all(type(p) is torch.nn.Parameter and p.is_floating_point()
                                 and p.device.type in FUSED_DEVICES for p in tensors)


def adam(params, *, lr: float, betas: tuple[float, float], weight_decay: float = 0.0,
         decoupled: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``AdamW`` when ``decoupled``), fused where :func:`fused_supported` says so."""
    params = [{**group, "params": list(group["params"])} if isinstance(group, dict) else group for group in params]
    optimizer = torch.optim.AdamW if decoupled else torch.optim.Adam
    return optimizer(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                     fused=fused_supported(params) or None)
