"""Named tokenizer configurations (timm style): ``get_preset("flowmo_lo")``, ``build_tokenizer("flowmo_lo")``.

A preset is a :class:`TokenizerPreset`: the image size plus a registry name and keyword arguments
for the encoder, quantizer and decoder. Each preset is a tiny function registered in
:data:`PRESETS` (third-party packages can add theirs through the entry-point group
``tokenizer_zoo.presets``). Every preset function accepts the overrides of
:meth:`TokenizerPreset.with_overrides`, e.g. ``flowmo_lo(patch_size=8)`` for the 2x-patch ablation.

| preset               | encoder H/depth | decoder H/depth | patch | image | tokens x bits | BPP     |
| flowmo_lo            | 768 / 8         | 1152 / 16       | 4     | 256   | 256 x 18      | 0.0703  |
| flowmo_hi            | 768 / 8         | 1152 / 16       | 4     | 256   | 256 x 56      | 0.2188  |
| flowmo_small         | 768 / 8         | 768 / 16        | 8     | 256   | 256 x 18      | 0.0703  |
| flowmo_small_patch16 | 768 / 8         | 768 / 16        | 16    | 256   | 256 x 18      | 0.0703  |
| flowmo_tiny          | 96 / 2          | 128 / 3         | 4     | 32    | 16 x 18       | 0.2813  |
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import tokenizer_zoo.decoders  # noqa: F401  (registers the built-in decoders)
import tokenizer_zoo.encoders  # noqa: F401  (registers the built-in encoders)
import tokenizer_zoo.quantizers  # noqa: F401  (registers the built-in quantizers)
from tokenizer_zoo.registry import DECODERS, ENCODERS, QUANTIZERS, Registry

PRESETS = Registry("preset", "tokenizer_zoo.presets")

# Overrides that several components share, and which components' keyword they set.
_SHARED = {
    "image_size": ("encoder", "decoder"),
    "patch_size": ("encoder", "decoder"),
    "code_length": ("encoder", "decoder"),
    "code_dim": ("encoder", "decoder"),
}
_PARTS = ("encoder", "quantizer", "decoder")


@dataclass(frozen=True)
class ComponentSpec:
    """A registry name and the keyword arguments (the component's config) to build it with."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenizerPreset:
    """What a tokenizer is made of. ``bpp`` = code_length * bits_per_token / (image_size ** 2)."""

    name: str
    image_size: int
    encoder: ComponentSpec
    quantizer: ComponentSpec
    decoder: ComponentSpec
    description: str = ""

    @property
    def code_length(self) -> int:
        return int(self.encoder.kwargs["code_length"])

    @property
    def bits_per_token(self) -> float:
        """From the quantizer itself (raises the quantizer's error for continuous codes)."""
        return float(QUANTIZERS.build(self.quantizer.name, **self.quantizer.kwargs).bits_per_token)

    @property
    def bpp(self) -> float:
        return self.code_length * self.bits_per_token / self.image_size**2

    def with_overrides(self, **overrides: Any) -> "TokenizerPreset":
        """A copy with changes. Accepted keys:

        * ``image_size``, ``patch_size``, ``code_length``, ``code_dim``: set in encoder and decoder
          (``code_dim`` also sets the quantizer's ``dim`` when it has one);
        * ``encoder``, ``quantizer``, ``decoder``: dicts merged into that component's kwargs;
        * ``encoder_name``, ``quantizer_name``, ``decoder_name``: another registered component, whose
          kwargs then start empty (give them with the dict of the same part);
        * ``name``, ``description``.
        """
        allowed = set(_SHARED) | set(_PARTS) | {f"{p}_name" for p in _PARTS} | {"name", "description"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ValueError(f"unknown preset override(s) {unknown}; allowed: {sorted(allowed)}")
        specs = {part: getattr(self, part) for part in _PARTS}
        for part in _PARTS:
            new_name = overrides.get(f"{part}_name")
            kwargs = {} if new_name and new_name != specs[part].name else dict(specs[part].kwargs)
            kwargs.update(overrides.get(part) or {})
            specs[part] = ComponentSpec(new_name or specs[part].name, kwargs)
        for key, parts in _SHARED.items():
            if key in overrides:
                for part in parts:
                    specs[part].kwargs[key] = overrides[key]
        if "code_dim" in overrides and "dim" in specs["quantizer"].kwargs:
            specs["quantizer"].kwargs["dim"] = overrides["code_dim"]
        return dataclasses.replace(self, name=overrides.get("name", self.name),
                                   description=overrides.get("description", self.description),
                                   image_size=overrides.get("image_size", self.image_size), **specs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (for model cards and logs)."""
        return dataclasses.asdict(self)


@dataclass
class Tokenizer:
    """What :func:`build_tokenizer` returns."""

    encoder: torch.nn.Module
    quantizer: torch.nn.Module
    decoder: torch.nn.Module
    preset: TokenizerPreset


def register_preset(fn: Callable[[], TokenizerPreset]) -> Callable[..., TokenizerPreset]:
    """Register a zero-argument preset function under its name; the registered function takes overrides."""

    @functools.wraps(fn)
    def preset(**overrides: Any) -> TokenizerPreset:
        return fn().with_overrides(**overrides) if overrides else fn()

    PRESETS.register(fn.__name__, preset)
    return preset


def get_preset(name: str, /, **overrides: Any) -> TokenizerPreset:
    """The preset ``name`` with ``overrides`` applied (see :meth:`TokenizerPreset.with_overrides`)."""
    return PRESETS.build(name, **overrides)


def list_presets() -> list[str]:
    return PRESETS.names()


def build_tokenizer(preset: str | TokenizerPreset, /, **overrides: Any) -> Tokenizer:
    """Build encoder, quantizer and decoder of a preset (name or object) through the registries.

    Use ``with torch.device("meta"):`` around the call to inspect a large model without memory.
    """
    spec = get_preset(preset, **overrides) if isinstance(preset, str) else preset.with_overrides(**overrides)
    encoder = ENCODERS.build(spec.encoder.name, **spec.encoder.kwargs)
    quantizer = QUANTIZERS.build(spec.quantizer.name, **spec.quantizer.kwargs)
    decoder = DECODERS.build(spec.decoder.name, **spec.decoder.kwargs)
    code_dim = spec.encoder.kwargs.get("code_dim")
    quantizer_dim = getattr(quantizer, "dim", code_dim)
    if code_dim is not None and quantizer_dim != code_dim:
        raise ValueError(f"preset {spec.name!r}: encoder code_dim {code_dim} != quantizer dim {quantizer_dim}; "
                         f"override code_dim to change both")
    return Tokenizer(encoder=encoder, quantizer=quantizer, decoder=decoder, preset=spec)


def flowmo_preset(name: str, *, image_size: int, patch_size: int, encoder: tuple[int, int, int],
                  decoder: tuple[int, int, int], code_length: int, code_dim: int, bits_per_group: int,
                  mlp_ratio: float = 4.0, description: str = "") -> TokenizerPreset:
    """A FlowMo tokenizer with an LFQ quantizer; ``encoder``/``decoder`` are (hidden_size, depth, num_heads)."""

    def transformer(hidden_size: int, depth: int, num_heads: int) -> dict[str, Any]:
        return dict(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, depth=depth,
                    num_heads=num_heads, mlp_ratio=mlp_ratio, code_length=code_length, code_dim=code_dim)

    return TokenizerPreset(
        name=name, image_size=image_size, description=description,
        encoder=ComponentSpec("flowmo", transformer(*encoder)),
        quantizer=ComponentSpec("lfq", dict(dim=code_dim, bits_per_group=bits_per_group)),
        decoder=ComponentSpec("flowmo", transformer(*decoder)),
    )


@register_preset
def flowmo_lo() -> TokenizerPreset:
    return flowmo_preset("flowmo_lo", image_size=256, patch_size=4, encoder=(768, 8, 12), decoder=(1152, 16, 12),
                         code_length=256, code_dim=18, bits_per_group=9,
                         description="FlowMo-Lo: 256 tokens x 18 bits, 0.0703 BPP at 256 px")


@register_preset
def flowmo_hi() -> TokenizerPreset:
    return flowmo_lo(name="flowmo_hi", code_dim=56, quantizer={"bits_per_group": 14},
                     description="FlowMo-Hi: 256 tokens x 56 bits (1024 sub-tokens of 14 bits), 0.219 BPP")


@register_preset
def flowmo_small() -> TokenizerPreset:
    return flowmo_lo(name="flowmo_small", patch_size=8, decoder={"hidden_size": 768},
                     description="the paper's ablation model: patch 8, 768-wide decoder, 0.0703 BPP")


@register_preset
def flowmo_small_patch16() -> TokenizerPreset:
    return flowmo_small(name="flowmo_small_patch16", patch_size=16,
                        description="'2x patch' ablation of flowmo_small (patch 16)")


@register_preset
def flowmo_tiny() -> TokenizerPreset:
    return flowmo_preset("flowmo_tiny", image_size=32, patch_size=4, encoder=(96, 2, 3), decoder=(128, 3, 4),
                         code_length=16, code_dim=18, bits_per_group=9,
                         description="CPU smoke-test size: 32 px, 16 tokens x 18 bits; minutes of training show progress")
