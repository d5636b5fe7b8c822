"""Forced weight normalisation: keep every Linear weight inside the transformer blocks at its initial norm.

After each optimiser step, ``W <- W * ||W0|| / ||W||`` (Frobenius norm, or per output row with
``per_row=True``, the EDM2 variant). "Inside the blocks" means every ``nn.Linear`` under an
:class:`MMDiTBlock` -- qkv, proj, MLP and, in the decoder, the adaLN modulation Linears, as in the
reference. Biases, embedders and heads are left alone; a weight whose norm is zero is left as is.
Usage::

    normalizer = ForcedWeightNorm(model)     # records the initial norms, right after init
    ...
    optimizer.step()
    normalizer()                             # runs under torch.no_grad

The initial norms travel with ``state_dict()`` / ``load_state_dict()`` (so checkpoints resume
correctly; Accelerate can ``register_for_checkpointing`` the object).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from tokenizer_zoo.layers.mmdit import MMDiTBlock

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _clean(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name.replace("._orig_mod.", ".").replace(".module.", ".")


class ForcedWeightNorm:
    """Records the initial norms of the Linear weights inside ``block_types`` modules of ``model``."""

    def __init__(self, model: nn.Module, block_types: tuple[type, ...] = (MMDiTBlock,), per_row: bool = False):
        self.per_row = per_row
        self.weights: dict[str, nn.Parameter] = {}
        for block_name, block in model.named_modules():
            if not isinstance(block, block_types):
                continue
            for name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    self.weights[_clean(f"{block_name}.{name}")] = module.weight
        if not self.weights:
            raise ValueError(f"no Linear layers inside {[t.__name__ for t in block_types]} modules of "
                             f"{type(model).__name__}; nothing to normalise")
        self.initial_norms = {name: self._norm(w).detach().clone() for name, w in self.weights.items()}

    def _norm(self, weight: torch.Tensor) -> torch.Tensor:
        weight = weight.detach().float()
        return weight.norm(dim=1, keepdim=True) if self.per_row else weight.norm()

    def _current_norms(self) -> list[torch.Tensor]:
        """The weights' norms now; weights sharded by FSDP (DTensors; the whole-matrix norm only) sum the
        squares of their shards, all in one all-reduce."""
        weights = list(self.weights.values())
        if not isinstance(weights[0], DTensor):
            return [self._norm(weight) for weight in weights]
        squares = torch.stack([weight.to_local().detach().float().square().sum() for weight in weights])
        dist.all_reduce(squares, group=weights[0].device_mesh.get_group())
        return list(squares.sqrt())

    @torch.no_grad()
    def __call__(self) -> None:
        for (name, weight), current in zip(self.weights.items(), self._current_norms()):
            target = self.initial_norms[name].to(weight.device)
            factor = torch.where(current > 0, target / current.clamp_min(1e-30), torch.ones_like(current))
            (weight.to_local() if isinstance(weight, DTensor) else weight).mul_(factor.to(weight.dtype))

    def state_dict(self) -> dict:
        return {"per_row": self.per_row, "initial_norms": {k: v.cpu() for k, v in self.initial_norms.items()}}

    def load_state_dict(self, state: dict) -> None:
        norms = {_clean(k): v for k, v in state["initial_norms"].items()}
        if bool(state.get("per_row", False)) != self.per_row or set(norms) != set(self.weights):
            missing, extra = sorted(set(self.weights) - set(norms)), sorted(set(norms) - set(self.weights))
            raise ValueError(f"ForcedWeightNorm state does not match this model (per_row saved "
                             f"{state.get('per_row')}, here {self.per_row}; missing {missing[:3]}, "
                             f"unexpected {extra[:3]}); build the normalizer on the same architecture")
        self.initial_norms = {k: v.clone() for k, v in norms.items()}

    def __repr__(self) -> str:
        return f"ForcedWeightNorm({len(self.weights)} weights, per_row={self.per_row})"
