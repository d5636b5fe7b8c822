"""Nested training state without pickle: one safetensors file of its tensors plus one JSON file of the rest.

State dicts of models, optimisers, schedulers, EMA and RNGs are trees of dicts, lists, tuples,
numbers, strings and tensors. :func:`save_state` writes ``STEM.safetensors`` (every tensor, keyed by
its path in the tree) and ``STEM.json`` (the tree, tensors replaced by their keys); :func:`load_state`
rebuilds the tree. Reading them never runs code, unlike ``torch.load(weights_only=False)``.

JSON cannot say everything Python can, so a few values are tagged: ``{"__tensor__": key}``,
``{"__tuple__": [...]}``, ``{"__items__": [[key, value], ...]}`` for dicts with non-string keys
(optimiser states are keyed by parameter index) and ``{"__float__": "inf"}`` for non-finite floats.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "tokenizer-zoo-state"
FORMAT_VERSION = 1
TENSOR_TAG = "__tensor__"
_TENSOR, _TUPLE, _ITEMS, _FLOAT = TENSOR_TAG, "__tuple__", "__items__", "__float__"
_TAGS = {_TENSOR, _TUPLE, _ITEMS, _FLOAT}


class StateFileError(ValueError):
    """A state file pair that is missing, damaged or not written by :func:`save_state`."""


def split_tensors(tree: Any, copy: bool = True) -> tuple[Any, dict[str, torch.Tensor]]:
    """``tree`` as JSON-compatible data with each tensor replaced by a key, and the tensors by key: CPU
    copies, or with ``copy=False`` the tensors themselves (detached)."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            key = path if path not in tensors else f"{path}#{len(tensors)}"
            tensors[key] = node.detach().to("cpu", copy=True).contiguous() if copy else node.detach()  # copies share no storage
            return {_TENSOR: key}
        if isinstance(node, float) and not math.isfinite(node):
            return {_FLOAT: repr(node)}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, (list, tuple)):
            items = [encode(value, f"{path}.{i}") for i, value in enumerate(node)]
            return {_TUPLE: items} if isinstance(node, tuple) else items
        if isinstance(node, dict):
            if all(isinstance(key, str) and key not in _TAGS for key in node):
                return {key: encode(value, f"{path}.{key}") for key, value in node.items()}
            return {_ITEMS: [[encode(key, path), encode(value, f"{path}.{key}")] for key, value in node.items()]}
        raise TypeError(f"cannot store a {type(node).__name__} at {path.lstrip('.')} in a state file; "
                        "state_dict() values must be tensors, numbers, strings, lists, tuples or dicts")

    return encode(tree, ""), tensors


def join_tensors(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`split_tensors`."""
    if isinstance(data, list):
        return [join_tensors(value, tensors) for value in data]
    if not isinstance(data, dict):
        return data
    if set(data) == {_TENSOR}:
        if data[_TENSOR] not in tensors:
            raise StateFileError(f"the tensor {data[_TENSOR]!r} named in the JSON file is missing from the "
                                 "safetensors file")
        return tensors[data[_TENSOR]]
    if set(data) == {_TUPLE}:
        return tuple(join_tensors(value, tensors) for value in data[_TUPLE])
    if set(data) == {_FLOAT}:
        return float(data[_FLOAT])
    if set(data) == {_ITEMS}:
        return {join_tensors(key, tensors): join_tensors(value, tensors) for key, value in data[_ITEMS]}
    return {key: join_tensors(value, tensors) for key, value in data.items()}


def save_state(stem: str | Path, tree: Any) -> None:
    """Write ``tree`` to ``STEM.safetensors`` and ``STEM.json``."""
    data, tensors = split_tensors(tree)
    stem = Path(stem)
    save_file(tensors, stem.with_name(stem.name + ".safetensors"))
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "state": data}
    stem.with_name(stem.name + ".json").write_text(json.dumps(header, allow_nan=False))


def load_state(stem: str | Path) -> Any:
    """Read the tree written by :func:`save_state` (no code runs: safetensors and JSON only)."""
    stem = Path(stem)
    json_file, tensor_file = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")
    try:
        header = json.loads(json_file.read_text())
        tensors = load_file(tensor_file)
    except (OSError, ValueError, SafetensorError) as error:
        raise StateFileError(f"cannot read {stem}.json/.safetensors: {type(error).__name__}: {error}") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StateFileError(f"{json_file} is not a {FORMAT} file")
    if header.get("format_version") != FORMAT_VERSION:
        raise StateFileError(f"{json_file} has format_version {header.get('format_version')!r}; this "
                             f"tokenizer-zoo reads version {FORMAT_VERSION}")
    return join_tensors(header["state"], tensors)
