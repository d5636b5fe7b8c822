"""Finite checks at the boundaries: what comes into a pipeline, what is loaded from disk, what training computes.

Each check raises :class:`NonFiniteError` (a ``ValueError``) with a one-line message that names the
offending tensor and says what to do. Checks cost one reduction and one host sync per call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch


class NonFiniteError(ValueError):
    """A tensor holds NaN or inf where only finite values make sense."""


class TrainingDivergedError(NonFiniteError):
    """Training produced a NaN or infinite loss or weights."""


def _finite(tensor: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor (on the tensor's device): True when every value is finite; integers always are."""
    if tensor.is_floating_point() or tensor.is_complex():
        return torch.isfinite(tensor).all()
    return torch.ones((), dtype=torch.bool, device=tensor.device)


def first_nonfinite(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first tensor holding NaN or inf, or None; one host sync for all tensors together."""
    named = [(name, tensor) for name, tensor in named_tensors if tensor.numel()]
    if not named:
        return None
    device = named[0][1].device
    flags = torch.stack([_finite(tensor).to(device) for _, tensor in named]).cpu()
    if bool(flags.all()):
        return None
    return named[int((~flags).nonzero()[0])][0]


def check_finite_input(tensor: torch.Tensor, what: str, fix: str) -> None:
    """Refuse a pipeline input (images, codes) holding NaN or inf; ``fix`` says what to do."""
    if not bool(_finite(tensor)):
        raise NonFiniteError(f"{what} contain NaN or inf; {fix}")


def check_finite_weights(state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Refuse weights loaded from ``source`` when any tensor holds NaN or inf, naming the first one."""
    bad = first_nonfinite(state_dict.items())
    if bad is not None:
        raise NonFiniteError(f"{source}: tensor {bad!r} holds NaN or inf; the weights file is damaged or was saved "
                             "from a diverged run: re-download it or save it again from a healthy checkpoint")


def check_finite_loss(values: dict[str, float], step: int, last_checkpoint: str | Path | None) -> None:
    """Stop training when a logged loss is NaN or inf, naming the step and the checkpoint to resume from."""
    bad = [name for name, value in values.items() if value != value or value in (float("inf"), float("-inf"))]
    if bad:
        raise TrainingDivergedError(f"training diverged: {bad[0]} is {values[bad[0]]} at step {step}; "
                                    + _resume_hint(last_checkpoint))


def check_finite_training_weights(named_tensors: Iterable[tuple[str, torch.Tensor]], step: int,
                                  last_checkpoint: str | Path | None) -> None:
    """Refuse to checkpoint weights holding NaN or inf (so the last good checkpoint is never replaced)."""
    bad = first_nonfinite(named_tensors)
    if bad is not None:
        raise TrainingDivergedError(f"training diverged: weight {bad!r} holds NaN or inf at step {step}, so it was "
                                    "not checkpointed; " + _resume_hint(last_checkpoint))


def _resume_hint(last_checkpoint: str | Path | None) -> str:
    kept = ("no checkpoint was written yet" if last_checkpoint is None
            else f"the last good checkpoint {last_checkpoint} is kept")
    return f"{kept}; lower the learning rate (lr=) or check the data, and train again in a new output_dir"
