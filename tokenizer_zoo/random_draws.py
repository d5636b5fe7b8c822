"""Random draws that compile with a symbolic batch size.

``torch.randn(size, generator=None)`` is the ``generator`` overload of the operator, which accepts only
concrete sizes: under ``torch.compile`` with automatic dynamic shapes (the second batch size a compiled
module sees, a last partial batch) the batch dimension is symbolic and the call fails with "SymIntArrayRef
expected to contain only concrete integers". :func:`draw` passes ``generator`` only when there is one, so
the global-RNG draw of a compiled region takes any size, and a seeded draw reproduces the same numbers.

A ``torch.Generator`` cannot enter a compiled graph at all (Dynamo breaks the graph there); the training
recipes therefore draw their noise outside the compiled model (``draw_flow_noise``).
"""

from __future__ import annotations

from typing import Sequence

import torch

_KINDS = {"normal": torch.randn, "uniform": torch.rand}


def draw(kind: str, shape: int | Sequence, generator: torch.Generator | None = None, device=None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """``kind`` ("normal" or "uniform") samples of ``shape`` from ``generator`` or the global RNG.

    With a generator the numbers are drawn on the generator's device (so a CPU generator gives the same
    draws on every device) and moved to ``device``; without one they are drawn on ``device`` (CPU when
    None).
    """
    shape = (shape,) if not isinstance(shape, Sequence) else tuple(shape)
    target = torch.device(device) if device is not None else None
    if generator is None:
        return _KINDS[kind](shape, device=target, dtype=dtype)
    sample = _KINDS[kind](shape, generator=generator, device=generator.device, dtype=dtype)
    return sample if target is None else sample.to(target)
