"""Input validation shared by the quantizers: every message says what was wrong and how to fix it."""

from __future__ import annotations

import torch


def add_save_marker(module: torch.nn.Module) -> None:
    """diffusers writes no weights file for a module without tensors and then cannot load it back:
    a one-element ``format_version`` buffer keeps save_pretrained / from_pretrained working."""
    module.register_buffer("format_version", torch.tensor(1))


class NoBitRateError(TypeError):
    """Asked for a bit rate, a vocabulary or token ids of a quantizer whose codes are continuous."""


def check_codes(z: torch.Tensor, dim: int, who: str) -> None:
    """Check a (B, S, dim) finite floating-point tensor of pre-quantisation codes.

    Skipped while ``torch.compile`` traces: the finiteness test reads data and would break the graph,
    so a compiled quantizer (e.g. inside compiled training) does not check its input.
    """
    if torch.compiler.is_compiling():
        return
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor of shape (B, S, {dim}), got {type(z).__name__}.")
    if z.ndim != 3:
        raise ValueError(
            f"{who} expects codes of shape (B, S, {dim}) (batch, tokens, channels), got shape "
            f"{tuple(z.shape)}. Flatten feature maps first, e.g. einops.rearrange(z, 'b d h w -> b (h w) d')."
        )
    if not z.is_floating_point():
        raise TypeError(f"{who} expects floating-point codes, got dtype {z.dtype}; convert with z.float().")
    if z.shape[-1] != dim:
        raise ValueError(
            f"{who} was built for {dim} channels but got codes with {z.shape[-1]} (shape {tuple(z.shape)}). "
            f"Build it with dim={z.shape[-1]} or make the encoder output {dim} channels."
        )
    if not bool(torch.isfinite(z).all()):
        raise ValueError(
            f"{who} got codes containing NaN or inf. The encoder diverged or overflowed: lower the learning "
            f"rate, check mixed-precision settings, or look for a division by zero upstream."
        )


def check_indices(indices: torch.Tensor, trailing: tuple[int, ...], vocab_size: int, who: str) -> None:
    """Check integer token ids of shape (B, S, *trailing) with values in [0, vocab_size)."""
    shape = "(B, S" + "".join(f", {n}" for n in trailing) + ")"
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"{who}.indices_to_codes expects a torch.Tensor of shape {shape}, got {type(indices).__name__}.")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(
            f"{who}.indices_to_codes expects integer token ids, got dtype {indices.dtype}; "
            f"convert with indices.long() (and check they are whole numbers)."
        )
    if indices.ndim != 2 + len(trailing) or tuple(indices.shape[2:]) != tuple(trailing):
        raise ValueError(f"{who}.indices_to_codes expects ids of shape {shape}, got shape {tuple(indices.shape)}.")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab_size):
        raise ValueError(
            f"{who}.indices_to_codes got ids in [{int(indices.min())}, {int(indices.max())}] but its vocabulary is "
            f"[0, {vocab_size - 1}]. Were the tokens made by a quantizer with another configuration?"
        )
