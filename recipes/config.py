"""Recipe configuration: a YAML file (recipes/configs/) plus ``key=value`` overrides.

    accelerate launch recipes/flowmo_1a.py --config recipes/configs/lo.yaml batch_size=64 dataset=imagenet-1k

Values of overrides are parsed as YAML (``lr=5e-5``, ``quantizer_kwargs={levels: [8,8,8]}``).
Nested keys use dots (``quantizer_kwargs.bits_per_group=14``). Unknown keys are errors.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _set(tree: dict[str, Any], dotted: str, value: Any, known: set[str]) -> None:
    head, *rest = dotted.split(".")
    if head not in known:
        raise SystemExit(f"unknown config key {head!r}; known keys: {', '.join(sorted(known))}")
    if not rest:
        tree[head] = value
        return
    tree[head] = dict(tree.get(head) or {})
    node = tree[head]
    for key in rest[:-1]:
        node = node.setdefault(key, {})
    node[rest[-1]] = value


def load_config(cls: type, argv: list[str] | None, default_config: str, description: str):
    """Parse ``[--config FILE] [key=value ...]`` into the dataclass ``cls``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=str(CONFIG_DIR / default_config), help="YAML file of settings")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings that replace the file's")
    args = parser.parse_args(argv)
    path = Path(args.config)
    if not path.is_file():
        raise SystemExit(f"config file {path} not found; the shipped ones are in {CONFIG_DIR}")
    tree = yaml.safe_load(path.read_text()) or {}
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    known = set(types)
    for key in tree:
        if key not in known:
            raise SystemExit(f"{path}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r} must look like key=value")
        _set(tree, key, yaml.safe_load(value), known)
    return cls(**{key: _coerce(value, types[key]) for key, value in tree.items()})


def _coerce(value: Any, annotation: str) -> Any:
    """YAML reads ``1e-4`` (no dot) as a string: turn such strings into the field's number type."""
    if isinstance(value, str) and annotation.split("|")[0].strip() == "float":
        try:
            return float(value)
        except ValueError:
            raise SystemExit(f"expected a number, got {value!r}") from None
    return value
