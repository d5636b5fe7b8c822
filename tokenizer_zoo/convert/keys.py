"""Mapping a release's state dict onto the zoo's components, and accounting for every key left out.

    rules = [KeyRule(r"encoder\\.conv_in\\.(weight|bias)", r"encoder.encoder.conv_in.\\1"), ...]
    dropped = DroppedKeys()
    ours = map_keys(state, rules, {"training-only usage counter": r"quantize\\.codebook_used"}, dropped, name, what)
    load_mapped(model, ours["encoder"], name, what)     # strict: every parameter filled, shapes equal
    record_dropped(pipe, dropped)                        # pipe.info["dropped_keys"], and the printed summary

A key is either mapped by the first rule whose pattern matches it in full, or dropped by a named
rule (training-only tensors: discriminator, LPIPS, loss buffers, usage counters; parameters a
release allocates but never uses), or it is an error: a key nobody knows means the file is of
another model or of a modified release, and converting it silently would lose weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch

from tokenizer_zoo.errors import ConversionError

SUMMARY_NAMES = 64
"""A reason with more dropped keys than this is summarised by its count only."""


@dataclass(frozen=True)
class KeyRule:
    """Release keys matching ``pattern`` (in full) become ``replacement`` (``re`` template), optionally transformed;
    the replacement's first dot-separated part names the component (``encoder.``, ``decoder.``, ...)."""

    pattern: str
    replacement: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def squeeze_1x1(tensor: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, 1, 1) convolution kernel as a (C_out, C_in) linear weight."""
    return tensor.reshape(tensor.shape[0], tensor.shape[1]) if tensor.ndim == 4 else tensor


@dataclass
class DroppedKeys:
    """Release tensors left out of a conversion: (key, number of values, reason)."""

    entries: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, key: str, values: int, reason: str) -> None:
        self.entries.append((key, int(values), reason))

    @property
    def values(self) -> int:
        return sum(values for _, values, _ in self.entries)

    def by_reason(self) -> dict[str, list[tuple[str, int]]]:
        groups: dict[str, list[tuple[str, int]]] = {}
        for key, values, reason in self.entries:
            groups.setdefault(reason, []).append((key, values))
        return groups

    def counts(self) -> dict[str, dict[str, int]]:
        """reason -> {"tensors": n, "values": v}: what the saved ``info`` records."""
        return {reason: {"tensors": len(keys), "values": sum(v for _, v in keys)}
                for reason, keys in self.by_reason().items()}

    def summary(self) -> str:
        """The lines that report what was left out: totals, then each reason with its keys."""
        lines = [f"dropped {len(self.entries)} release parameter tensors ({self.values:,} values)"
                 + (":" if self.entries else "")]
        for reason, keys in self.by_reason().items():
            lines.append(f"  {reason}: {len(keys)} tensors ({sum(v for _, v in keys):,} values)")
            if len(keys) <= SUMMARY_NAMES:
                lines.extend(f"    {key}" for key, _ in keys)
        return "\n".join(lines)


def unexpected_keys(name: str, keys: list[str], what: str) -> ConversionError:
    """The error for release keys that are neither mapped nor knowingly dropped."""
    shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
    return ConversionError(f"{name}: {len(keys)} state-dict key(s) that {what} does not have ({shown}); it is a "
                           "checkpoint of another model or of a modified release")


def map_keys(state: dict[str, torch.Tensor], rules: list[KeyRule], drop: dict[str, str], dropped: DroppedKeys,
             name: str, what: str) -> dict[str, dict[str, torch.Tensor]]:
    """Our state dicts by component from the release's ``state``; ``drop``: reason -> pattern of keys left out."""
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    dropping = [(reason, re.compile(pattern)) for reason, pattern in drop.items()]
    out: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in state.items():
        rule = next(((pattern, r) for pattern, r in compiled if pattern.fullmatch(key)), None)
        if rule is not None:
            pattern, rule = rule
            part, _, ours = pattern.sub(rule.replacement, key).partition(".")
            out.setdefault(part, {})[ours] = rule.transform(tensor) if rule.transform else tensor
            continue
        reason = next((reason for reason, pattern in dropping if pattern.fullmatch(key)), None)
        if reason is None:
            unknown.append(key)
        else:
            dropped.add(key, tensor.numel(), reason)
    if unknown:
        raise unexpected_keys(name, unknown, what)
    return out


def load_mapped(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, what: str) -> None:
    """``model.load_state_dict(state, strict=True, assign=True)`` with missing keys and shape mismatches as one line."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise ConversionError(f"{name}: not {what} of this layout: no tensor for {len(missing)} parameter(s) "
                              f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    for key, target in expected.items():
        if tuple(state[key].shape) != tuple(target.shape):
            raise ConversionError(f"{name}: the tensor for {type(model).__name__}.{key} has shape "
                                  f"{tuple(state[key].shape)}, but the architecture inferred from the file needs "
                                  f"{tuple(target.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise unexpected_keys(name, extra, f"{type(model).__name__}")
    model.load_state_dict({key: value.contiguous() for key, value in state.items()}, strict=True, assign=True)
    model.eval()


def record_dropped(pipe, dropped: DroppedKeys) -> None:
    """Keep the dropped-key account with the pipeline: counts in ``info`` (saved), the full list in memory."""
    pipe.info["dropped_keys"] = dropped.counts()
    pipe.dropped_keys = dropped


def dropped_of(pipe) -> DroppedKeys:
    """The account of a pipeline made by a converter (empty for others)."""
    return getattr(pipe, "dropped_keys", None) or DroppedKeys()
