"""Training state of a sharded (FSDP) run: safetensors through ``torch.distributed.checkpoint``, no pickle.

:func:`save_sharded` writes every tensor of a state tree (model, optimiser, EMA, ...) with DCP's
Hugging Face storage writer: each process writes its own shards into one safetensors file
(``shard-0000P-model-00001-of-00001.safetensors``), the offsets of its pieces in the file's header; a
tensor every process holds whole is written once. The rest of the tree (numbers, strings, the
structure) comes back as JSON-ready data with each tensor replaced by its key
(:func:`tokenizer_zoo.training.safe_state.split_tensors`).

:func:`load_sharded` reads them back into the layout of the loading run's tensors: DCP reassembles
and re-cuts the pieces, so a checkpoint of N processes loads into M processes, FSDP or not (one
process included). DCP's default file format pickles its metadata; the Hugging Face reader and writer
keep it in the safetensors headers, so nothing in the folder is ever unpickled.

Optimisers are saved with ``get_optimizer_state_dict`` (keyed by parameter name, their state created
first when empty, sharded like their parameters) and loaded with ``set_optimizer_state_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

from tokenizer_zoo.training.safe_state import TENSOR_TAG, join_tensors, split_tensors


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps the optimiser


def state_tree(registered: dict[str, list]) -> dict[str, list]:
    """The state dicts of what a run checkpoints, optimisers keyed by parameter name (one model)."""
    if len(registered["models"]) != 1:
        raise ValueError(f"sharded checkpoints hold one model; this run has {len(registered['models'])}")
    model = registered["models"][0]
    return {kind: [get_optimizer_state_dict(model, _inner(item)) if kind == "optimizers" else item.state_dict()
                   for item in items] for kind, items in registered.items()}


def load_tree(registered: dict[str, list], tree: dict[str, list]) -> None:
    """Load ``tree`` (as :func:`state_tree` gives) into the registered objects."""
    model = registered["models"][0]
    for kind, items in registered.items():
        for item, item_state in zip(items, tree[kind]):
            if kind == "optimizers":
                set_optimizer_state_dict(model, _inner(item), item_state)
            else:
                item.load_state_dict(item_state)


def save_sharded(folder: Path, tree: Any) -> Any:
    """Collective: write the tensors of ``tree`` to ``folder``; return the rest of it, tensors as keys."""
    data, tensors = split_tensors(tree, copy=False)
    dcp.save(tensors, storage_writer=HuggingFaceStorageWriter(str(folder), save_distributed=True))
    return data


def _keys(data: Any) -> list[str]:
    if isinstance(data, list):
        return [key for value in data for key in _keys(value)]
    if not isinstance(data, dict):
        return []
    if set(data) == {TENSOR_TAG}:
        return [data[TENSOR_TAG]]
    return [key for value in data.values() for key in _keys(value)]


def load_sharded(folder: Path, data: Any, current: Any) -> Any:
    """Collective: the tree ``data`` describes (from :func:`save_sharded`), its tensors read from ``folder``
    into the layout of the same tensors of ``current`` (this run's state tree: sharded or whole); a
    tensor ``current`` lacks is read whole."""
    _, targets = split_tensors(current, copy=False)
    metadata = HuggingFaceStorageReader(str(folder)).read_metadata().state_dict_metadata
    wanted = {}
    for key in _keys(data):
        if key not in metadata:
            raise ValueError(f"{folder} lacks the tensor {key!r}")
        saved = metadata[key]
        wanted[key] = targets[key] if key in targets else torch.empty(saved.size, dtype=saved.properties.dtype)
    dcp.load(wanted, storage_reader=HuggingFaceStorageReader(str(folder)))
    return join_tensors(data, wanted)
