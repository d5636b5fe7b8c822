"""FSDP2 for the recipes: ``accelerate launch --use_fsdp`` (or ``fsdp=true``) shards the model with
``torch.distributed.fsdp.fully_shard``, on GPUs and on CPU gloo processes alike.

Accelerate 1.16 selects its FSDP plugin only when GPUs are present, so the recipes do not use it:
:func:`without_accelerate_fsdp` builds Accelerate's state as plain data parallelism (no DDP wrapper is
applied, the model is not handed to ``accelerator.prepare``), and :class:`FSDPSharding` shards the
model itself: every block of an ``nn.ModuleList`` (the transformer blocks), then the whole model.
Accelerate still splits the data, accumulates gradients and runs the optimiser.

``fully_shard`` replaces each parameter by a sharded ``DTensor``. What the recipe built on the old
parameters follows the new ones (matched by name): the optimiser's parameter groups, the recipe's
``trainable`` list (changed in place) and the forced weight norm. The EMA is built on the sharded
parameters, so its shadow weights are sharded too. The main process's evaluation and the final
pipeline run on an unsharded copy of the model that only the main process holds
(:meth:`FSDPSharding.gathered` loads it with the current weights, gathered from every process;
``copy_trainable`` are its parameters that ``trainable`` names).
Checkpoints are written by :mod:`tokenizer_zoo.training.sharded_state`.
"""

from __future__ import annotations

import contextlib
import copy
import os
from typing import Iterator

import torch
from accelerate.utils import parse_flag_from_env
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

ACCELERATE_FSDP_FLAG = "ACCELERATE_USE_FSDP"  # what `accelerate launch --use_fsdp` sets


def fsdp_requested(cfg) -> bool:
    """True when the run was launched with ``--use_fsdp`` or its config says ``fsdp: true``."""
    return bool(getattr(cfg, "fsdp", False)) or parse_flag_from_env(ACCELERATE_FSDP_FLAG)


@contextlib.contextmanager
def without_accelerate_fsdp() -> Iterator[None]:
    """Build Accelerate's state as plain multi-process data parallelism: the recipes shard the model
    themselves (:class:`FSDPSharding`), on CPUs too, where Accelerate's plugin is not selected."""
    flag = os.environ.pop(ACCELERATE_FSDP_FLAG, None)
    try:
        yield
    finally:
        if flag is not None:
            os.environ[ACCELERATE_FSDP_FLAG] = flag


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of ``tensor`` (the tensor itself unless it is a DTensor)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The modules sharded as units before the whole model, innermost first: the blocks of ModuleLists
    that hold parameters (transformer blocks). A block's parameters are gathered when its forward runs,
    the others when the model's forward runs."""
    blocks = [block for module in model.modules() if isinstance(module, nn.ModuleList) for block in module
              if any(True for _ in block.parameters())]
    return blocks[::-1]


class FSDPSharding:
    """Shards ``model`` in place and moves what refers to its parameters onto the sharded ones.

    Args:
        model: the training module (its forward returns the loss).
        optimizer: built on ``model``'s parameters (its groups are re-pointed).
        trainable: the recipe's list of trained parameters (re-pointed in place).
        weight_norm: the recipe's :class:`~tokenizer_zoo.layers.weight_norm.ForcedWeightNorm` or None.
        keep_copy: keep an unsharded copy for evaluation and the final pipeline (the main process).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, trainable: list[nn.Parameter],
                 weight_norm=None, keep_copy: bool = False, device: torch.device | None = None):
        if weight_norm is not None and weight_norm.per_row:
            raise ValueError("FSDP shards weights by rows and supports the forced weight norm with per_row=False "
                             "only; train without --use_fsdp")
        names = {id(p): name for name, p in model.named_parameters()}
        trainable_names = [names[id(p)] for p in trainable]
        group_names = [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
        norm_names = {key: names[id(w)] for key, w in weight_norm.weights.items()} if weight_norm is not None else {}
        self.copy = copy.deepcopy(model).to(device) if keep_copy else None
        copied = dict(self.copy.named_parameters()) if keep_copy else {}
        self.copy_trainable = [copied[name] for name in trainable_names] if keep_copy else None
        model.to(device)
        for block in _blocks(model):
            fully_shard(block)
        fully_shard(model)
        self.model = model
        sharded = dict(model.named_parameters())
        trainable[:] = [sharded[name] for name in trainable_names]
        for group, group_params in zip(optimizer.param_groups, group_names):
            group["params"] = [sharded[name] for name in group_params]
        if weight_norm is not None:
            weight_norm.weights = {key: sharded[name] for key, name in norm_names.items()}

    @torch.no_grad()
    def gathered(self) -> nn.Module | None:
        """Collective: the unsharded copy loaded with the model's current weights and buffers, gathered
        one tensor at a time (on the processes that keep no copy: None)."""
        target = self.copy.state_dict() if self.copy is not None else None
        for name, value in self.model.state_dict().items():
            full = value.full_tensor() if isinstance(value, DTensor) else value
            if target is not None:
                target[name].copy_(full)
        return self.copy


def shard(accelerator, model: nn.Module, optimizer, trainable: list[nn.Parameter], weight_norm=None) -> FSDPSharding | None:
    """:class:`FSDPSharding` of a training run (None with one process), its model checkpointed with the
    prepared models (:func:`tokenizer_zoo.training.checkpoints.save_checkpoint`)."""
    if accelerator.num_processes == 1:
        accelerator.print("FSDP was asked for with one process: training unsharded")
        return None
    if accelerator.mixed_precision == "fp16":
        raise ValueError("FSDP runs train in fp32 or bf16, not fp16 (no sharded gradient scaler): "
                         "set mixed_precision=bf16 or launch without --use_fsdp")
    sharding = FSDPSharding(model, optimizer, trainable, weight_norm, keep_copy=accelerator.is_main_process,
                            device=accelerator.device)
    accelerator._models.append(sharding.model)  # Accelerate's list of prepared models, read by the checkpoints
    return sharding
